"""Local-defect benchmark: small foreign regions on real textures (scikit-image's bundled photographs).

    python benchmarks/accuracy/local_defects.py make --out /tmp/local_defects        # the data set (~10 s)
    python benchmarks/accuracy/local_defects.py run --data /tmp/local_defects --epochs 15 --json OUT.json
    python benchmarks/accuracy/local_defects.py breakdown --data /tmp/local_defects --runs runs/local_defects
    python benchmarks/accuracy/local_defects.py digits     # map aggregations on the trained digit models
    python benchmarks/accuracy/local_defects.py maps --data /tmp/local_defects --runs runs/local_defects --out maps.png
    python benchmarks/accuracy/local_defects.py knn --data /tmp/ld_dev --runs runs/ld_dev --knn-window 9  # dev only

Data (no downloads; `pip install scikit-image`, the `bench` extra; skipgan/data/synthetic_defects.py): three
512x512 grayscale textures of scikit-image's data module — brick, grass, gravel — cut into 64x64 16-bit patches,
training crops from the left part of each photograph, test crops from the right part. Abnormal test patches get ONE
pasted foreign region covering 2-15 % of the patch, with its exact mask: another texture, a smooth blob, a bright or
dark object, a scratch line. MVTec AD layout.

Methods, all fitted on the same training patches, scored on the same test patches at 64x64:
* Skip-GANomaly (`skipgan train`, default recipe) with each image-score aggregation (mean: the paper's; max,
  topk of the smoothed anomaly map; knn: max of the patch-distance map of skipgan/model/patch_knn.py), anomaly map =
  skipgan.anomaly_map (sigma 2); pixel metrics of the map each aggregation reads;
* the classical baselines of map_baselines.py: PCA reconstruction error, patch-kNN and filter-bank kNN.
Image AUROC, pixel AUROC and PRO (FPR <= 0.3) per texture and their mean. No setting is chosen on test data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from map_baselines import baselines, metrics  # noqa: E402

from skipgan.data.synthetic_defects import (DEFECTS, N_PER_DEFECT, N_TEST_NORMAL, N_TRAIN, PATCH,  # noqa: E402
                                            TEXTURES, write_dataset)


# ---------------------------------------------------------------------------------------------------- data
def make(out: Path, seed: int = 0, dev: bool = False) -> None:
    write_dataset(out, seed, dev)
    print(f"wrote {out}: {', '.join(TEXTURES)}; per texture {N_TRAIN} train, {N_TEST_NORMAL} normal + "
          f"{len(DEFECTS) * N_PER_DEFECT} abnormal test patches ({', '.join(DEFECTS)}), {PATCH}x{PATCH} 16-bit")


# ---------------------------------------------------------------------------------------------------- runs
def skipgan_run(data: Path, runs: Path, epochs: int, isize: int, extra: list[str]) -> dict:
    out = runs / data.name
    cmd = [sys.executable, "-m", "skipgan.cli", "train", "--data", f"folder:{data}", "--isize", str(isize),
           "--epochs", str(epochs), "--out", str(out), "--no-progress", "--device", "cpu", *extra]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    from skipgan.anomaly_map import MAP_OF

    m = json.loads((out / "metrics.json").read_text())
    pix = m["pixel_by_map"]  # each aggregation's pixel metrics are those of the map it reads
    res = {f"Skip-GANomaly ({how})": {"image_auroc": v, "pixel_auroc": pix[MAP_OF[how]]["pixel_auroc"],
                                      "pro": pix[MAP_OF[how]]["pro"]}
           for how, v in m["auroc_by_aggregation"].items()}
    res["_train_seconds"] = round(time.time() - t0, 1)
    return res


def run(a) -> None:
    from skipgan.data.datasets import load_splits

    data = Path(a.data)
    results: dict[str, dict] = {}
    for tex in a.textures:
        splits = load_splits(f"folder:{data / tex}", isize=a.isize, channels=1)
        assert splits.test_masks is not None, splits.mask_note
        r = baselines(splits)
        if not a.baselines_only:
            r.update(skipgan_run(data / tex, Path(a.runs), a.epochs, a.isize, a.train_args or []))
        results[tex] = r
        print(json.dumps({tex: r}, indent=1), flush=True)
    table(results)
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": vars(a), "results": results}, indent=1) + "\n")


def table(results: dict) -> None:
    texs = list(results)
    methods = [m for m in results[texs[0]] if not m.startswith("_")]
    print("| method | " + " | ".join(f"{t} img / pix / PRO" for t in texs) + " | mean img / pix / PRO |")
    print("|---|" + "---:|" * (len(texs) + 1))
    for m in methods:
        cells, acc = [], np.zeros(3)
        for t in texs:
            v = results[t][m]
            trio = np.array([v["image_auroc"], v["pixel_auroc"], v["pro"]])
            acc += trio / len(texs)
            cells.append(" / ".join(f"{x:.3f}" for x in trio))
        print(f"| {m} | " + " | ".join(cells) + " | " + " / ".join(f"{x:.3f}" for x in acc) + " |")


def _trained(data: Path, runs: Path, tex: str):
    """(model, metadata, splits) of a run's trained model for texture `tex` and that texture's data."""
    from skipgan.data.datasets import load_splits
    from skipgan.modelfile import load_model

    model, meta = load_model(runs / tex / "model.safetensors")
    arch = meta["architecture"]
    return model, meta, load_splits(f"folder:{data / tex}", isize=arch["isize"], channels=arch["nc"])


def _score_test(model, splits):
    """Engine Scores of the test set, with every map the model has."""
    from skipgan.engine import Screener

    return Screener.from_model(model, max_batch=64).score(splits.test, error_map=True)


def _scored_test_set(data: Path, runs: Path, tex: str):
    """(splits, engine Scores of the test set with its maps, MapSettings) of the run's model for texture `tex`."""
    from skipgan.anomaly_map import MapSettings

    model, meta, s = _trained(data, runs, tex)
    return s, _score_test(model, s), MapSettings.from_meta(meta)


