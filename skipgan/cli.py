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
from typing import Any, Sequence, get_type_hints

import torch

from .cli_score import add_score_parser, add_scorer_flags, make_scorer
from .distributed import add_dist_flags
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


def as_input_error(e: ValueError, *settings: type) -> InputError:
    """Turn a settings ValueError 'name=value: must be ...' into a message naming the flag: '--name value: ...'.

    `settings`: dataclasses whose fields may name a flag of another name (Architecture's nc is --channels).
    """
    msg = str(e)
    m = re.match(r"(\w+)=", msg)
    if m:
        flags = {f.name: flag_of(f) for cls in settings for f in dataclasses.fields(cls)}
        msg = flags.get(m.group(1), flag_of(m.group(1))) + " " + msg[m.end():]
    return InputError(msg)


# ---------------------------------------------------------------------------------- flags from the settings
def flag_of(f: dataclasses.Field | str) -> str:
    """The flag of a settings field: --batch-size for batch_size (or the field's metadata 'flag')."""
    name = f if isinstance(f, str) else f.metadata.get("flag", f.name)
    return "--" + name.replace("_", "-")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of the settings dataclass `cls` that are flags (all but those marked metadata cli=False)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_settings_flags(parser, cls: type) -> None:
    """One flag per field of `cls` (TrainConfig, Architecture): its type and default from the declaration, help
    (and choices, metavar) from the field's metadata; a bool field is a switch (store_true)."""
    hints = get_type_hints(cls)
    for f in cli_fields(cls):
        meta = f.metadata
        kw: dict[str, Any] = {"dest": f.name, "default": f.default}
        text = meta.get("help", "").replace("%", "%%")
        if hints[f.name] is bool:
            kw["action"] = "store_true" if not f.default else argparse.BooleanOptionalAction
        else:
            kw["type"] = hints[f.name]
            kw.update({k: meta[k] for k in ("choices", "metavar") if k in meta})
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        parser.add_argument(flag_of(f), help=text or None, **kw)


def settings_from_args(cls: type, a: argparse.Namespace, **given):
    """An instance of `cls` from the parsed flags that `add_settings_flags` added (and `given` fields)."""
    return cls(**{f.name: getattr(a, f.name) for f in cli_fields(cls)}, **given)


# ----------------------------------------------------------------------------------------------------- train
def add_train_parser(sub) -> None:
    from .model import Architecture
    from .train.config import TrainConfig

    p = sub.add_parser("train", help="train on normal images, calibrate on a validation split, evaluate on test")
    p.add_argument("--data", default=DEFAULT_DATA, help="digits | folder:PATH | cifar10:PATH | mnist:PATH")
    p.add_argument("--abnormal-class", type=int, default=0, help="class held out as abnormal (digits/cifar10/mnist)")
    p.add_argument("--channels", type=int, default=None,
                   help="force this many input channels (default: the data's; 1 -> N repeats, 3 -> 1 takes luma)")
    add_settings_flags(p.add_argument_group("model (skipgan.model.Architecture)"), Architecture)
    add_settings_flags(p.add_argument_group("training (skipgan.train.TrainConfig)"), TrainConfig)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", default="runs/train", help="output folder (model, metrics, plots, checkpoint)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the killed run in DIR")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue the run in --out if it holds a checkpoint, else start it (for torchrun "
                        "--max-restarts: the same command line restarts a failed job where it stopped)")
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt images instead of stopping")
    p.add_argument("--no-progress", action="store_true")
    add_dist_flags(p)
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    from .distributed import run_command

    return run_command(train_command, a)


