"""End-to-end throughput: the C++ scanner against `skipgan score` on the same folder of PNGs, same model, same batch.

    cmake -S . -B build/cmake -DSKIPGAN_BUILD_SCANNER=ON && cmake --build build/cmake -j2
    python benchmarks/bench_scanner.py --model benchmarks/accuracy/models/digit0.safetensors

Both read the files, decode on worker threads and score in batches; images/s is what each prints on stderr (from
its first decoded image to its last score, model loading excluded). Each command runs --repeats times, alternating,
and the best run of each is reported (timings on a shared 2-core machine are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"\(([\d.]+) images/s")


def make_folder(folder: Path, n: int, size: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits().images  # 8x8, 0..16
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray((digits[i % len(digits)] * 255 / 16).astype(np.uint8)).resize((size, size))
        img.save(folder / f"{i:05d}.png")


def rate(cmd: list[str]) -> float:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return float(RATE.findall(r.stderr)[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--scanner", default=str(ROOT / "build/cmake/scanner/skipgan_scanner"))
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    a = p.parse_args()

    from skipgan.export import export_model
    from skipgan.modelfile import load_model

    with tempfile.TemporaryDirectory(prefix="skipgan-scanner-bench-") as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "images", a.n, a.size)
        model, meta = load_model(a.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dtype in ("fp32", "bf16"):
                export_model(model, meta, "torchscript", tmp / f"{dtype}.pt", dtype=dtype, verify=False)
            export_model(model, meta, "aoti", tmp / "fp32.pt2", max_batch=a.batch, verify=False)
        batch = ["--batch-size", str(a.batch)]
        runs = {
            "skipgan score (engine fp32)": [sys.executable, "-m", "skipgan.cli", "score", a.model, str(tmp / "images"),
                                            "--device", "cpu", *batch],
            "skipgan score (engine bf16)": [sys.executable, "-m", "skipgan.cli", "score", a.model, str(tmp / "images"),
                                            "--device", "cpu", "--dtype", "bf16", *batch],
            "scanner, TorchScript fp32": [a.scanner, "--model", str(tmp / "fp32.pt"), *batch, str(tmp / "images")],
            "scanner, TorchScript bf16": [a.scanner, "--model", str(tmp / "bf16.pt"), *batch, str(tmp / "images")],
            "scanner, AOTInductor fp32": [a.scanner, "--model", str(tmp / "fp32.pt2"), *batch, str(tmp / "images")],
        }
        best: dict[str, float] = {}
        for _ in range(a.repeats):
            for name, cmd in runs.items():
                best[name] = max(best.get(name, 0.0), rate(cmd))
    info = {"model": a.model, "images": a.n, "size": a.size, "batch": a.batch, "threads": os.cpu_count(),
            "images_per_s": best}
    for name, v in best.items():
        print(f"{name:32s} {v:8.1f} images/s")
    if a.json:
        Path(a.json).write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
