"""Could a model choose its knn pixel patches itself — absolute, or relative to their local mean
(`--knn-relative-sigma 4`) — as `--aggregation auto` chooses its score: on synthetic defects in its validation
normals, with no test data? This measures whether that choice would pick the relative form where it helps.

    python benchmarks/accuracy/knn_form_choice.py --json results/families/knn_form_choice.json \
        /tmp/local_defects_dev:runs/dev:brick,grass,gravel /tmp/families/D:runs/families/D:tissue,fundus,coloured_noise

Each DATA:RUNS:CATEGORIES: the trained runs' models, their knn memories fitted again both ways (the trainer's draw
and validation share, skipgan.train.knn_refit), each model's validation normals scored as they are and with the
trainer's synthetic defects (skipgan.train.aggregation_choice.synthetic_defects), and the knn aggregation's AUROC of
normals against synthetic images for each form. The rule, fixed before the run, as the aggregation choice's margin:
relative if its synthetic AUROC beats the absolute form's by more than PREFER_PAPER_BY (0.02).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_defects import _trained  # noqa: E402

FORMS = {"absolute": 0.0, "relative": 4.0}  # relative_sigma of each form


def synthetic_aurocs(model, meta, splits) -> dict[str, float]:
    """{form: the knn aggregation's AUROC of the validation normals against their synthetic defects}."""
    from sklearn.metrics import roc_auc_score

    from skipgan.anomaly_map import MapSettings, all_maps, image_scores
    from skipgan.engine import Screener
    from skipgan.model.patch_knn import KnnSettings
    from skipgan.train.aggregation_choice import synthetic_defects
    from skipgan.train.knn_refit import refit_knn
    from skipgan.train.trainer import split_validation

    run = meta["train"]
    train, val = split_validation(splits.train, run["val_fraction"], run.get("seed", 0))
    images, _, _ = synthetic_defects(val, train, run.get("seed", 0))
    settings = MapSettings.from_meta(meta)
    out = {}
    for form, sigma in FORMS.items():
        refit_knn(model, meta, splits.train, KnnSettings(relative_sigma=sigma))
        sc = Screener.from_model(model, max_batch=64)
        normal, synthetic = sc.score(val, error_map=True), sc.score(images, error_map=True)
        sn, ss = (image_scores(r, "knn", settings, all_maps(r, settings)["knn"]) for r in (normal, synthetic))
        out[form] = float(roc_auc_score(np.r_[np.zeros(len(sn)), np.ones(len(ss))], np.r_[sn, ss]))
    return out


def main() -> None:
    from skipgan.train.aggregation_choice import PREFER_PAPER_BY

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", help="DATA:RUNS:category,category,...")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(2)
    results = {}
    for spec in a.sets:
        data, runs, cats = spec.split(":")
        for cat in cats.split(","):
            model, meta, splits = _trained(Path(data), Path(runs), cat)
            r = synthetic_aurocs(model, meta, splits)
            r["pick"] = "relative" if r["relative"] - r["absolute"] > PREFER_PAPER_BY else "absolute"
            results[f"{Path(data).name}/{cat}"] = r
            print(f"{Path(data).name}/{cat}", {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()},
                  flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"sets": a.sets, "margin": PREFER_PAPER_BY, "results": results},
                                           indent=1) + "\n")


if __name__ == "__main__":
    main()