def breakdown(a) -> None:
    """Per defect kind (each against all normal test patches): image AUROC of each aggregation and pixel AUROC of
    a trained run's maps — which defects the reconstruction error finds and which it misses."""
    from sklearn.metrics import roc_auc_score

    from skipgan.anomaly_map import AGGREGATIONS, MAP_OF, all_maps, image_scores

    out = {}
    for tex in a.textures:
        s, res, st = _scored_test_set(Path(a.data), Path(a.runs), tex)
        maps = all_maps(res, st)
        masks, y = s.test_masks.numpy(), s.test_labels.numpy()
        kinds = np.array([Path(n).parent.name for n in s.test_names])
        scores = {how: image_scores(res, how, st, maps[MAP_OF[how]]) for how in AGGREGATIONS if MAP_OF[how] in maps}
        out[tex] = {}
        for kind in DEFECTS:
            sel = (y == 0) | (kinds == kind)
            row = {f"image_auroc_{how}": float(roc_auc_score(y[sel], v[sel])) for how, v in scores.items()}
            for kind_of_map, m in maps.items():
                row[f"pixel_auroc_{kind_of_map}"] = float(roc_auc_score(masks[sel].ravel(), m[sel].ravel()))
            out[tex][kind] = row
            print(tex, kind, {k: round(v, 3) for k, v in row.items()}, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


def maps_figure(a) -> None:
    """One figure that shows why: per texture, the first test patch of each defect kind, with its error map and its
    knn map (each normalised by the model's validation statistics, one colour scale) and the mask outlined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from skipgan.anomaly_map import kind_maps

    rows = []
    for tex in a.textures:
        s, res, st = _scored_test_set(Path(a.data), Path(a.runs), tex)
        kinds = [Path(n).parent.name for n in s.test_names]
        err, knn = kind_maps(res, "error", st), kind_maps(res, "knn", st)
        for kind in DEFECTS:
            i = kinds.index(kind)
            rows.append((f"{tex} / {kind}", s.test[i, 0].numpy(), err[i], knn[i], s.test_masks[i].numpy()))
    fig = Figure(figsize=(4.5, 1.2 * len(rows)), dpi=72, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (name, img, err, knn, mask) in enumerate(rows):
        for c, (title, v) in enumerate([("input", img), ("error map (σ)", err), ("knn map (σ)", knn)]):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(v, cmap="gray", vmin=-1, vmax=1)
                ax.set_ylabel(name, fontsize=6)
            else:
                ax.imshow(v, cmap="inferno", vmin=-2, vmax=8)
            ax.contour(mask.astype(np.float32), levels=[0.5], colors="lime", linewidths=0.7)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.savefig(a.out)
    print(f"wrote {a.out}")


def knn_settings(a) -> None:
    """The knn map with other settings on a run's trained models, no retraining: each model's memory is fitted
    again, from the training images its trainer used (the validation share held out the same way), and the knn
    aggregation scored. For choosing knn settings on the development split (`make --dev`), never on the test
    split. The models' calibrated μ, σ belong to their own memory, which changes no AUROC (a global affine map)."""
    from skipgan.anomaly_map import MapSettings, image_scores, kind_maps
    from skipgan.model.patch_knn import KnnSettings
    from skipgan.train.knn_refit import refit_knn

    given = {"window": a.knn_window, "memory_size": a.knn_memory, "power": a.knn_power, "border": a.knn_border,
             "intensity_memory": a.knn_intensity_memory, "coreset": a.knn_coreset,
             "intensity_whiten": a.knn_intensity_whiten, "relative_sigma": a.knn_relative_sigma}
    settings = KnnSettings(**{k: v for k, v in given.items() if v is not None})
    results = {}
    for tex in a.textures:
        model, meta, s = _trained(Path(a.data), Path(a.runs), tex)
        refit_knn(model, meta, s.train, settings, seed=a.memory_seed)
        st = MapSettings.from_meta(meta)
        res = _score_test(model, s)
        maps = kind_maps(res, "knn", st)
        results[tex] = metrics(image_scores(res, "knn", st, maps), s.test_labels.numpy(), maps, s.test_masks.numpy())
        print(tex, {k: round(v, 4) for k, v in results[tex].items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in results.values()])) for k in ("image_auroc", "pixel_auroc", "pro")}
    print("mean", {k: round(v, 4) for k, v in mean.items()}, settings)
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": vars(a), "knn": dataclasses.asdict(settings),
                                            "results": results, "mean": mean}, indent=1) + "\n")


