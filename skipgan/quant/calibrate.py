"""Calibrating an int8 model on the model's own normal images (never test images).

1. Input ranges: every convolution's input min/max over calibration images (the model's normal training images,
   scored as the model scores: the probed generator inputs, [x; x̂] for the discriminator).
2. Sensitivity, measured: the score error of the model with ONE layer quantised, for each layer, on the held-out
   validation normals, in units of their score spread (RMS(s_int8 − s_fp32) / std(s_fp32)). Layers are kept in fp32,
   most sensitive first, until the fully quantised model's error is within `budget` (KEEP_BUDGET).
3. The threshold and the score statistics are recalibrated on the int8 scores of the validation normals
   (cli/quantize.py).
"""

from __future__ import annotations

import dataclasses

import torch

from ..model.skipganomaly import score_in_batches
from .int8 import Int8Params, conv_layers, input_qparams, out_dim, quantized, weight_scales

# An int8 model's scores may move by this share of the spread of normal scores (RMS over the validation normals).
# Why 0.05: the paper score's AUROC moves with the ordering of normals against anomalies; a perturbation of 5 % of
# the normals' spread reorders only pairs already within that distance (fixed before any AUROC was measured).
KEEP_BUDGET = 0.05


@torch.no_grad()
def observe_input_ranges(model, images: torch.Tensor, batch_size: int = 256) -> dict[str, tuple[float, float]]:
    """Every convolution's input (min, max) while the model scores `images`."""
    ranges: dict[str, list[float]] = {}
    hooks = []

    def observe(name):
        def hook(_module, args):
            x = args[0]
            lo, hi = float(x.min()), float(x.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)
        return hook

    for name, conv in conv_layers(model).items():
        hooks.append(conv.register_forward_pre_hook(observe(name)))
    try:
        score_in_batches(model, images, batch_size)
    finally:
        for h in hooks:
            h.remove()
    return {name: (lo, hi) for name, (lo, hi) in ranges.items()}


def all_layers_int8(model, ranges: dict[str, tuple[float, float]]) -> Int8Params:
    convs = conv_layers(model)
    missing = set(convs) - set(ranges)
    if missing:
        raise ValueError(f"no calibration range for layers {sorted(missing)}")
    inputs = {name: input_qparams(*ranges[name]) for name in convs}
    scales = {name: weight_scales(conv.weight, out_dim(conv)) for name, conv in convs.items()}
    return Int8Params(inputs, scales)


@torch.no_grad()
def scores_of(model, images: torch.Tensor, params: Int8Params | None = None,
              layers: tuple[str, ...] | None = None) -> torch.Tensor:
    if params is None:
        return score_in_batches(model, images).score
    with quantized(model, params, layers):
        return score_in_batches(model, images).score


def relative_error(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """RMS(scores − reference) / std(reference)."""
    spread = float(reference.double().std()) or 1.0
    return float((scores.double() - reference.double()).pow(2).mean().sqrt()) / spread


def sensitivity(model, params: Int8Params, images: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Each layer's score error with that layer alone quantised."""
    return {name: relative_error(scores_of(model, images, params, (name,)), reference) for name in params.inputs}


def choose_kept(model, params: Int8Params, images: torch.Tensor, budget: float = KEEP_BUDGET
                ) -> tuple[Int8Params, dict]:
    """Keep the most sensitive layers in fp32 until the quantised model's error on `images` is within budget
    (the per-layer sensitivities are measured only when the fully quantised model misses it). Returns the params
    with `kept` set and the record of the choice (for the model file and metrics)."""
    reference = scores_of(model, images)
    err = relative_error(scores_of(model, images, params), reference)
    steps, sens, kept = [{"kept": [], "error": round(err, 5)}], {}, []
    if err > budget:
        sens = sensitivity(model, params, images, reference)
        for name in sorted(sens, key=sens.get, reverse=True):
            kept.append(name)
            trial = dataclasses.replace(params, kept=tuple(kept))
            err = relative_error(scores_of(model, images, trial), reference)
            steps.append({"kept": list(kept), "error": round(err, 5)})
            if err <= budget:
                break
    record = {"budget": budget, "error": round(err, 5), "images": int(len(images)), "steps": steps,
              "sensitivity": {k: round(v, 5) for k, v in sens.items()} or "not measured: within budget"}
    return dataclasses.replace(params, kept=tuple(kept)), record
