"""Benchmark families B, C, D: local defects built differently from the local-defect benchmark (family A), test-only.

    python benchmarks/accuracy/families.py make --out /tmp/families                 # B, C, D (skipgan/data/defect_families.py)
    python benchmarks/accuracy/families.py run --data /tmp/families --runs runs/families --json families.json
    python benchmarks/accuracy/families.py table --json families.json                # the docs' table
    python benchmarks/accuracy/families.py choice --runs /tmp/dig --digits           # the automatic score, post hoc
    python benchmarks/accuracy/families.py choice --runs /tmp/dig --refit-knn        # ... with today's knn memory

Protocol (docs/accuracy.md, "Benchmark families"): every setting of skipgan and of the baselines was chosen on
family A's development split (`local_defects.py make --dev`) or fixed a priori; B, C, D are never used to choose
anything. A change that lifts family A but lowers any other family is not taken. Per category: skipgan trained with
the defaults (`skipgan train --aggregation auto`: the same network as the default, the automatic choice recorded),
every aggregation read from its metrics.json, and every baseline of map_baselines.py fitted on the same training
images; image AUROC, pixel AUROC and PRO (FPR <= 0.3), and the family's mean over its categories.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_defects import skipgan_run, table  # noqa: E402
from map_baselines import baselines  # noqa: E402

EPOCHS, ISIZE = 8, 64  # family A's record (docs/accuracy.md): 8 epochs at the patches' own size


def families() -> dict:
    from skipgan.data.defect_families import FAMILIES  # scikit-image (the `bench` extra): not for `choice`

    return FAMILIES


def make(a) -> None:
    from skipgan.data.defect_families import write_family

    for fam in a.families:
        cats = write_family(fam, Path(a.out) / fam, seed=a.seed)
        print(f"wrote family {fam}: {', '.join(c.name for c in cats)}", flush=True)


def run(a) -> None:
    from skipgan.data.datasets import load_splits

    out_path = Path(a.json) if a.json else None
    results = json.loads(out_path.read_text()) if out_path and out_path.exists() else {}
    for fam in a.families:
        for cat in families()[fam]:
            key = f"{fam}/{cat}"
            if key in results:  # resumable: one entry per category, written as each finishes
                continue
            data = Path(a.data) / fam / cat
            splits = load_splits(f"folder:{data}", isize=a.isize)
            assert splits.test_masks is not None, splits.mask_note
            r = baselines(splits)
            r.update(skipgan_run(data, Path(a.runs) / fam, a.epochs, a.isize, ["--aggregation", "auto"]))
            m = json.loads((Path(a.runs) / fam / cat / "metrics.json").read_text())
            chosen = m["aggregation"]
            r["Skip-GANomaly (auto)"] = {**r[f"Skip-GANomaly ({chosen})"], "chosen": chosen}
            r["_choice"] = m.get("aggregation_choice")
            results[key] = r
            print(key, json.dumps({k: v for k, v in r.items() if not k.startswith("_")}), flush=True)
            if out_path:
                out_path.write_text(json.dumps(results, indent=1) + "\n")
    show(results)


def show(results: dict) -> None:
    """One table per family (categories and their mean), then the families' means side by side."""
    for fam in families():
        part = {k.split("/")[1]: v for k, v in results.items() if k.startswith(f"{fam}/")}
        if part:
            print(f"\nFamily {fam} (image AUROC / pixel AUROC / PRO)")
            table(part)
            print("automatic choice: " + ", ".join(f"{c} {v['Skip-GANomaly (auto)']['chosen']}"
                                                   for c, v in part.items()))