def digits(a) -> None:
    """Image AUROC of every aggregation on the trained digit models (the 'digits must not get worse' check). The
    digit models predate the knn map: its memory is fitted here from each model's training split (default
    settings); its μ, σ stay 0, 1, which changes no AUROC (a global affine map)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from skipgan.anomaly_map import AGGREGATIONS, MapSettings, image_scores
    from skipgan.data.datasets import load_splits
    from skipgan.modelfile import load_model
    from skipgan.train.knn_refit import refit_knn

    torch.set_num_threads(a.threads)
    rows = {}
    for k in range(10):
        path = Path(a.models) / f"digit{k}.safetensors"
        model, meta = load_model(path)
        seed = meta.get("train", {}).get("seed", 0)
        s = load_splits("digits", isize=meta["architecture"]["isize"], abnormal_class=k, seed=seed,
                        channels=meta["architecture"]["nc"])
        if model.knn is None:  # fitted as the trainer would (default settings)
            refit_knn(model, meta, s.train)
        res = _score_test(model, s)
        st = MapSettings(sigma=a.sigma, margin=model.margin)
        rows[k] = {how: float(roc_auc_score(s.test_labels.numpy(), image_scores(res, how, st))) for how in AGGREGATIONS}
        print(k, rows[k], flush=True)
    mean = {how: float(np.mean([r[how] for r in rows.values()])) for how in AGGREGATIONS}
    print("mean", mean)
    if a.json:
        Path(a.json).write_text(json.dumps({"sigma": a.sigma, "per_class": rows, "mean": mean}, indent=1) + "\n")


def _texture_run_flags(p: argparse.ArgumentParser, runs_default: str | None = None) -> None:
    """--data, --runs (required unless given a default) and --textures: the flags of every subcommand that reads a
    data set and the models a `run` trained on it."""
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=runs_default is None, default=runs_default)
    p.add_argument("--textures", nargs="+", default=list(TEXTURES))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the data set")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dev", action="store_true", help="the development split: train and test crops both from the "
                   "training columns (for choosing settings; never the reported test area)")
    r = sub.add_parser("run", help="train and score every method on every texture")
    _texture_run_flags(r, runs_default="runs/local_defects")
    r.add_argument("--isize", type=int, default=PATCH)
    r.add_argument("--epochs", type=int, default=15)
    r.add_argument("--baselines-only", action="store_true")
    r.add_argument("--json", default=None)
    r.add_argument("--train-args", nargs=argparse.REMAINDER, help="more `skipgan train` flags (last)")
    b = sub.add_parser("breakdown", help="per defect kind, for the models of a `run`")
    _texture_run_flags(b)
    b.add_argument("--json", default=None)
    d = sub.add_parser("digits", help="map aggregations on benchmarks/accuracy/models/digit*.safetensors")
    d.add_argument("--models", default=str(Path(__file__).parent / "models"))
    d.add_argument("--sigma", type=float, default=2.0)
    d.add_argument("--threads", type=int, default=2)
    d.add_argument("--json", default=None)
    f = sub.add_parser("maps", help="figure: error and knn maps of one patch per defect kind and texture")
    _texture_run_flags(f)
    f.add_argument("--out", required=True)
    k = sub.add_parser("knn", help="the knn map with other settings on a run's models (for the development split)")
    _texture_run_flags(k)
    k.add_argument("--knn-window", type=int, help="default: skipgan's")
    k.add_argument("--knn-power", type=float, help="default: skipgan's")
    k.add_argument("--knn-memory", type=int, help="default: skipgan's")
    k.add_argument("--knn-intensity-memory", type=int, help="default: skipgan's (0: texture part only)")
    k.add_argument("--knn-coreset", type=float, help="default: skipgan's (1: the whole draw)")
    k.add_argument("--knn-border", choices=["valid", "cut"], help="default: skipgan's")
    k.add_argument("--knn-intensity-whiten", action=argparse.BooleanOptionalAction, default=None,
                   help="default: skipgan's")
    k.add_argument("--knn-relative-sigma", type=float, help="default: skipgan's (0: the pixel patches themselves)")
    k.add_argument("--memory-seed", type=int, default=0)
    k.add_argument("--json", default=None)
    a = p.parse_args()
    {"knn": lambda: knn_settings(a), "make": lambda: make(Path(a.out), a.seed, a.dev), "maps": lambda: maps_figure(a), "run": lambda: run(a), "digits": lambda: digits(a),
     "breakdown": lambda: breakdown(a)}[a.cmd]()


if __name__ == "__main__":
    main()
