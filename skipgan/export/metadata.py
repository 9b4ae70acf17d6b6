"""What every exported file carries about itself (one JSON object), so a consumer needs nothing else.

TorchScript: the extra file `skipgan.json`; AOTInductor: the package metadata key `skipgan`; ONNX: the model
property `skipgan` (plus each top-level scalar as its own property); TensorRT: `<engine>.json` beside the plan
(a TensorRT plan has no place for user metadata).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from .. import __version__
from ..anomaly_map import MAP_OF
from ..errors import InputError
from ..modelfile import NORMALISATION

FORMAT = "skipgan-export"
FORMAT_VERSION = 1
KEY = "skipgan"  # the metadata's name inside each file format
OUTPUTS = ("scores", "normalised", "verdicts")
# Formats whose file holds the native ops in the form of one device (GEMM on the CPU, cuDNN + epilogues on CUDA):
# the file runs on that device only ("device" in its metadata)
DEVICE_BOUND = ("torchscript", "aoti")
# what each device's form is, for the refusal
FORMS = {"cpu": "the CPU engine's GEMM form, whose col2im_bias_act_out has no CUDA kernel",
         "cuda": "cuDNN convolutions with CUDA epilogues, and the CUDA score"}
MAP_OUTPUTS = {"error": "error_map", "anomaly": "anomaly_map"}  # the fourth output's name, by kind


def export_metadata(meta: dict[str, Any], *, fmt: str, device: str, dtype: str, probes: int, max_batch: int,
                    input_dtype: str, map_output: str | None, aggregation: str, map_settings,
                    quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """meta: the model file's metadata (skipgan.modelfile); its calibration (the aggregation's) travels as stored.
    map_output: None, "anomaly" or "error" (the fourth output); map_settings: the MapSettings of the map the
    aggregation reads (its contour threshold is where regions start). quantization: an int8 model file's (its layers,
    those kept in fp32, how it was calibrated), carried as stored."""
    cal = meta["calibration"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skipgan_version": __version__,
        "export_format": fmt,
        "device": device,
        "dtype": dtype,
        "isize": meta["architecture"]["isize"],
        "channels": meta["architecture"]["nc"],
        "architecture": meta["architecture"],
        "normalisation": NORMALISATION,
        "lam": meta["lam"],
        "score_margin": meta.get("score_margin", 0),
        "probes": probes,
        "threshold": cal["threshold"],
        "target_fpr": cal.get("target_fpr"),
        "val_stats": cal["val_stats"],
        "max_batch": max_batch,
        "input": {"name": "images", "layout": "NCHW", "dtype": input_dtype, "size": "any H x W",
                  "values": "uint8 0..255, uint16 0..65535, float 0..1"},
        "aggregation": aggregation,
        # the anomaly map (score_with_anomaly_map, or the fourth output of a graph exported with --maps)
        "anomaly_map": {"kind": MAP_OF[aggregation], "size": [meta["architecture"]["isize"]] * 2, "units": "sigma",
                        "threshold": map_settings.threshold, "sigma": map_settings.sigma},
        "outputs": [*OUTPUTS, *((MAP_OUTPUTS[map_output],) if map_output else ())],
        **({"quantization": quantization} if quantization else {}),
    }


def dumps(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True)


def check_device(metadata: dict[str, Any], device: str | torch.device, path: str | os.PathLike) -> None:
    """The device contract of an export: a TorchScript or AOTInductor file runs on the device it was exported for
    (`skipgan export --device`), and anything else is refused here, at load, with the flag that makes a file for
    `device` (not batch by batch, later). InputError on a mismatch."""
    want = torch.device(device).type
    made = metadata.get("device", "cpu")
    if metadata.get("export_format") in DEVICE_BOUND and made != want:
        raise InputError(f"{os.fspath(path)}: exported for {made} (skipgan export --device {made}: "
                         f"{FORMS.get(made, made)}), so it cannot run on {want}; re-export it with "
                         f"`skipgan export --device {want}`")
