"""Accuracy and speed of the fused engine on all ten digits splits: probes K = 0, 1, 2, 4, 8 and fp32 vs bf16.

Same honest protocol as digits.py (seed-0 splits, last epoch, eval mode, no test image before scoring) and
skipgan's default recipe (denoising σ = 2, 8 stored probes). Each class's model is trained once and kept in
benchmarks/accuracy/models/ (git-ignored); scoring then uses the SAME model for every column, so the columns
differ only in how it is scored:

    python benchmarks/accuracy/engine_probes.py --train     # ~35 min on 2 CPU cores (10 models)
    python benchmarks/accuracy/engine_probes.py --score     # AUROC + images/s per variant -> results/engine_probes.json
    python benchmarks/accuracy/engine_probes.py --table     # the table in docs/accuracy.md

images/s: the whole test split (≈ 500 images, isize 32) scored by the engine in batches of 64, best of 3, on
this machine; the eager column is model.score at the same batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from skipgan.data.datasets import load_splits
from skipgan.engine import Screener
from skipgan.fileio import write_text_atomic
from skipgan.model import Architecture
from skipgan.modelfile import load_model, save_model
from skipgan.train import Trainer, TrainConfig

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
RESULT = HERE / "results" / "engine_probes.json"
PROBES = (0, 1, 2, 4, 8)
BATCH = 64


def train(classes) -> None:
    MODELS.mkdir(exist_ok=True)
    for k in classes:
        path = MODELS / f"digit{k}.safetensors"
        if path.exists():
            continue
        splits = load_splits("digits", isize=32, abnormal_class=k, seed=0)
        cfg = TrainConfig()
        t0 = time.time()
        r = Trainer(Architecture(isize=32, nc=1), cfg, device="cpu", progress=False, log=lambda s: None).fit(splits.train)
        save_model(path, r.model, r.calibration, {"train": cfg.to_dict(), "run_info": {"data": "digits",
                                                                                        "abnormal_class": k}})
        print(f"class {k}: trained in {time.time() - t0:.0f} s -> {path}", flush=True)


def timed(fn, x) -> tuple[torch.Tensor, float]:
    """Scores of x in batches of BATCH and the best images/s of three passes."""
    best, out = 0.0, None
    for _ in range(3):
        t0 = time.perf_counter()
        out = torch.cat([fn(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
        best = max(best, len(x) / (time.perf_counter() - t0))
    return out, best


def score(classes) -> None:
    rows = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    for k in classes:
        model, _ = load_model(MODELS / f"digit{k}.safetensors")
        splits = load_splits("digits", isize=32, abnormal_class=k, seed=0)
        x, y = splits.test, splits.test_labels.numpy()
        row = {"class": k, "n_test": len(x)}
        with torch.no_grad():
            s, ips = timed(lambda b: model.score(b).score, x)
        row["eager_fp32_K8"] = {"auroc": float(roc_auc_score(y, s.numpy())), "img_s": ips}
        variants = [(f"engine_fp32_K{p}", "fp32", p) for p in PROBES] + [("engine_bf16_K8", "bf16", 8),
                                                                         ("engine_bf16_K0", "bf16", 0)]
        for name, dtype, p in variants:
            eng = Screener.from_model(model, dtype=dtype, probes=p, max_batch=BATCH)
            s, ips = timed(lambda b: eng.score(b).score, x)
            row[name] = {"auroc": float(roc_auc_score(y, s.numpy())), "img_s": ips}
        rows[str(k)] = row
        write_text_atomic(RESULT, json.dumps(rows, indent=1, sort_keys=True) + "\n")
        print(f"class {k}: " + "  ".join(f"{n} {v['auroc']:.3f} ({v['img_s']:.0f}/s)" for n, v in row.items()
                                          if isinstance(v, dict)), flush=True)


def table() -> None:
    rows = json.loads(RESULT.read_text())
    names = [n for n in next(iter(rows.values())) if n not in ("class", "n_test")]
    order = ["eager_fp32_K8"] + [f"engine_fp32_K{p}" for p in reversed(PROBES)] + ["engine_bf16_K8", "engine_bf16_K0"]
    names = [n for n in order if n in names]
    print("| abnormal digit | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k in sorted(rows, key=int):
        print(f"| {k} | " + " | ".join(f"{rows[k][n]['auroc']:.3f}" for n in names) + " |")
    mean = {n: sum(r[n]["auroc"] for r in rows.values()) / len(rows) for n in names}
    ips = {n: sorted(r[n]["img_s"] for r in rows.values())[len(rows) // 2] for n in names}
    print("| **mean AUROC** | " + " | ".join(f"**{mean[n]:.3f}**" for n in names) + " |")
    print("| images/s (median over classes) | " + " | ".join(f"{ips[n]:.0f}" for n in names) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--score", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    a = ap.parse_args()
    classes = [int(c) for c in a.classes.split(",")]
    if a.train:
        train(classes)
    if a.score:
        score(classes)
    if a.table:
        table()
    if not (a.train or a.score or a.table):
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
