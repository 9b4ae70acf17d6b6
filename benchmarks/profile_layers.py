"""Where the engine's time goes, layer by layer: each layer of the plan timed alone on its real shape.

    python benchmarks/profile_layers.py --isize 128 --probes 8 --batch 1 [--dtype fp32] [--plan tuned|fixed]

Uses the plan's own timing harness (skipgan/engine/plan.py `_time_layer`: minimum of a few calls after a warm-up) on
a random default model; prints the whole call, the sum of the layers and the layers by time with their choices.
Run it under ONEDNN_MAX_CPU_ISA / MKL_ENABLE_INSTRUCTIONS / ATEN_CPU_CAPABILITY to see another ISA level.
"""

from __future__ import annotations

import argparse
import time

import torch

from skipgan import bench
from skipgan.engine import Screener
from skipgan.engine import plan as P


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isize", type=int, default=32)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--plan", default=None)
    a = p.parse_args()
    model = bench.make_model(a.isize, probes=a.probes)
    x = bench.make_input(model, a.batch, torch.device("cpu"))
    s = Screener.from_model(model, dtype=a.dtype, max_batch=a.batch, plan=a.plan)
    print(s.plan.describe())
    for _ in range(2):
        s.score(x)
    t0 = time.perf_counter()
    s.score(x)
    whole = time.perf_counter() - t0
    objs = {**{f"enc{j}": l for j, l in enumerate(s.enc)}, **{f"dec{j}": l for j, l in enumerate(s.dec)},
            **{f"pyr{i}": l for i, l in enumerate(s.pyr)}, "feat": s.feat}
    with torch.no_grad():
        ms = {spec.name: 1e3 * P._time_layer(objs[spec.name], spec, s.dtype, s.device, time.perf_counter, 1e9)
              for spec in s._specs}
    total = sum(ms.values())
    print(f"whole call {whole * 1e3:.1f} ms; sum of the layers {total:.1f} ms")
    for name, v in sorted(ms.items(), key=lambda kv: -kv[1]):
        print(f"  {name:5s} {v:8.2f} ms {100 * v / total:5.1f} %  {'/'.join(s.plan.choices[name])}")


if __name__ == "__main__":
    main()
