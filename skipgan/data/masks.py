"""Ground-truth masks of abnormal test images: where they live, how they are read and checked.

    skipgan layout   PATH/test/abnormal_mask/<name>.png          mask of PATH/test/abnormal/<name>.<ext>
    MVTec AD         PATH/ground_truth/<defect>/<name>_mask.png  mask of PATH/test/<defect>/<name>.<ext>

A mask is an image of the same height and width as its image (any bit depth, any channel count); a pixel is
abnormal where any channel is non-zero. Masks are optional: a data set without any gives image metrics only.
A mask whose name matches no abnormal test image, or whose size differs from its image's, is an InputError
naming it. Normal test images have no masks (all pixels normal). Pixel metrics need a mask for EVERY abnormal
test image; with only some present they are skipped and the reason is reported.

Masks are brought to the model's resolution like the images (antialiased bilinear resize, skipgan.preprocess),
then a pixel is abnormal where at least half of it was: the pixel metrics are computed at isize × isize.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skipgan.data.images import IMAGE_EXTENSIONS, read_image
from skipgan.errors import InputError
from skipgan.preprocess import resize_normalise

SKIPGAN_MASK_DIR = "abnormal_mask"
MVTEC_MASK_DIR = "ground_truth"
MVTEC_SUFFIX = "_mask"


def _mask_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def find_masks(root: Path, layout_name: str, abnormal_files: list[Path]) -> dict[Path, Path]:
    """{abnormal image file: its mask file} for the masks present under `root`.

    Raises InputError for a mask that names no abnormal test image (or names two, e.g. a.png and a.tif)."""
    by_key: dict[tuple[str, str], list[Path]] = {}
    for f in abnormal_files:
        by_key.setdefault((f.parent.name, f.stem), []).append(f)
    masks: list[tuple[Path, tuple[str, str]]] = []
    if layout_name == "MVTec AD":
        gt = root / MVTEC_MASK_DIR
        if gt.is_dir():
            for d in sorted(p for p in gt.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for m in _mask_files(d):
                    stem = m.stem
                    if not stem.endswith(MVTEC_SUFFIX):
                        raise InputError(f"{m}: an MVTec AD mask must be named <image name>{MVTEC_SUFFIX}.png; "
                                         "rename it or move it out of ground_truth/")
                    masks.append((m, (d.name, stem[: -len(MVTEC_SUFFIX)])))
    elif layout_name == "skipgan":
        folder = root / "test" / SKIPGAN_MASK_DIR
        masks = [(m, ("abnormal", m.stem)) for m in _mask_files(folder)]
    found: dict[Path, Path] = {}
    for m, key in masks:
        images = by_key.get(key, [])
        if not images:
            where = f"test/{key[0]}/{key[1]}.*"
            raise InputError(f"{m}: mask matches no abnormal test image (expected {where}); remove it or fix its name")
        if len(images) > 1:
            raise InputError(f"{m}: mask matches {len(images)} images ({', '.join(p.name for p in images)}); "
                             "keep one image per name")
        found[images[0]] = m
    return found


def read_mask(path: Path, size: tuple[int, int], image: Path) -> np.ndarray:
    """bool [H, W]: where the mask is non-zero; InputError if it is not `size` (the image's (H, W))."""
    arr = read_image(path)
    if tuple(arr.shape[1:]) != tuple(size):
        raise InputError(f"{path}: mask is {arr.shape[2]}x{arr.shape[1]} but its image {image} is "
                         f"{size[1]}x{size[0]} (width x height); masks must have their image's size")
    return (arr != 0).any(axis=0)


def masks_to_isize(masks: list[np.ndarray | None], isize: int) -> torch.Tensor:
    """bool [N, isize, isize] (uint8 0/1): None -> all normal; else resized like the images, abnormal where ≥ 1/2."""
    out = torch.zeros(len(masks), isize, isize, dtype=torch.uint8)
    for i, m in enumerate(masks):
        if m is None:
            continue
        unit = torch.from_numpy(m.astype(np.float32))[None, None]
        resized = (resize_normalise(unit, isize)[0, 0] + 1.0) / 2.0
        out[i] = (resized >= 0.5).to(torch.uint8)
    return out
