"""Where the engine's time goes, layer by layer: each layer of the plan timed alone on its real shape.

    python benchmarks/profile_layers.py --isize 128 --probes 8 --batch 1 [--dtype fp32] [--plan tuned|fixed]
    python benchmarks/profile_layers.py --isize 32 --probes 0 --batch 1 --ops     # where a whole pass goes, by op
    python benchmarks/profile_layers.py --isize 32 --probes 8 --batch 64 --dtype int8   # the int8 engine's layers
    python benchmarks/profile_layers.py --isize 32 --probes 0 --batch 1 --steps   # each layer inside whole passes
    python benchmarks/profile_layers.py --isize 32 --probes 0 --batch 1 --products   # the products alone vs the pass

Uses the plan's own timing harness (skipgan/engine/plan.py `_time_layer`: minimum of a few calls after a warm-up) on
a random default model; prints the whole call, the sum of the layers and the layers by time with their choices.
Run it under ONEDNN_MAX_CPU_ISA / MKL_ENABLE_INSTRUCTIONS / ATEN_CPU_CAPABILITY to see another ISA level.
--ops instead profiles whole passes (torch.profiler, 100 calls): self time per op and call counts per pass, i.e. the
products against the copies, epilogues, views and Python around them. --steps times each recorded step of the CPU
engine's pass where it runs, inside whole passes (caches as the previous layers left them, not warm), beside the bytes
of its weights: at batch 1 the gap between this and the layer alone is what running in sequence costs. --products
times, interleaved in rounds, the whole pass, the same pass's matrix products alone (captured from one pass, replayed
back to back: the floor that leaving out everything else would reach) and OpenVINO on the same model at the same
precision (where installed).
"""

from __future__ import annotations

import argparse
import time

import torch

from skipgan import bench
from skipgan.engine import Screener
from skipgan.engine import plan as P
from skipgan.model.layer_names import named_layers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isize", type=int, default=32)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--plan", default=None)
    p.add_argument("--ops", action="store_true", help="profile whole passes by op instead of timing each layer")
    p.add_argument("--steps", action="store_true", help="time each step inside whole passes instead")
    p.add_argument("--products", action="store_true",
                   help="the whole pass against its matrix products alone (and OpenVINO) instead")
    a = p.parse_args()
    model = bench.make_model(a.isize, probes=a.probes)
    x = bench.make_input(model, a.batch, torch.device("cpu"))
    if a.dtype == "int8":  # ranges from random images: timing does not depend on them
        from skipgan.quant.calibrate import all_layers_int8, observe_input_ranges

        model.int8 = all_layers_int8(model, observe_input_ranges(model, x))
    s = Screener.from_model(model, dtype=a.dtype, max_batch=a.batch, plan=a.plan)
    print(s.plan.describe() if s.plan else repr(s))
    for _ in range(2):
        s.score(x)
    t0 = time.perf_counter()
    s.score(x)
    whole = time.perf_counter() - t0
    if a.ops:
        return profile_ops(s, x)
    if a.steps:
        return profile_steps(s, x)
    if a.products:
        return profile_products(s, model, x, a.dtype)
    objs = named_layers(s.enc, s.dec, s.pyr, s.feat)
    with torch.no_grad():
        ms = {spec.name: 1e3 * P._time_layer(objs[spec.name], spec, s.dtype, s.device, time.perf_counter, 1e9)
              for spec in s._specs}
    total = sum(ms.values())
    print(f"whole call {whole * 1e3:.1f} ms; sum of the layers {total:.1f} ms")
    for name, v in sorted(ms.items(), key=lambda kv: -kv[1]):
        how = "/".join(s.plan.choices[name]) if s.plan else type(objs[name]).__name__
        print(f"  {name:5s} {v:8.2f} ms {100 * v / total:5.1f} %  {how}")


