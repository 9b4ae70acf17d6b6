"""The int8 engine against the fp32 and bf16 engines, same model, one run (ratios within the run are the claim).

    python benchmarks/bench_int8.py                                   # random default model, isize 32
    python benchmarks/bench_int8.py --model /tmp/dig/0/int8.safetensors --configs 8:64,8:1,0:64,0:1

Timing does not depend on the weights, so without --model a randomly initialised default-width model is used and
its int8 ranges are observed on random images. Each configuration K:batch (scoring probes, images per call) runs
every precision in turn for `--rounds` rounds of `--min-time` seconds each, and reports the median images/s
(skipgan.bench's timer) and int8 / bf16, int8 / fp32.
"""

from __future__ import annotations

import argparse

import torch

from skipgan.bench import interleaved_rates, make_model
from skipgan.engine import Screener
from skipgan.engine.cpu import bf16_fast, int8_restriction
from skipgan.modelfile import load_model
from skipgan.quant.calibrate import all_layers_int8, observe_input_ranges


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="an int8 model file (skipgan quantize)")
    p.add_argument("--isize", type=int, default=32)
    p.add_argument("--configs", default="8:64,8:1,0:64,0:1", help="K:batch, comma-separated")
    p.add_argument("--min-time", type=float, default=1.5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if int8_restriction():
        raise SystemExit(f"int8: {int8_restriction()}")
    if a.model:
        model, _ = load_model(a.model)
        if model.int8 is None:
            raise SystemExit(f"{a.model}: not an int8 model file (skipgan quantize MODEL --out ...)")
    else:
        model = make_model(isize=a.isize, nc=1, probes=8)
        model.int8 = all_layers_int8(model, observe_input_ranges(model, torch.rand(64, 1, a.isize, a.isize) * 2 - 1))
    isize, nc = model.arch.isize, model.arch.nc
    precisions = ["fp32", *(["bf16"] if bf16_fast() else []), "int8"]
    print(f"isize {isize}, threads {torch.get_num_threads()}, {torch.__version__}")
    print("| K | batch | " + " | ".join(f"engine {p} img/s" for p in precisions) + " | int8 / bf16 | int8 / fp32 |")
    print("|---|---:|" + "---:|" * (len(precisions) + 2))
    for cfg in a.configs.split(","):
        k, batch = (int(v) for v in cfg.split(":"))
        x = torch.rand(batch, nc, isize, isize) * 2 - 1
        engines = {prec: Screener.from_model(model, dtype=prec, max_batch=batch, probes=k) for prec in precisions}
        ips = interleaved_rates({prec: (lambda sc=sc: sc.score(x)) for prec, sc in engines.items()}, batch,
                                a.rounds, a.min_time)
        bf = f"{ips['int8'] / ips['bf16']:.2f}x" if "bf16" in ips else "-"
        print(f"| {k} | {batch} | " + " | ".join(f"{ips[p]:.1f}" for p in precisions)
              + f" | {bf} | {ips['int8'] / ips['fp32']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
