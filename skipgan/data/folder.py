"""Image folders in the three accepted layouts.

    PATH/train/normal     PATH/test/normal     PATH/test/abnormal           (skipgan)
    PATH/train/0.normal   PATH/test/0.normal   PATH/test/1.abnormal         (official Skip-GANomaly)
    PATH/train/good       PATH/test/good       PATH/test/<defect>/ ...      (MVTec AD)

Ground-truth masks of the abnormal test images, where the data has them (skipgan.data.masks):
    PATH/test/abnormal_mask/<name>.png                                    (skipgan layout)
    PATH/ground_truth/<defect>/<name>_mask.png                            (MVTec AD)

Each folder is read flat (no recursion); files with an image extension (case-insensitive) in sorted name
order; hidden files (starting with '.', e.g. macOS '._x.png') are ignored.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from skipgan.data.images import IMAGE_EXTENSIONS, read_image, to_tensor
from skipgan.errors import BadImageError, InputError

ACCEPTED_LAYOUTS = (
    "train/normal + test/normal + test/abnormal; "
    "train/0.normal + test/0.normal + test/1.abnormal (Skip-GANomaly); "
    "train/good + test/good + test/<defect>/ (MVTec AD)"
)


@dataclass
class FolderLayout:
    name: str
    train: Path
    test_normal: Path
    test_abnormal: list[Path]


def detect_layout(root: Path) -> FolderLayout:
    if not root.exists():
        raise InputError(f"{root}: folder not found; check the path given as folder:PATH")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; folder:PATH needs a folder with train/ and test/")
    train, test = root / "train", root / "test"
    candidates = (
        ("skipgan", "normal", "normal", "abnormal"),
        ("Skip-GANomaly", "0.normal", "0.normal", "1.abnormal"),
    )
    for name, tr, tn, ta in candidates:
        if (train / tr).is_dir():
            for need in (test / tn, test / ta):
                if not need.is_dir():
                    raise InputError(f"{need}: missing folder for the {name} layout ({ACCEPTED_LAYOUTS})")
            return FolderLayout(name, train / tr, test / tn, [test / ta])
    if (train / "good").is_dir():
        if not (test / "good").is_dir():
            raise InputError(f"{test / 'good'}: missing folder for the MVTec AD layout ({ACCEPTED_LAYOUTS})")
        defects = sorted(p for p in test.iterdir() if p.is_dir() and p.name != "good" and not p.name.startswith("."))
        if not defects:
            raise InputError(f"{test}: no defect folders next to test/good (MVTec AD layout needs test/<defect>/)")
        return FolderLayout("MVTec AD", train / "good", test / "good", defects)
    raise InputError(f"{root}: unknown folder layout; expected one of: {ACCEPTED_LAYOUTS}")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name; InputError naming the folder if there are none."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise InputError(f"{folder}: no images ({' '.join(IMAGE_EXTENSIONS)}) found; add images or fix the path")
    return files


def _decode(path: Path, isize: int, channels: int | None):
    """(native channels, tensor, (H, W)), or the BadImageError of this file (returned: the caller skips it with
    --skip-bad, or raises it in file order)."""
    try:
        arr = read_image(path)
        return arr.shape[0], to_tensor(arr, isize, channels, name=str(path)), tuple(arr.shape[1:])
    except BadImageError as exc:
        return exc


def load_images(
    files: list[Path], isize: int, channels: int | None, skip_bad: bool, workers: int | None = None,
    sizes: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, list[int], int]:
    """Decode `files` in order into a float32 [N, C, isize, isize] tensor.

    Returns (tensor, kept indices into `files`, number skipped); `sizes`, when given, receives the native
    (H, W) of every kept image. Without `channels`, every image must have
    the channel count of the first readable one. Decoding runs on a few threads (Pillow, tifffile and torch
    release the GIL); results are consumed in file order, so the error raised is always the first in order.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    out: torch.Tensor | None = None
    kept: list[int] = []
    skipped = 0
    first: tuple[Path, int] | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            results = pool.map(lambda p: _decode(p, isize, channels), files)
            for i, (path, res) in enumerate(zip(files, results)):
                if isinstance(res, BadImageError):
                    if skip_bad:
                        skipped += 1
                        continue
                    raise res
                native, t, hw = res
                if sizes is not None:
                    sizes.append(hw)
                if first is None:
                    first = (path, native)
                    out = torch.empty((len(files),) + tuple(t.shape), dtype=torch.float32)
                elif channels is None and native != first[1]:
                    raise InputError(
                        f"{path}: has {native} channel(s) but {first[0]} has {first[1]}; "
                        f"pass --channels N to convert every image to N channels"
                    )
                out[len(kept)] = t
                kept.append(i)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if out is None:
        return torch.empty(0), kept, skipped
    return out[: len(kept)], kept, skipped
