"""What the scanner's maps cost: throughput with overlays, raw maps and regions of the flagged images against scoring
alone, at a given flag rate, same model, same images, one run.

    cmake -S . -B build/cmake -DSKIPGAN_BUILD_SCANNER=ON && cmake --build build/cmake -j2
    python benchmarks/bench_scanner_maps.py --model runs/brick/model.safetensors --images /tmp/local_defects/brick/test

The images (PNG/TIFF/PGM under --images) are repeated to --n files. A first run scores them; --threshold is then set
at the (1 − flag rate) quantile of those scores, so that --flag-rate of the images are flagged in every run. Then,
alternating, --repeats times each: scores only (--max-regions 0, no --maps: the graph's forward, no map output) and
with maps (the model's score_with_anomaly_map, regions of flagged lines, --maps DIR --raw-maps png16 --maps-for
flagged). Images/s as the scanner prints it (first decoded image to last line); the best run of each is reported.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"\(([\d.]+) images/s")
SUFFIXES = {".png", ".tif", ".tiff", ".pgm", ".ppm"}


def run(cmd: list[str]) -> tuple[float, list[dict]]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return float(RATE.findall(r.stderr)[-1]), [json.loads(line) for line in r.stdout.splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="a folder of images (searched recursively)")
    p.add_argument("--scanner", default=str(ROOT / "build/cmake/scanner/skipgan_scanner"))
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--flag-rate", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()

    from skipgan.export import export_model
    from skipgan.modelfile import load_model

    sources = sorted(f for f in Path(a.images).rglob("*") if f.suffix.lower() in SUFFIXES)
    if not sources:
        raise SystemExit(f"--images {a.images}: no images")
    with tempfile.TemporaryDirectory(prefix="skipgan-maps-bench-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        for i in range(a.n):
            src = sources[i % len(sources)]
            shutil.copyfile(src, folder / f"{i:05d}{src.suffix}")
        model, meta = load_model(a.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(model, meta, "torchscript", tmp / "m.pt", dtype=a.dtype, verify=False)
        base = [a.scanner, "--model", str(tmp / "m.pt"), "--batch-size", str(a.batch)]
        _, lines = run([*base, "--max-regions", "0", str(folder)])
        scores = np.array([line["score"] for line in lines])
        threshold = float(np.quantile(scores, 1.0 - a.flag_rate))
        plain = [*base, "--threshold", repr(threshold), "--max-regions", "0", str(folder)]
        maps = [*base, "--threshold", repr(threshold), "--maps", str(tmp / "maps"), "--raw-maps", "png16",
                str(folder)]
        best = {"scores only": 0.0, "maps of flagged images": 0.0}
        flagged = 0
        for _ in range(a.repeats):
            best["scores only"] = max(best["scores only"], run(plain)[0])
            ips, lines = run(maps)
            best["maps of flagged images"] = max(best["maps of flagged images"], ips)
            flagged = sum(line.get("verdict") == "abnormal" for line in lines)
            assert flagged == sum("map" in line for line in lines)
            shutil.rmtree(tmp / "maps")
    ratio = best["maps of flagged images"] / best["scores only"]
    info = {"model": a.model, "images": a.n, "flagged": flagged, "dtype": a.dtype, "batch": a.batch,
            "images_per_s": best, "ratio": ratio}
    print(f"{a.n} images, {flagged} flagged ({flagged / a.n:.1%}), {a.dtype}, batch {a.batch}")
    for name, v in best.items():
        print(f"{name:26s} {v:8.1f} images/s")
    print(f"ratio {ratio:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
