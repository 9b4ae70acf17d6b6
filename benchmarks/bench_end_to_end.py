"""End to end: `skipgan score` as a whole process against the same job done in-process by the usual PyTorch ways.

    python benchmarks/bench_end_to_end.py [--model FILE] [--n 3000] [--size 32] [--batch 64] [--json FILE]

Every contender is a fresh Python process over the same folder of PNGs (scikit-learn's digits, resized), the same
model and batch, timed by this script from spawn to exit (start-up, imports, model load, decode, scoring, output):

- `skipgan score MODEL DIR --out FILE` (fp32, then --dtype bf16): the engine, its plan read from the cache that
  a first run (reported on its own) measured and wrote;
- in-process peers, written as a user would: decode each file with skipgan.data.images (the one decoder and
  preprocessing), batch, and score with `torch.compile` of the model's score (fp32; compile time included) or with
  the eager model under `torch.autocast` bf16.

Where `skipgan score`'s time goes is read from the same runs: `python -c "import skipgan.cli"` (start-up), a run
on one image (start-up + model load + plan), and the engine alone on the same batches (in this process).
Without --model a random default model (K = 8 probes) is used: speed does not depend on training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scanner import make_folder  # noqa: E402  (the same digit PNGs as the scanner benchmark)

PEER = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    from skipgan.data.images import read_image
    from skipgan.modelfile import load_model
    from skipgan.preprocess import to_model_input
    mode, model_path, folder, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    model, meta = load_model(model_path, "cpu")
    model.eval()
    isize = model.arch.isize
    score = lambda x: model.score(x).score
    if mode == "compile":
        score = torch.compile(score, dynamic=False)
    files = sorted(folder.glob("*.png"))
    out = []
    with torch.inference_mode():
        for i in range(0, len(files), batch):
            x = torch.cat([to_model_input(torch.from_numpy(read_image(f).copy())[None], isize,
                                          model.arch.nc) for f in files[i:i + batch]])
            if mode == "autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out.append(score(x).float())
            else:
                out.append(score(x))
    print(len(torch.cat(out)))
""")


def wall(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt


def random_model_file(path: Path, size: int) -> None:
    from skipgan import bench
    from skipgan.modelfile import save_model

    save_model(path, bench.make_model(size, probes=8), {"threshold": 1.0, "val_stats": {"mean": 0.0, "std": 1.0}})


def engine_only(model_path: str, folder: Path, batch: int, dtype: str) -> float:
    """Seconds of the engine alone on the decoded images (this process, plan from the cache)."""
    from skipgan.data.images import read_image
    from skipgan.engine import Screener
    from skipgan.modelfile import load_model
    from skipgan.preprocess import to_model_input

    model, _ = load_model(model_path, "cpu")
    files = sorted(folder.glob("*.png"))
    xs = [torch.cat([to_model_input(torch.from_numpy(read_image(f).copy())[None], model.arch.isize,
                                    model.arch.nc) for f in files[i:i + batch]]) for i in range(0, len(files), batch)]
    s = Screener.from_model(model, dtype=dtype, max_batch=batch)
    s.score(xs[0])
    t0 = time.perf_counter()
    for x in xs:
        s.score(x)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a trained model file (default: a random default model)")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="runs of each contender, alternating; the best is kept")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="skipgan-e2e-") as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "images", a.n, a.size)
        make_folder(tmp / "one", 1, a.size)
        model = a.model or str(tmp / "model.safetensors")
        if not a.model:
            random_model_file(Path(model), a.size)
        env = dict(os.environ, SKIPGAN_PLAN_CACHE=str(tmp / "plans"))  # starts empty: the first run measures
        py = sys.executable
        score = [py, "-m", "skipgan.cli", "score", model, "--device", "cpu", "--batch-size", str(a.batch),
                 "--out", str(tmp / "out.jsonl")]
        result: dict = {"images": a.n, "size": a.size, "batch": a.batch, "model": a.model or "random default (K=8)",
                        "threads": torch.get_num_threads(), "seconds": {}}
        sec = result["seconds"]
        for dtype in ("fp32", "bf16"):
            sec[f"score {dtype}, first run (plan measured)"] = wall([*score[:5], str(tmp / "images"), *score[5:],
                                                                     "--dtype", dtype], env)
        runs = {
            "skipgan score fp32": [*score[:5], str(tmp / "images"), *score[5:]],
            "skipgan score bf16": [*score[:5], str(tmp / "images"), *score[5:], "--dtype", "bf16"],
            "in-process torch.compile fp32": [py, "-c", PEER, "compile", model, str(tmp / "images"), str(a.batch)],
            "in-process eager autocast bf16": [py, "-c", PEER, "autocast", model, str(tmp / "images"), str(a.batch)],
        }
        for _ in range(a.repeats):
            for name, cmd in runs.items():
                sec[name] = min(sec.get(name, float("inf")), wall(cmd, env))
        sec["start-up (import skipgan.cli)"] = min(wall([py, "-c", "import skipgan.cli"], env) for _ in range(3))
        sec["score fp32, one image (start-up + load + cached plan)"] = min(
            wall([*score[:5], str(tmp / "one"), *score[5:]], env) for _ in range(3))
        os.environ["SKIPGAN_PLAN_CACHE"] = env["SKIPGAN_PLAN_CACHE"]
        for dtype in ("fp32", "bf16"):
            sec[f"engine alone {dtype} (in this process)"] = engine_only(model, tmp / "images", a.batch, dtype)
    img_s = {k: a.n / v for k, v in sec.items() if "one image" not in k and "start-up" not in k}
    result["images_per_s"] = img_s
    result["ratios"] = {
        "score fp32 / torch.compile fp32": img_s["skipgan score fp32"] / img_s["in-process torch.compile fp32"],
        "score bf16 / eager autocast bf16": img_s["skipgan score bf16"] / img_s["in-process eager autocast bf16"],
    }
    for k, v in sec.items():
        print(f"{k:58s} {v:8.2f} s" + (f"  {a.n / v:8.1f} images/s" if k in img_s else ""))
    for k, v in result["ratios"].items():
        print(f"{k:58s} {v:8.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
