"""`skipgan` command line: train, evaluate, score.

Every user-fixable problem ends as one line `skipgan: error: ...` on stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import InputError

DEFAULT_DATA = "digits"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


def as_input_error(e: ValueError) -> InputError:
    """Turn a settings ValueError 'name=value: must be ...' into a message naming the flag."""
    msg = str(e)
    m = re.match(r"(\w+)=", msg)
    if m:
        msg = "--" + m.group(1).replace("_", "-") + " " + msg[m.end():]
    return InputError(msg)


# ----------------------------------------------------------------------------------------------------- train
def add_train_parser(sub) -> None:
    from .train.config import AMP_CHOICES, SELECT_CHOICES, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train on normal images, calibrate on a validation split, evaluate on test")
    p.add_argument("--data", default=DEFAULT_DATA, help="digits | folder:PATH | cifar10:PATH | mnist:PATH")
    p.add_argument("--abnormal-class", type=int, default=0, help="class held out as abnormal (digits/cifar10/mnist)")
    p.add_argument("--isize", type=int, default=32, help="image size, a power of two from 32 to 512")
    p.add_argument("--channels", type=int, default=None, help="force this many input channels")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--w-adv", type=float, default=d.w_adv)
    p.add_argument("--w-con", type=float, default=d.w_con, help="contextual (L1) weight; the paper uses 40")
    p.add_argument("--w-lat", type=float, default=d.w_lat)
    p.add_argument("--lam", type=float, default=d.lam, help="λ in A = λ·pixel error + (1−λ)·feature error")
    p.add_argument("--score-margin", type=int, default=d.score_margin,
                   help="border pixels left out of the pixel error (0 = the paper's score)")
    p.add_argument("--balance-lam", action="store_true",
                   help="rescale λ so pixel and feature errors count equally on validation normals")
    p.add_argument("--noise-std", type=float, default=d.noise_std,
                   help="std of the noise added to the generator's input (denoising); 0 with --score-draws 0 is "
                        "the paper's recipe")
    p.add_argument("--score-draws", type=int, default=d.score_draws,
                   help="score by averaging this many fixed noise probes (needs --noise-std > 0; 0 = score the "
                        "clean input; each probe is one generator pass)")
    p.add_argument("--mask-block", type=int, default=d.mask_block,
                   help="train and score by inpainting hidden BLOCK x BLOCK cells (0 = off)")
    p.add_argument("--mask-groups", type=int, default=d.mask_groups,
                   help="with --mask-block: hide 1/GROUPS of the cells; scoring makes GROUPS passes")
    p.add_argument("--select", choices=SELECT_CHOICES, default=d.select,
                   help="last epoch, or the epoch with the lowest validation score (never test data)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--target-fpr", type=float, default=d.target_fpr, help="false-positive rate of the threshold")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", choices=AMP_CHOICES, default=d.amp, help="mixed precision (CUDA)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--out", default="runs/train", help="output folder (model, metrics, plots, checkpoint)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the killed run in DIR")
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt images instead of stopping")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    from .data.datasets import load_splits
    from .evaluation import evaluate_model
    from .model import Architecture, check_score_margin
    from .modelfile import save_model
    from .train import Trainer, TrainConfig
    from .train.checkpoint import load_checkpoint

    if a.resume:
        # Everything but the device comes from the checkpoint: the resumed run is the same run.
        _, meta = load_checkpoint(a.resume)
        info, cfg, arch = meta["run_info"], TrainConfig.from_dict(meta["config"]), Architecture(**meta["arch"])
        out = Path(a.resume)
    else:
        try:
            cfg = TrainConfig(
                epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, w_adv=a.w_adv, w_con=a.w_con, w_lat=a.w_lat,
                lam=a.lam, val_fraction=a.val_fraction, target_fpr=a.target_fpr, seed=a.seed, amp=a.amp,
                channels_last=a.channels_last, noise_std=a.noise_std, select=a.select,
                score_draws=a.score_draws, mask_block=a.mask_block, mask_groups=a.mask_groups,
                balance_lam=a.balance_lam, score_margin=a.score_margin)
            # the model's own checks, run before any data is read
            Architecture(isize=a.isize, nc=a.channels or 1, ngf=a.ngf, ndf=a.ndf, nz=a.nz)
            check_score_margin(a.score_margin, a.isize)
            cfg.corruption.check(a.isize)
        except ValueError as e:
            raise as_input_error(e) from None
        info = {"data": a.data, "abnormal_class": a.abnormal_class, "isize": a.isize, "channels": a.channels,
                "skip_bad": a.skip_bad, "ngf": a.ngf, "ndf": a.ndf, "nz": a.nz}
        out = Path(a.out)
    device = resolve_device(a.device)
    splits = load_splits(info["data"], isize=info["isize"], abnormal_class=info["abnormal_class"],
                         channels=info["channels"], seed=cfg.seed, skip_bad=info["skip_bad"])
    if splits.skipped:
        print(f"skipped {splits.skipped} corrupt image(s)", file=sys.stderr)
    if not a.resume:
        arch = Architecture(isize=info["isize"], nc=splits.channels, ngf=info["ngf"], ndf=info["ndf"], nz=info["nz"])
    print(f"data: {splits.description}; {len(splits.train)} normal training images, {len(splits.test)} test "
          f"images; device {device}")
    t0 = time.time()
    trainer = Trainer(arch, cfg, device, out_dir=out, run_info=info, progress=not a.no_progress)
    if a.resume:
        trainer.resume()
    result = trainer.fit(splits.train)
    train_seconds = time.time() - t0
    extra = {"model": "model.safetensors", "selected_epoch": result.selected_epoch, "epochs": cfg.epochs,
             "train_seconds": round(train_seconds, 1), "calibration": result.calibration, "data": info["data"],
             "abnormal_class": info["abnormal_class"]}
    save_model(out / "model.safetensors", result.model, result.calibration,
               {"train": cfg.to_dict(), "run_info": info, "history": result.history})
    metrics = evaluate_model(result.model, result.calibration["threshold"], splits.test, splits.test_labels, out,
                             splits.test_names, extra=extra)
    print_summary(metrics, out)
    return 0


def print_summary(m: dict[str, Any], out: Path) -> None:
    cm = m.get("confusion_matrix", {})
    print(f"AUROC {m['auroc']:.4f}  AP {m['average_precision']:.4f}  F1-max {m['f1_max']:.4f}  "
          f"TPR@FPR1% {m['tpr_at_fpr_1pct']:.4f}  TPR@FPR5% {m['tpr_at_fpr_5pct']:.4f}")
    if cm:
        print(f"at threshold {m['threshold']:.6g}: tp {cm['tp']} fp {cm['fp']} tn {cm['tn']} fn {cm['fn']}")
    print(f"wrote {out}/metrics.json and plots")


# -------------------------------------------------------------------------------------------------- evaluate
def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model file on a labelled test set")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("--data", default=None, help="data spec (default: the one the model was trained on)")
    p.add_argument("--abnormal-class", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the training seed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="output folder (default: beside the model, in evaluate/)")
    p.add_argument("--skip-bad", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .data.datasets import load_splits
    from .evaluation import evaluate_model
    from .modelfile import load_model

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
    metrics = evaluate_model(model, meta["calibration"]["threshold"], splits.test, splits.test_labels, out,
                             splits.test_names, extra={"model": str(a.model), "data": data, "abnormal_class": abnormal})
    print_summary(metrics, out)
    return 0


# ----------------------------------------------------------------------------------------------------- score
def add_score_parser(sub) -> None:
    p = sub.add_parser("score", help="score images; prints one JSON line per image")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt images instead of stopping")
    p.set_defaults(func=cmd_score)


def cmd_score(a: argparse.Namespace) -> int:
    from .data.images import CorruptImageError, read_image, to_tensor
    from .metrics import normalise
    from .modelfile import load_model

    model, meta = load_model(a.model, resolve_device(a.device))
    arch, cal = meta["architecture"], meta["calibration"]
    paths = collect_image_paths(a.paths)
    skipped = 0
    for i in range(0, len(paths), a.batch_size):
        batch, names = [], []
        for p in paths[i : i + a.batch_size]:
            try:
                batch.append(to_tensor(read_image(p), arch["isize"], channels=arch["nc"], name=str(p)))
                names.append(p)
            except CorruptImageError:  # only undecodable files are skippable, never a configuration mistake
                if not a.skip_bad:
                    raise
                skipped += 1
        if not batch:
            continue
        with torch.no_grad():
            scores = model(torch.stack(batch).to(next(model.parameters()).device)).cpu().tolist()
        for p, s in zip(names, scores):
            verdict = "abnormal" if s > cal["threshold"] else "normal"
            print(json.dumps({"path": str(p), "score": s, "normalised_score": normalise(s, cal["val_stats"]),
                              "verdict": verdict}), flush=True)
    if skipped:
        print(f"skipped {skipped} corrupt image(s)", file=sys.stderr)
    return 0


def collect_image_paths(args: Sequence[str]) -> list[Path]:
    """Files as given; folders expanded (recursively, sorted) to the image files inside them."""
    from .data.images import is_image_file

    paths: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                raise InputError(f"{p}: folder holds no images (png, jpg, bmp, tif); pass image files or folders")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise InputError(f"{p}: no such file or folder; pass image files or folders of images")
    return paths


# ------------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipgan", description="Skip-GANomaly image anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_score_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["--help"]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"skipgan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skipgan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
