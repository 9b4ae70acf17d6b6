"""What every exported file carries about itself (one JSON object), so a consumer needs nothing else.

TorchScript: the extra file `skipgan.json`; AOTInductor: the package metadata key `skipgan`; ONNX: the model
property `skipgan` (plus each top-level scalar as its own property); TensorRT: `<engine>.json` beside the plan
(a TensorRT plan has no place for user metadata).
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..modelfile import NORMALISATION

FORMAT = "skipgan-export"
FORMAT_VERSION = 1
KEY = "skipgan"  # the metadata's name inside each file format
OUTPUTS = ("scores", "normalised", "verdicts")
ERROR_MAP_OUTPUT = "error_map"


def export_metadata(meta: dict[str, Any], *, fmt: str, device: str, dtype: str, probes: int, max_batch: int,
                    input_dtype: str, error_map: bool) -> dict[str, Any]:
    """meta: the model file's metadata (skipgan.modelfile). The calibration travels as stored."""
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
        "outputs": [*OUTPUTS, *((ERROR_MAP_OUTPUT,) if error_map else ())],
    }


def dumps(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True)
