"""`skipgan quantize MODEL --out MODEL_INT8`: int8 post-training quantisation calibrated on the model's own normal
images (skipgan/quant/). The calibration images are the model's training normals (input ranges) and its held-out
validation normals (sensitivity, threshold): the same split `skipgan train` made, rebuilt from the data the model
file records (or --data); never test images."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from ..anomaly_map import MapSettings
from ..data.datasets import load_splits
from ..errors import InputError
from ..model import score_in_batches
from ..modelfile import load_model, model_aggregation, model_precision, save_model, scoring_metadata
from ..quant import PRECISION, quantized
from ..quant.calibrate import KEEP_BUDGET, all_layers_int8, choose_kept, observe_input_ranges
from ..scoring import weigh
from ..train.calibrate import calibrate_maps
from ..train.trainer import split_validation

CALIBRATION_IMAGES = 256  # training normals whose layer inputs set the ranges


def add_quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help="int8 post-training quantisation, calibrated on the model's normal images")
    p.add_argument("model", help="a model.safetensors written by skipgan train")
    p.add_argument("--out", required=True, help="the int8 model file to write")
    p.add_argument("--data", default=None,
                   help="the model's training data, if it moved (default: the spec its model file records)")
    p.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                   help=f"training normals that set the layers' input ranges (default {CALIBRATION_IMAGES})")
    p.add_argument("--budget", type=float, default=KEEP_BUDGET,
                   help="largest score error allowed on the validation normals, in units of their spread; the "
                        f"most sensitive layers stay fp32 until it holds (default {KEEP_BUDGET})")
    p.set_defaults(func=cmd_quantize)


def calibration_split(meta: dict, path: str, data: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training normals, validation normals) of the model, as `skipgan train` split them."""
    info, train_cfg, arch = meta.get("run_info", {}), meta.get("train", {}), meta["architecture"]
    spec = data or info.get("data")
    if spec is None:
        raise InputError(f"{path}: the model does not record its training data; pass --data SPEC")
    seed = train_cfg.get("seed", 0)
    splits = load_splits(spec, isize=arch["isize"], abnormal_class=info.get("abnormal_class", 0),
                         channels=arch["nc"], seed=seed)
    return split_validation(splits.train, train_cfg.get("val_fraction", 0.1), seed)


def cmd_quantize(a: argparse.Namespace) -> int:
    check_quantize_flags(a.calibration_images, a.budget)
    model, meta = load_model(a.model, "cpu")
    if model_precision(meta) == PRECISION:
        raise InputError(f"{a.model}: already an int8 model file; quantize the fp32 model it was made from")
    train, val = calibration_split(meta, a.model, a.data)
    quantize_and_save(model, meta, train, val, a.out, a.calibration_images, a.budget)
    return 0


def check_quantize_flags(calibration_images: int, budget: float) -> None:
    if calibration_images < 1:
        raise InputError(f"--calibration-images {calibration_images}: must be at least 1")
    if not budget > 0:
        raise InputError(f"--budget {budget}: must be positive (a share of the normal scores' spread)")


def quantize_and_save(model, meta: dict, train: torch.Tensor, val: torch.Tensor, out: str | Path,
                      calibration_images: int = CALIBRATION_IMAGES, budget: float = KEEP_BUDGET) -> None:
    """Calibrate `model` (a trained fp32 model on the CPU, its file's metadata `meta`) on its training normals
    `train` and validation normals `val`, and write the int8 model file `out`; prints one line. `model` gets the
    int8 quantisation (copy it first to keep an fp32 model)."""
    t0 = time.time()
    params = all_layers_int8(model, observe_input_ranges(model, train[:calibration_images]))
    params, record = choose_kept(model, params, val, budget)
    record = {**record, "calibration_images": min(calibration_images, len(train)), "validation_images": len(val)}
    model.int8 = dataclasses.replace(params, calibration=record)
    # the threshold and the map statistics of the int8 scores of the validation normals (as train calibrates)
    with torch.no_grad(), quantized(model, model.int8):
        scored = score_in_batches(model, val, with_error_map=True)
    cal0 = meta["calibration"]
    settings, cals = calibrate_maps(scored.error_map, weigh(scored.pixel, scored.feature, model.lam),
                                    MapSettings.from_meta(meta), cal0["target_fpr"], scored.knn_map)
    lam_keys = {k: cal0[k] for k in ("lam", "lam_requested") if k in cal0}
    cals = {k: {**v, **lam_keys} for k, v in cals.items()}
    how = model_aggregation(meta)
    keep = {k: v for k, v in meta.items() if k in ("train", "run_info", "history", "processes", "aggregation_choice")}
    save_model(out, model, cals[how], {**keep, **scoring_metadata(how, cals, settings.to_meta())})
    kept = ", ".join(params.kept) or "none"
    print(f"int8: {len(params.inputs) - len(params.kept)} of {len(params.inputs)} layers quantised (kept in fp32: "
          f"{kept}); score error on {len(val)} validation normals {record['error']:.4f} of their spread (budget "
          f"{budget}); threshold {cals[how]['threshold']:.5g} (fp32 model {cal0['threshold']:.5g}); "
          f"{time.time() - t0:.1f} s -> {Path(out)}")
