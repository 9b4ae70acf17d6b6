"""`skipgan score --maps DIR`: per image an overlay of its anomaly map at the image's own size, and with --raw-maps
the map itself (.map.npy float32, or .raw.png 16-bit), each file written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..anomaly_map import upsample
from ..data.images import read_image
from ..fileio import atomic_path
from ..preprocess import to_unit
from ..report import plot_overlay

PNG16_SCALE, PNG16_ZERO = 1000.0, 32768  # --raw-maps png16: value = round(1000·map) + 32768 (±32.7 σ, 0.001 σ steps)


def map_names(paths) -> dict:
    """{path: its name under --maps DIR}: the path relative to the inputs' common folder (so equal file names in
    different folders do not collide), extension kept (a.png and a.tif do not either)."""
    parents = [str(p.resolve().parent) for p in paths]
    root = Path(os.path.commonpath(parents)) if parents else Path(".")
    return {p: p.resolve().relative_to(root) for p in paths}


def encode_png16(amap):
    """Anomaly map (σ units) -> uint16 image for --raw-maps png16; map = (value − 32768) / 1000."""
    return np.clip(np.round(amap * PNG16_SCALE) + PNG16_ZERO, 0, 65535).astype(np.uint16)


def write_map(folder, name, path, amap, settings, raw: str | None) -> str:
    """Overlay (and raw map) of one image at its own size, written atomically; returns the overlay's path."""
    arr = read_image(path)
    h, w = arr.shape[1:]
    full = upsample(amap, h, w)
    # [0, 1] as the model saw it before resizing (decoders may hand back read-only arrays: torch wants writable)
    unit = to_unit(torch.from_numpy(np.require(arr, requirements="W"))).numpy()
    out = folder / f"{name}.map.png"
    plot_overlay(out, unit, full, settings.threshold)
    if raw == "npy":
        with atomic_path(folder / f"{name}.map.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, full.astype(np.float32))
    elif raw == "png16":
        with atomic_path(folder / f"{name}.raw.png") as tmp:
            Image.fromarray(encode_png16(full)).save(tmp, format="PNG")
    return str(out)