def profile_steps(s: Screener, x: torch.Tensor, calls: int = 300) -> None:
    """Each recorded step of the pass timed where it runs, over `calls` whole passes (Screener._steps: what a call
    of this batch size replays)."""
    steps = s._steps[x.shape[0]]
    names = {id(obj): name for name, obj in named_layers(s.enc, s.dec, s.pyr, s.feat).items()}
    spent = [0.0] * len(steps)
    clock = time.perf_counter
    with torch.no_grad():
        for call in range(calls + 20):
            for i, (fn, args, kw) in enumerate(steps):
                t0 = clock()
                fn(*args, **kw)
                if call >= 20:  # the first passes warm up
                    spent[i] += clock() - t0
    objs = named_layers(s.enc, s.dec, s.pyr, s.feat)
    folded = {spec.name: spec.layer for spec in s._specs}
    total = sum(spent) / calls
    print(f"whole pass (sum of its steps) {total * 1e3:.2f} ms over {calls} passes")
    for i, (fn, _, _) in enumerate(steps):
        name = names.get(id(fn), getattr(fn, "__name__", type(fn).__name__))
        mb = weight_bytes(objs[name], folded[name], s.dtype) / 1e6 if name in objs else 0.0
        us = spent[i] / calls * 1e6
        how = "/".join(s.plan.choices[name]) if s.plan and name in s.plan.choices else ""
        print(f"  {name:18s} {us:8.1f} us {100 * us / (total * 1e6):5.1f} %  weights {mb:5.1f} MB  {how}")


def weight_bytes(obj, layer, dtype: torch.dtype) -> int:
    """The weights a layer object reads per call: its products' matrices (a dense form's skips the padding taps), or
    the folded layer's whole weight (the direct form)."""
    from skipgan.engine.layers import Gemm

    gemms = [v for v in vars(obj).values() if isinstance(v, Gemm)]
    count = sum(g.weight.numel() for g in gemms) if gemms else layer.weight.numel()
    return count * (torch.finfo(dtype).bits // 8)


def profile_products(s: Screener, model, x: torch.Tensor, dtype: str, rounds: int = 5) -> None:
    """Whole pass vs its products replayed alone vs OpenVINO, images/s interleaved in rounds (skipgan.bench)."""
    from skipgan.bench import interleaved_rates
    from skipgan.engine.layers import Gemm

    captured, call = [], Gemm.__call__

    def spy(self, inp, scratch=None):
        captured.append((self, inp.clone()))
        return call(self, inp, scratch)

    with torch.no_grad():
        Gemm.__call__ = spy
        try:
            s.score(x)
        finally:
            Gemm.__call__ = call

    def products():
        for gemm, inp in captured:
            gemm(inp)

    calls = {"whole pass": lambda: s.score(x), f"its {len(captured)} GEMM products alone": products}
    try:
        from skipgan.bench.onnx_peers import openvino_bf16, openvino_fp32

        peer = (openvino_fp32 if dtype == "fp32" else openvino_bf16)(model, x, None)
        calls[f"OpenVINO {dtype}"] = lambda: peer(x)
    except Exception as e:  # noqa: BLE001 - the peer is optional here
        print(f"(no OpenVINO: {str(e).splitlines()[0][:80]})")
    with torch.no_grad():
        rates = interleaved_rates(calls, x.shape[0], rounds, 1.0)
    for name, r in rates.items():
        print(f"  {name:34s} {1e3 * x.shape[0] / r:7.3f} ms per call")
    print("  (direct-convolution layers, the epilogues, copies and Python are in the whole pass only)")


def profile_ops(s: Screener, x: torch.Tensor, calls: int = 100) -> None:
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    for _ in range(calls):
        s.score(x)
    per_call = (time.perf_counter() - t0) / calls
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            s.score(x)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / calls / 1e3
    print(f"{per_call * 1e3:.3f} ms per call unprofiled; ops' self time {total:.3f} ms per call (profiled)")
    for e in events[:16]:
        print(f"  {e.key[:48]:48s} {e.count / calls:6.1f} calls  {e.self_cpu_time_total / calls / 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
