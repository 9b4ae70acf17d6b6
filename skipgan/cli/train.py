"""`skipgan train`: train on normal images, calibrate on a validation split, evaluate on the test split, write the
model file and the report. Runs unchanged under torchrun (runner.run_command)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from ..anomaly_map import MapSettings
from ..data.datasets import load_splits
from ..distributed import PeerFailure, digest_hook
from ..errors import InputError
from ..evaluation import evaluate_model
from ..model import Architecture, check_score_margin
from ..modelfile import load_model, save_model, scoring_metadata
from ..train import Trainer, TrainConfig
from ..train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ..train.trainer import split_validation
from .evaluate import print_summary
from .flags import add_settings_flags, as_input_error, cli_fields, flag_of, settings_from_args
from .quantize import quantize_and_save
from .runner import add_dist_flags, run_command

DEFAULT_DATA = "digits"


def add_train_parser(sub) -> None:
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
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="also write int8.safetensors beside the model: skipgan quantize on the run's own training "
                        "and validation normals (docs/int8.md)")
    p.add_argument("--no-progress", action="store_true")
    add_dist_flags(p)
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    return run_command(train_command, a)


def train_command(a: argparse.Namespace, d, device: torch.device) -> int:
    """`skipgan train` as process `d` of the job (one process, or one of several under torchrun) on `device`."""
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
            if cfg.knn_settings is not None:
                cfg.knn_settings.check(arch.isize)
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
    chosen = {"aggregation_choice": result.aggregation_choice} if result.aggregation_choice else {}
    save_model(out / "model.safetensors", result.model, result.calibration,
               {"train": cfg.to_dict(), "run_info": info, "history": result.history, "processes": d.world_size,
                **scoring_metadata(result.aggregation, result.calibrations, result.map_settings), **chosen})
    extra.update(aggregation=result.aggregation, **chosen)
    if a.quantize:  # on a copy: the fp32 model is evaluated below
        model, meta = load_model(out / "model.safetensors", "cpu")
        quantize_and_save(model, meta, *split_validation(splits.train, cfg.val_fraction, cfg.seed),
                          out / "int8.safetensors")
    metrics = evaluate_model(result.model, result.calibration["threshold"], splits.test, splits.test_labels, out,
                             splits.test_names, extra=extra, masks=splits.test_masks,
                             map_settings=MapSettings(**result.map_settings, margin=cfg.score_margin),
                             aggregation=result.aggregation)
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
