"""Scoring throughput: the fused engine against the usual runtimes, on the same model, probes and input.

The runtimes are those of `skipgan bench` (skipgan/bench/): eager (the reference impl, so the table's
"x eager" ratios compare with it), eager_channels_last, eager_autocast_bf16, torchscript_frozen, torch_compile
(inductor, freezing; compile time in extra_info["note"], not in the timings), onnxruntime, openvino_fp32,
openvino_bf16, engine_fp32, engine_bf16. Each is built once per (batch, isize, K), its scores checked against
eager fp32 (rtol 1e-3 fp32, 5e-2 bf16; a disagreeing runtime FAILS its test), then timed. A runtime that cannot
be built here (not installed, no bf16 path, ...) is skipped with the reason. Weights are random (DCGAN init,
BN statistics randomised): speed does not depend on training. Unlike `skipgan bench`, which interleaves the
runtimes round-robin, pytest-benchmark times one runtime after the other: on a loaded machine prefer the CLI.

Each benchmark records case ("score isize S K k batch B device"), impl (the runtime) and images (B) in
extra_info, so benchmarks/conftest.py prints img/s and "x eager" per case. The machine limits (read bandwidth,
fp32 / bf16 matmul FLOP/s) are measured once at the start and printed at the end with the model's bounds
(compute-bound img/s, weight-streaming bound at batch 1); they are in every benchmark's extra_info as well.

Default: isize 32, K 8, batch 1 and 64 (about 10 minutes on 2 cores). Any impl, any config:

    pytest -p no:cacheprovider benchmarks/bench_engine.py -q --benchmark-columns=median,iqr,rounds
    SKIPGAN_BENCH_RUNTIMES=eager,onnxruntime,engine_fp32,engine_bf16 \\
        pytest -p no:cacheprovider benchmarks/bench_engine.py -q -k b64      # some runtimes, batch 64 only
    SKIPGAN_BENCH_ISIZE=32,128 SKIPGAN_BENCH_PROBES=0,8 SKIPGAN_BENCH_BATCH=1,64 \\
        pytest -p no:cacheprovider benchmarks/bench_engine.py -q --benchmark-columns=median,iqr,rounds

Other knobs: SKIPGAN_BENCH_RUNTIMES (comma-separated), SKIPGAN_BENCH_MIN_TIME (seconds of timed calls per
benchmark, default 2), SKIPGAN_BENCH_THREADS (intra-op threads of every runtime), SKIPGAN_BENCH_MACHINE=small
(a 32 MB bandwidth buffer and 1024² matmuls instead of 512 MB and 4096²: for smoke runs only).
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import pytest
import torch

from skipgan import bench


def _env_list(name: str, default: str, kind=int) -> list:
    return [kind(v) for v in os.environ.get(name, default).split(",") if v.strip()]


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ISIZES = _env_list("SKIPGAN_BENCH_ISIZE", "32")
PROBES = _env_list("SKIPGAN_BENCH_PROBES", "8")
BATCHES = _env_list("SKIPGAN_BENCH_BATCH", "1,64")
RUNTIMES = _env_list("SKIPGAN_BENCH_RUNTIMES", ",".join(bench.RUNTIMES), str)
MIN_TIME = float(os.environ.get("SKIPGAN_BENCH_MIN_TIME", "2"))
THREADS = int(os.environ.get("SKIPGAN_BENCH_THREADS", "0")) or None

# Config-major: the runtimes of one config run back to back on the same model and input.
PARAMS = [(s, k, b, r) for s in ISIZES for k in PROBES for b in BATCHES for r in RUNTIMES]


def case_name(isize: int, k: int, batch: int) -> str:
    return f"score isize {isize} K {k} batch {batch} {DEVICE}"


@pytest.fixture(scope="module")
def machine(request):
    """The machine limits, measured once with the runtimes' thread count; printed with the bounds at the end."""
    before = torch.get_num_threads()
    if THREADS:
        torch.set_num_threads(THREADS)
    small = os.environ.get("SKIPGAN_BENCH_MACHINE") == "small"
    limits = bench.measure_machine(DEVICE, **(dict(bw_mb=32, mm_n=1024, min_time=0.1) if small else {}))
    limits["threads"] = torch.get_num_threads()
    yield limits
    torch.set_num_threads(before)
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None:
        return
    lines = ["", bench.format_machine(limits)]
    for s in ISIZES:
        for k in PROBES:
            bd = bench.model_bounds(bench.make_model(s, 1, k), limits)
            lines.append(f"isize {s} K {k}: {bd['flops_per_image'] / 1e9:.3g} GFLOP/image -> compute-bound "
                         f"{bd['compute_img_s_fp32']:.0f} img/s fp32"
                         + (f", {bd['compute_img_s_bf16']:.0f} bf16" if bd.get("compute_img_s_bf16") else "")
                         + f"; weight-streaming bound at batch 1 {bd['weight_stream_img_s_b1_fp32']:.0f} "
                         f"img/s fp32, {bd['weight_stream_img_s_b1_bf16']:.0f} bf16")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        for line in lines:
            tr.write_line(line)


_CACHE: dict = {}


def built(isize: int, k: int, batch: int, runtime: str):
    """(Built runtime, input, model) for this config; one config alive at a time (ONNX files, compiled code)."""
    key = (isize, k, batch)
    if _CACHE.get("key") != key:
        _CACHE.clear()
        bench.clear_exports()
        model = bench.make_model(isize, 1, k).to(DEVICE)
        x = bench.make_input(model, batch, DEVICE)
        _CACHE.update(key=key, model=model, x=x, ref=bench.reference_scores(model, x), runtimes={})
    c = _CACHE
    if runtime not in c["runtimes"]:
        c["runtimes"][runtime] = bench.build_peer(bench.PEERS[runtime], c["model"], c["x"], c["ref"])
    return c["runtimes"][runtime], c["x"], c["model"]


@pytest.mark.parametrize("isize,k,batch,runtime", PARAMS,
                         ids=[f"isize{s}-K{k}-b{b}-{r}" for s, k, b, r in PARAMS])
def test_score(benchmark, machine, isize, k, batch, runtime):
    before = torch.get_num_threads()
    if THREADS:
        torch.set_num_threads(THREADS)
    try:
        b, x, model = built(isize, k, batch, runtime)
        if b.fn is None:
            pytest.skip(b.status)
        if b.status != "ok":
            pytest.fail(f"{runtime}: {b.status} against eager fp32")
        case = case_name(isize, k, batch)
        benchmark.group = case
        benchmark.extra_info.update(case=case, impl=runtime, images=batch, precision=b.peer.precision,
                                    max_rel_err=b.err, note=b.note, build_s=round(b.build_s, 2), device=str(DEVICE),
                                    bounds=bench.model_bounds(model, machine), machine=machine)

        def call():
            b.fn(x)
            bench.sync(DEVICE)

        t0 = time.perf_counter()
        call()  # warm-up (and how long one call takes, to size the rounds)
        one = time.perf_counter() - t0
        rounds = max(3, min(50, math.ceil(MIN_TIME / max(one, 1e-6))))
        benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1 if one < 0.5 else 0)
    finally:
        torch.set_num_threads(before)