def train_command(a: argparse.Namespace, d, device: torch.device) -> int:
    """`skipgan train` as process `d` of the job (one process, or one of several under torchrun) on `device`."""
    from .anomaly_map import MapSettings
    from .data.datasets import load_splits
    from .distributed import PeerFailure, digest_hook
    from .evaluation import evaluate_model
    from .model import Architecture, check_score_margin
    from .modelfile import save_model
    from .train import Trainer, TrainConfig
    from .train.checkpoint import CHECKPOINT_NAME, load_checkpoint

    resume = a.resume
    if a.auto_resume:
        if a.resume:
            raise InputError("--auto-resume continues the run in --out; pass --resume DIR or --auto-resume, not both")
        if (Path(a.out) / CHECKPOINT_NAME).is_file():
            resume = a.out
    if not (a.resume and resume):  # settings from the flags (for --auto-resume: to check against the checkpoint)
        try:
            cfg = settings_from_args(TrainConfig, a)
            # the model's own checks, run before any data is read (nc is the data's, known once it is loaded)
            arch = settings_from_args(Architecture, a, nc=a.channels or 1)
            check_score_margin(cfg.score_margin, arch.isize)
            cfg.corruption.check(arch.isize)
            cfg.check_knn_window(arch.isize)
            cfg.map_settings  # noqa: B018 (checks --map-sigma, --topk-percent; TrainConfig checked the knn flags)
        except ValueError as e:
            raise as_input_error(e, Architecture, TrainConfig) from None
        info = {"data": a.data, "abnormal_class": a.abnormal_class, "channels": a.channels, "skip_bad": a.skip_bad,
                **{f.name: getattr(arch, f.name) for f in cli_fields(Architecture)}}
        out = Path(a.out)
    if resume:
        # Everything but the device comes from the checkpoint: the resumed run is the same run.
        _, meta = load_checkpoint(resume)
        saved_info, saved_cfg = meta["run_info"], TrainConfig.from_dict(meta["config"])
        if a.auto_resume:
            check_same_run(resume, (cfg, info), (saved_cfg, saved_info))
        info, cfg, arch = saved_info, saved_cfg, Architecture(**meta["arch"])
        out = Path(resume)
    if cfg.sync_bn and d.enabled and device.type != "cuda":
        raise InputError("--sync-bn: torch's SyncBatchNorm runs on CUDA only; on CPU leave it out (per-process "
                         "BatchNorm statistics, averaged over the processes after every epoch)")
    splits = load_splits(info["data"], isize=info["isize"], abnormal_class=info["abnormal_class"],
                         channels=info["channels"], seed=cfg.seed, skip_bad=info["skip_bad"])
    if splits.skipped and d.is_main:
        print(f"skipped {splits.skipped} corrupt image(s)", file=sys.stderr)
    if not resume:
        arch = dataclasses.replace(arch, nc=splits.channels)
    if d.is_main:
        procs = (f"; {d.world_size} processes ({d.backend}), {cfg.batch_size} images per process and step (global "
                 f"batch {d.world_size * cfg.batch_size})" if d.enabled else "")
        print(f"data: {splits.description}; {len(splits.train)} normal training images, {len(splits.test)} test "
              f"images; device {device}{procs}")
    t0 = time.time()
    trainer = Trainer(arch, cfg, device, out_dir=out, run_info=info, progress=not a.no_progress, dist=d,
                      on_epoch_end=digest_hook(d))
    if resume:
        trainer.resume()
    try:
        result = trainer.fit(splits.train)
    except PeerFailure as e:
        ckpt = out / CHECKPOINT_NAME
        hint = (f"the last complete checkpoint is {ckpt}: continue with --resume {out}" if ckpt.is_file()
                else "no epoch was completed: start the run again")
        raise PeerFailure(f"{e}; {hint}") from e
    train_seconds = time.time() - t0
    if not d.is_main:  # rank 0 alone writes the model and the report
        return 0
    extra = {"model": "model.safetensors", "selected_epoch": result.selected_epoch, "epochs": cfg.epochs,
             "train_seconds": round(train_seconds, 1), "calibration": result.calibration, "data": info["data"],
             "abnormal_class": info["abnormal_class"], "processes": d.world_size}
    save_model(out / "model.safetensors", result.model, result.calibration,
               {"train": cfg.to_dict(), "run_info": info, "history": result.history, "processes": d.world_size,
                "aggregation": cfg.aggregation, "calibrations": result.calibrations,
                "anomaly_map": result.map_settings})
    extra["aggregation"] = cfg.aggregation
    metrics = evaluate_model(result.model, result.calibration["threshold"], splits.test, splits.test_labels, out,
                             splits.test_names, extra=extra, masks=splits.test_masks,
                             map_settings=MapSettings(**result.map_settings, margin=cfg.score_margin),
                             aggregation=cfg.aggregation)
    if splits.mask_note:
        print(splits.mask_note, file=sys.stderr)
    print_summary(metrics, out)
    return 0


def check_same_run(run_dir, given: tuple, saved: tuple) -> None:
    """--auto-resume: the checkpoint in run_dir must be of the run the flags describe (TrainConfig, run info)."""
    (cfg, info), (saved_cfg, saved_info) = given, saved
    new, old = {**cfg.to_dict(), **info}, {**saved_cfg.to_dict(), **saved_info}
    diff = [k for k in new if k in old and new[k] != old[k]]
    if diff:
        shown = ", ".join(f"{flag_of(k)} {old[k]} (given: {new[k]})" for k in diff[:3])
        raise InputError(f"--auto-resume: {run_dir} holds a checkpoint of another run ({shown}); pass another --out, "
                         f"or --resume {run_dir} to continue that run as it was")


def print_summary(m: dict[str, Any], out: Path) -> None:
    cm = m.get("confusion_matrix", {})
    print(f"AUROC {m['auroc']:.4f}  AP {m['average_precision']:.4f}  F1-max {m['f1_max']:.4f}  "
          f"TPR@FPR1% {m['tpr_at_fpr_1pct']:.4f}  TPR@FPR5% {m['tpr_at_fpr_5pct']:.4f}")
    if cm:
        print(f"at threshold {m['threshold']:.6g}: tp {cm['tp']} fp {cm['fp']} tn {cm['tn']} fn {cm['fn']}")
    if "pixel_auroc" in m:
        print(f"pixel AUROC {m['pixel_auroc']:.4f}  PRO (FPR ≤ {m['pro_fpr_limit']}) {m['pro']:.4f}  "
              f"({m['regions']} defect regions)")
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
    add_scorer_flags(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .data.datasets import load_splits
    from .evaluation import evaluate_model
    from .modelfile import load_model, scoring_choice

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


# ----------------------------------------------------------------------------------------------------- score
# `skipgan score` lives in cli_score.py, `skipgan bench` in cli_bench.py.


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
    from .cli_bench import add_bench_parser
    from .cli_export import add_export_parser

    parser = argparse.ArgumentParser(prog="skipgan", description="Skip-GANomaly image anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_score_parser(sub)
    add_bench_parser(sub)
    add_export_parser(sub)
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
