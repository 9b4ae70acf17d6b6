"""What the bench runs on: timing helpers, the machine's measured limits (read bandwidth, matmul FLOP/s) and what
the numbers were measured on (CPU model, cores, torch, the native ops' build, load)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable

import torch

from .. import ops
from ..engine.cpu import bf16_fast


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], device: torch.device, min_time: float, min_calls: int = 3) -> float:
    fn()
    sync(device)
    times: list[float] = []
    t_end = time.perf_counter() + min_time
    while len(times) < min_calls or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_rates(calls: dict[Any, Callable[[], Any]], batch: int, rounds: int, min_time: float,
                      device: torch.device = torch.device("cpu")) -> dict[Any, float]:
    """Images/s of each call (one batch of `batch` images per call): every call timed in turn (median_time, `min_time`
    seconds) for `rounds` rounds, so that load drift hits them alike; the median over the rounds."""
    runs: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            runs[key].append(batch / median_time(fn, device, min_time))
    return {key: statistics.median(v) for key, v in runs.items()}


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bf16_fast()


def matmul_kernels(device: torch.device, dt: torch.dtype, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable]:
    """The products of a [n, n] @ b [n, n] that this machine offers for dt: torch.mm (MKL for fp32 on x86) and, on
    the CPU, oneDNN's prepacked product (the engine's candidates, engine/layers.py). The limit is the fastest: MKL
    alone understated an AMD Zen 4 by 25 % (its fp32 path there is slower than oneDNN's)."""
    fns = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), a.shape[0])
        fns["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    return fns


def measure_machine(device: str | torch.device = "cpu", *, bw_mb: int = 512, mm_n: int = 4096,
                    min_time: float = 0.5) -> dict[str, Any]:
    """Read bandwidth (x.sum() over a bw_mb MB fp32 buffer) and fp32 / bf16 matmul throughput (mm_n² products, the
    fastest library of matmul_kernels; bf16 only where the hardware has a bf16 path), measured now with the
    current torch thread count."""
    device = torch.device(device)
    out: dict[str, Any] = {"bw_buffer_mb": bw_mb, "mm_n": mm_n}
    buf = torch.ones(bw_mb * 2**20 // 4, device=device)
    t = median_time(buf.sum, device, min_time)
    out["read_gb_s"] = buf.numel() * 4 / t / 1e9
    del buf
    flop = 2 * mm_n**3
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dt == torch.bfloat16 and not bf16_supported(device):
            out["bf16_gflop_s"] = None
            continue
        a = torch.randn(mm_n, mm_n, device=device).to(dt)
        b = torch.randn(mm_n, mm_n, device=device).to(dt)
        by = {lib: flop / median_time(fn, device, min_time, min_calls=2) / 1e9
              for lib, fn in matmul_kernels(device, dt, a, b).items()}
        out[f"{name}_gflop_s_by"] = {lib: round(g, 1) for lib, g in by.items()}
        out[f"{name}_gflop_s"] = max(by.values())
        del a, b
    return out


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model (lscpu), cores, torch, the native ops' build, load, date."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": str(device), "skipgan_ops": ops.build_info(),
        "loadavg": list(os.getloadavg()), "python": platform.python_version(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    for mod in ("onnxruntime", "openvino"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - not installed or broken: just not recorded
            info[mod] = None
    return info
