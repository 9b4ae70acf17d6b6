"""MNIST idx files, parsed with numpy (no torchvision).

idx format: 2 zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one big-endian
uint32 per dimension, then the data. Images are idx3 (magic 2051), labels idx1 (magic 2049).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from skipgan.errors import InputError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def find_idx_file(folder: Path, base: str) -> Path:
    """`base`, `base.gz`, or the variant with '.idx' instead of '-idx' (some mirrors), in that order."""
    variants = [base, base.replace("-idx", ".idx")]
    for v in variants:
        for cand in (folder / v, folder / (v + ".gz")):
            if cand.is_file():
                return cand
    raise InputError(f"{folder / base}: missing MNIST file (also looked for .gz); PATH must hold the four idx files")


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) of unsigned bytes; check the magic number and the size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read idx file (truncated or corrupt gzip: {exc}); re-download it") from None
    if len(raw) < 4:
        raise InputError(f"{path}: not an idx file (too short); re-download it")
    found = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or (magic is not None and found != magic):
        want = f" {magic} (0x{magic:08x})" if magic is not None else " 0x0000080N"
        raise InputError(f"{path}: bad idx magic number 0x{found:08x}, expected{want}; is this the right MNIST file?")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(f"{path}: idx header is truncated; re-download it")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise InputError(
            f"{path}: idx file has {len(raw)} bytes but its header {dims} says {expected}; it is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(folder: str | os.PathLike):
    """Folder of idx files -> (train_x, train_y, train_names, test_x, test_y, test_names); x uint8 [N, 1, H, W]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: MNIST folder not found; pass mnist:PATH to the folder holding the idx files")
    out = []
    for split, tag in (("train", "train"), ("test", "t10k")):
        ipath = find_idx_file(folder, FILES[f"{split}_images"])
        lpath = find_idx_file(folder, FILES[f"{split}_labels"])
        x = read_idx(ipath, IMAGES_MAGIC)
        y = read_idx(lpath, LABELS_MAGIC).astype(np.int64)
        if x.ndim != 3:
            raise InputError(f"{ipath}: expected 3 dimensions [N, H, W], found {x.ndim}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise InputError(f"{lpath}: {y.shape[0]} labels for {x.shape[0]} images in {ipath.name}; re-download it")
        out += [x[:, None], y, [f"mnist:{tag}[{i}]" for i in range(len(y))]]
    return tuple(out)
