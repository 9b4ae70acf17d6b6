"""`skipgan evaluate`: a model file on a labelled test set (the one it was trained on by default): metrics.json,
curves, histogram and example grid, scored by the fused engine or the eager model (cli/scorer.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data.datasets import load_splits
from ..errors import InputError
from ..evaluation import evaluate_model
from ..modelfile import load_model, scoring_choice
from .flags import resolve_device
from .scorer import add_scorer_flags, make_scorer


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model file on a labelled test set")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("--data", default=None, help="data spec (default: the one the model was trained on)")
    p.add_argument("--abnormal-class", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the training seed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="output folder (default: beside the model, in evaluate/)")
    p.add_argument("--skip-bad", action="store_true")
    add_scorer_flags(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    model, meta = load_model(a.model, resolve_device(a.device))
    info = meta.get("run_info", {})
    data = a.data or info.get("data")
    if data is None:
        raise InputError(f"{a.model}: the model does not record its data; pass --data SPEC")
    arch = meta["architecture"]
    seed = a.seed if a.seed is not None else meta.get("train", {}).get("seed", 0)
    abnormal = a.abnormal_class if a.abnormal_class is not None else info.get("abnormal_class", 0)
    splits = load_splits(data, isize=arch["isize"], abnormal_class=abnormal, channels=arch["nc"], seed=seed,
                         skip_bad=a.skip_bad)
    out = Path(a.out) if a.out else Path(a.model).parent / "evaluate"
    how, cal, settings = scoring_choice(meta, a.aggregation, a.model)
    scorer = make_scorer(model, a, max_batch=64)
    extra = {"model": str(a.model), "data": data, "abnormal_class": abnormal, "engine": a.engine, "dtype": a.dtype,
             "probes": a.probes if a.probes is not None else int(model.probe_weight.shape[0]), "aggregation": how}
    metrics = evaluate_model(model, cal["threshold"], splits.test, splits.test_labels, out,
                             splits.test_names, extra=extra, scorer=scorer, masks=splits.test_masks,
                             map_settings=settings, aggregation=how)
    if splits.mask_note:
        print(splits.mask_note, file=sys.stderr)
    print_summary(metrics, out)
    return 0


def print_summary(m: dict[str, Any], out: Path) -> None:
    """The metrics of an evaluation (of `skipgan train` or `evaluate`) in a few lines on stdout."""
    cm = m.get("confusion_matrix", {})
    print(f"AUROC {m['auroc']:.4f}  AP {m['average_precision']:.4f}  F1-max {m['f1_max']:.4f}  "
          f"TPR@FPR1% {m['tpr_at_fpr_1pct']:.4f}  TPR@FPR5% {m['tpr_at_fpr_5pct']:.4f}")
    if cm:
        print(f"at threshold {m['threshold']:.6g}: tp {cm['tp']} fp {cm['fp']} tn {cm['tn']} fn {cm['fn']}")
    if "pixel_auroc" in m:
        print(f"pixel AUROC {m['pixel_auroc']:.4f}  PRO (FPR ≤ {m['pro_fpr_limit']}) {m['pro']:.4f}  "
              f"({m['regions']} defect regions)")
    print(f"wrote {out}/metrics.json and plots")