def choice(a) -> None:
    """The automatic aggregation of trained runs, computed after the fact exactly as `--aggregation auto` computes it
    at the end of training (the run's validation share, its seed), beside each aggregation's test AUROC from the
    run's metrics.json: for runs trained before the choice existed (the digits models, family A's)."""
    import torch

    from sklearn.metrics import roc_auc_score

    from skipgan.anomaly_map import MAP_OF, MapSettings, all_maps, image_scores
    from skipgan.data.datasets import load_splits
    from skipgan.model import score_in_batches
    from skipgan.modelfile import load_model
    from skipgan.train import split_validation
    from skipgan.train.aggregation_choice import choose_aggregation
    from skipgan.train.knn_refit import refit_knn

    torch.set_num_threads(2)
    rows = {}
    for run_dir in sorted(p for p in Path(a.runs).iterdir() if (p / "model.safetensors").is_file()):
        model, meta = load_model(run_dir / "model.safetensors")
        t = meta["train"]
        spec = meta["run_info"]["data"]
        s = load_splits(spec, isize=meta["architecture"]["isize"], abnormal_class=meta["run_info"].get(
            "abnormal_class") or 0, channels=meta["architecture"]["nc"], seed=t["seed"])
        train, val = split_validation(s.train, t["val_fraction"], t["seed"])
        if a.refit_knn and model.knn is not None:  # the knn memory as today's defaults fit it (no retraining)
            refit_knn(model, meta, s.train)
        settings = MapSettings.from_meta(meta)
        cands = tuple(meta.get("calibrations") or ("mean",))

        def score(x):
            return score_in_batches(model, x, with_error_map=True)

        c = choose_aggregation(score, score(val), val, train, settings, seed=t["seed"], candidates=cands)
        res, y = score(s.test), s.test_labels.numpy()  # each aggregation's test AUROC, scored here
        maps = all_maps(res, settings)
        test = {h: float(roc_auc_score(y, image_scores(res, h, settings, maps.get(MAP_OF[h])))) for h in cands}
        rows[run_dir.name] = {"chosen": c["chosen"], "synthetic": {k: v["all"] for k, v in c["synthetic_auroc"].items()},
                              "test": test, "auto_test": test[c["chosen"]], "best_test": max(test.values())}
        print(run_dir.name, json.dumps(rows[run_dir.name]), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("auto_test", "best_test")}
    per_how = {h: float(np.mean([r["test"][h] for r in rows.values()])) for h in next(iter(rows.values()))["test"]}
    print("mean test AUROC: automatic", round(mean["auto_test"], 4), "| each aggregation",
          {h: round(v, 4) for h, v in per_how.items()})
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": rows, "mean": mean, "mean_by_aggregation": per_how}, indent=1)
                                + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write families B, C, D")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--families", nargs="+", default=["B", "C", "D"])
    r = sub.add_parser("run", help="train and score skipgan and every baseline on every category")
    r.add_argument("--data", required=True)
    r.add_argument("--runs", default="runs/families")
    r.add_argument("--families", nargs="+", default=["B", "C", "D"])
    r.add_argument("--epochs", type=int, default=EPOCHS)
    r.add_argument("--isize", type=int, default=ISIZE)
    r.add_argument("--json", default=None, help="results file (resumed if it exists)")
    t = sub.add_parser("table", help="the tables of a run's results file")
    t.add_argument("--json", required=True)
    c = sub.add_parser("choice", help="the automatic aggregation of trained runs (folders with model.safetensors)")
    c.add_argument("--runs", required=True)
    c.add_argument("--json", default=None)
    c.add_argument("--refit-knn", action="store_true", help="fit each run's knn memory again with today's defaults "
                   "first (as `local_defects.py knn`; runs trained before a knn setting changed)")
    a = p.parse_args()
    if getattr(a, "families", None):
        unknown = set(a.families) - set(families())
        if unknown:
            p.error(f"--families {' '.join(sorted(unknown))}: expected some of {', '.join(families())}")
    {"make": lambda: make(a), "run": lambda: run(a), "table": lambda: show(json.loads(Path(a.json).read_text())),
     "choice": lambda: choice(a)}[a.cmd]()


if __name__ == "__main__":
    main()
