"""Model files: ONE .safetensors file with the weights and a JSON metadata block.

Metadata: format version, architecture, input normalisation, λ, calibration (threshold at the target FPR and the
validation score statistics) and the training settings; since anomaly maps: `aggregation` (the model's image
score, skipgan/anomaly_map.py), `calibrations` (one per aggregation; `calibration` is the model's own) and
`anomaly_map` (the calibrated map settings); since the knn map: the tensor `knn_memory` (and
`knn_intensity_memory`, with `knn_intensity_mean` and `knn_intensity_whitening` where it is whitened) with its
settings `knn` (skipgan/model/patch_knn.py). Files without them score by the
paper's mean. An int8 model file (`skipgan quantize`) also holds the tensors `int8.<layer>.input` and
`int8.<layer>.weight_scale` and the metadata `quantization` (skipgan/quant/int8.py); its `calibration(s)` are
those of its int8 scores. No pickle anywhere: loading cannot execute code, and a save/load round trip is
bit-exact.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from .anomaly_map import AGGREGATIONS, PAPER_AGGREGATION, MapSettings
from .errors import InputError
from .model import Architecture, Corruption, SkipGANomaly
from .model.patch_knn import PatchKnn
from .quant.int8 import Int8Params, conv_layers, out_dim
from .tensorfile import load_tensors, save_tensors

FORMAT = "skipgan-model"
FORMAT_VERSION = 1
KNN_MEMORY = "knn_memory"  # the tensor holding the knn map's memory (outside the networks' state dict)
KNN_INTENSITY = "knn_intensity_memory"  # and its intensity part's (skipgan/model/patch_knn.py)
# the intensity part's whitening (μ, W), in files whose knn settings whiten it
KNN_WHITENING = ("knn_intensity_mean", "knn_intensity_whitening")
# How images become network input; scorers (Python, C++, ONNX) must reproduce it.
NORMALISATION = {"scale": "divide by the dtype's full range (255 or 65535)", "range": [-1.0, 1.0],
                 "resize": "bilinear, antialiased, to isize x isize"}


def save_model(path: str | os.PathLike, model: SkipGANomaly, calibration: dict[str, Any],
               extra: dict[str, Any] | None = None) -> None:
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": dataclasses.asdict(model.arch),
        "lam": model.lam,
        "score_margin": model.margin,
        # how the scoring probes (stored as tensors) were made; see model/corruption.py
        "corruption": dataclasses.asdict(model.corruption),
        "normalisation": NORMALISATION,
        "calibration": calibration,
        **(extra or {}),
    }
    tensors = dict(model.state_dict())
    if model.knn is not None:
        tensors[KNN_MEMORY] = model.knn.memory
        if model.knn.intensity is not None:
            tensors[KNN_INTENSITY] = model.knn.intensity
        if model.knn.whitening is not None:
            tensors.update(zip(KNN_WHITENING, model.knn.whitening))
        meta["knn"] = model.knn.to_meta()
    if model.int8 is not None:
        int8_tensors, meta["quantization"] = model.int8.to_file()
        tensors.update(int8_tensors)
    save_tensors(path, tensors, meta)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SkipGANomaly, dict[str, Any]]:
    """(model in eval mode, metadata). Any problem with the file is an InputError naming it."""
    tensors, meta = load_tensors(path, what="model file")
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a skipgan model file (a checkpoint? use the model.safetensors of the run)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: model format version {meta.get('format_version')!r} is not supported "
                         f"(this skipgan reads version {FORMAT_VERSION}); retrain or upgrade skipgan")
    try:
        model = SkipGANomaly(Architecture(**meta["architecture"]), lam=meta["lam"], margin=meta.get("score_margin", 0),
                             corruption=Corruption(**meta.get("corruption", {})))
        # Scoring probes are a function of the stored corruption settings: files from before probes existed
        # (and files without any) get them regenerated; stored ones are used as stored.
        for name in ("probe_scale", "probe_shift", "probe_weight"):
            tensors.setdefault(name, getattr(model, name))
        memory, intensity = tensors.pop(KNN_MEMORY, None), tensors.pop(KNN_INTENSITY, None)
        whitening = tuple(tensors.pop(name, None) for name in KNN_WHITENING)
        if (whitening[0] is None) != (whitening[1] is None):
            raise ValueError(f"the knn whitening needs both {' and '.join(KNN_WHITENING)}")
        whitening = None if whitening[0] is None else whitening
        int8 = _int8_of(path, model, tensors, meta)
        model.load_state_dict(tensors, strict=True)
        model.int8 = int8
        if memory is not None:
            model.knn = PatchKnn.from_file(memory, meta.get("knn") or {}, intensity, whitening)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: weights do not match the stored architecture ({first}); retrain") from None
    return model.to(device).eval(), meta


def _int8_of(path, model, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Int8Params | None:
    """The int8 quantisation stored in a model file (its tensors popped from `tensors`), None for fp32 files."""
    if "quantization" not in meta:
        return None
    try:
        int8 = Int8Params.from_file(tensors, meta["quantization"])
        convs = conv_layers(model)
        if set(int8.inputs) != set(convs):
            raise ValueError("its layers are not the model's")
        for name, conv in convs.items():
            if int8.weight_scales[name].shape != (conv.weight.shape[out_dim(conv)],):
                raise ValueError(f"layer {name}: weight scales of shape {tuple(int8.weight_scales[name].shape)}")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{path}: damaged int8 quantisation data ({e}); quantize the fp32 model again "
                         "(skipgan quantize)") from None
    return int8


def model_precision(meta: dict[str, Any]) -> str:
    """'int8' for an int8 model file (skipgan quantize), else 'fp32' (its scores may still run in bf16)."""
    return (meta.get("quantization") or {}).get("precision", "fp32")


def scoring_metadata(aggregation: str, calibrations: dict[str, dict[str, Any]],
                     map_settings: dict[str, Any]) -> dict[str, Any]:
    """The metadata keys of how a model scores, for save_model's `extra`: its aggregation, every aggregation's
    calibration and the calibrated map settings (read back by model_aggregation, scoring_choice and
    MapSettings.from_meta)."""
    return {"aggregation": aggregation, "calibrations": calibrations, "anomaly_map": map_settings}


def model_aggregation(meta: dict[str, Any]) -> str:
    """The image-score aggregation a model file records ('mean', the paper's, for files from before maps)."""
    return meta.get("aggregation", PAPER_AGGREGATION)


def scoring_choice(meta: dict[str, Any], aggregation: str | None, path: str | os.PathLike):
    """(aggregation, its calibration, MapSettings) to score with: the model's own, or `aggregation` (the
    --aggregation flag). InputError naming the model file when the file has no calibration for it."""
    how = aggregation or model_aggregation(meta)
    if how not in AGGREGATIONS:
        raise InputError(f"--aggregation {how}: expected one of {', '.join(AGGREGATIONS)}")
    cals = meta.get("calibrations") or {model_aggregation(meta): meta["calibration"]}
    if how not in cals:
        raise InputError(f"--aggregation {how}: {path} holds no calibration for it (trained before that "
                         "aggregation existed, or without a knn memory); "
                         f"retrain, or score with --aggregation {model_aggregation(meta)}")
    return how, cals[how], MapSettings.from_meta(meta)
