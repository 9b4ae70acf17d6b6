"""Datasets as train/test splits for one-class anomaly detection.

`load_splits(spec, ...)` with spec one of:

* ``digits``            scikit-learn's bundled 8x8 digits (no download); leave-one-class-out.
* ``folder:PATH``       image folders (see skipgan.data.folder for the three accepted layouts).
* ``cifar10:PATH``      the extracted ``cifar-10-batches-py`` folder; GANomaly / Skip-GANomaly protocol.
* ``mnist:PATH``        folder with the four MNIST idx files (optionally .gz); same protocol as cifar10.

Protocols:

* digits: normals (every class but `abnormal_class`) shuffled with ``np.random.default_rng(seed).permutation``;
  the first ``int(0.8 * n)`` train, the rest test, plus every abnormal image in test (normals first, then
  abnormals in sklearn order). `digits_split_indices` gives the same split as indices into sklearn's arrays.
* cifar10 / mnist (official GANomaly code): train = normal images of the training set; test = normal images
  of the test set, then abnormal images of the training set, then abnormal images of the test set.
  `seed` is not used (the split is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skipgan.data.cifar import load_cifar10
from skipgan.data.folder import detect_layout, list_images, load_images
from skipgan.data.images import batch_to_tensor
from skipgan.data.masks import find_masks, masks_to_isize, read_mask
from skipgan.data.mnist import load_mnist
from skipgan.errors import InputError
from skipgan.isize import check_isize

ACCEPTED_SPECS = "digits, folder:PATH, cifar10:PATH, mnist:PATH"


@dataclass
class Splits:
    """Train/test tensors in [-1, 1], float32 [N, C, isize, isize]; labels 0 = normal, 1 = abnormal."""

    train: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    test_names: list[str]
    channels: int
    isize: int
    skipped: int = 0
    description: str = ""
    train_names: list[str] = field(default_factory=list)
    # Ground truth per test pixel (skipgan.data.masks): uint8 [N, isize, isize], 1 = abnormal, normals all 0;
    # None when the data has no masks (or not one for every abnormal test image: `mask_note` says why).
    test_masks: torch.Tensor | None = None
    mask_note: str = ""

    def __post_init__(self):
        assert self.train.ndim == 4 and self.test.ndim == 4
        assert self.test_labels.dtype == torch.int64 and self.test_labels.shape == (self.test.shape[0],)
        assert len(self.test_names) == self.test.shape[0]
        assert self.test_masks is None or tuple(self.test_masks.shape) == (self.test.shape[0], self.isize, self.isize)


def load_splits(
    spec: str,
    *,
    isize: int = 32,
    abnormal_class: int = 0,
    channels: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> Splits:
    """Load the dataset named by `spec` as normalised train/test splits (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"dataset spec {spec!r} is empty; use one of: {ACCEPTED_SPECS}")
    isize = check_isize(isize)  # the model's rule: splits are made to train and score a model
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise InputError(f"--channels must be a positive integer, got {channels!r}")
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits" and not arg:
        return _load_digits(isize, abnormal_class, channels, seed)
    if kind in ("folder", "cifar10", "mnist"):
        if not sep or not arg:
            raise InputError(f"dataset spec '{spec}' needs a path: {kind}:PATH")
        path = Path(arg).expanduser()
        if kind == "folder":
            return _load_folder(path, isize, channels, skip_bad)
        if kind == "cifar10":
            _check_class(abnormal_class, 10)
            arrays = load_cifar10(path)
            return _class_protocol("cifar10", path, *arrays, abnormal_class, isize, channels)
        _check_class(abnormal_class, 10)
        arrays = load_mnist(path)
        return _class_protocol("mnist", path, *arrays, abnormal_class, isize, channels)
    raise InputError(f"unknown dataset spec '{spec}'; use one of: {ACCEPTED_SPECS}")


def _check_class(abnormal_class, n: int) -> int:
    if isinstance(abnormal_class, bool) or not isinstance(abnormal_class, (int, np.integer)) or not (
        0 <= abnormal_class < n
    ):
        raise InputError(f"--abnormal-class must be an integer in 0..{n - 1}, got {abnormal_class!r}")
    return int(abnormal_class)


# ----------------------------------------------------------------------------------------------- digits


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def digits_split_indices(abnormal_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_idx, test_idx, test_labels) into sklearn's `load_digits()` arrays (data [1797, 64], target).

    Exactly the split `load_splits('digits', abnormal_class=..., seed=...)` uses, so baselines on the raw
    64-dim vectors (PCA, OC-SVM, ...) see the same images.
    """
    abnormal_class = _check_class(abnormal_class, 10)
    _, y = _digits_arrays()
    return _digits_split(y, abnormal_class, seed)


def _digits_split(y: np.ndarray, abnormal_class: int, seed: int):
    normal_idx = np.flatnonzero(y != abnormal_class)
    abnormal_idx = np.flatnonzero(y == abnormal_class)
    shuffled = np.random.default_rng(seed).permutation(normal_idx)
    n_train = int(0.8 * len(shuffled))
    train_idx = shuffled[:n_train]
    test_idx = np.concatenate([shuffled[n_train:], abnormal_idx])
    test_labels = np.concatenate(
        [np.zeros(len(shuffled) - n_train, dtype=np.int64), np.ones(len(abnormal_idx), dtype=np.int64)]
    )
    return train_idx, test_idx, test_labels


def _digits_to_tensor(x: np.ndarray, isize: int, channels: int | None) -> torch.Tensor:
    """sklearn's digits (0..16, [N, 64]) as float images in [0, 1], through the one preprocessing (8x8 upsampled to
    isize: antialiasing is the identity there, so these are the plain bilinear images of before, bit for bit)."""
    return batch_to_tensor((x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), isize, channels, name="digits")


def _load_digits(isize: int, abnormal_class: int, channels: int | None, seed: int) -> Splits:
    abnormal_class = _check_class(abnormal_class, 10)
    x, y = _digits_arrays()
    train_idx, test_idx, test_labels = _digits_split(y, abnormal_class, seed)
    train = _digits_to_tensor(x[train_idx], isize, channels)
    test = _digits_to_tensor(x[test_idx], isize, channels)
    c = train.shape[1]
    n_abn = int(test_labels.sum())
    desc = (
        f"digits (scikit-learn 8x8), abnormal class {abnormal_class}, seed {seed}: train {len(train_idx)} normal, "
        f"test {len(test_idx) - n_abn} normal + {n_abn} abnormal, {c} channel(s), {isize}x{isize}"
    )
    return Splits(
        train=train,
        test=test,
        test_labels=torch.from_numpy(test_labels),
        test_names=[f"digits[{i}]" for i in test_idx],
        channels=c,
        isize=isize,
        skipped=0,
        description=desc,
        train_names=[f"digits[{i}]" for i in train_idx],
    )


# ----------------------------------------------------------------------------------------------- cifar10 / mnist


def class_protocol_indices(train_y: np.ndarray, test_y: np.ndarray, abnormal_class: int):
    """GANomaly protocol as indices: (train_idx into train, [(source, idx, label)] for the test set in order).

    test = normal test images, then abnormal training images, then abnormal test images.
    """
    train_idx = np.flatnonzero(train_y != abnormal_class)
    parts = [
        ("test", np.flatnonzero(test_y != abnormal_class), 0),
        ("train", np.flatnonzero(train_y == abnormal_class), 1),
        ("test", np.flatnonzero(test_y == abnormal_class), 1),
    ]
    return train_idx, parts


def _class_protocol(
    kind, path, train_x, train_y, train_names, test_x, test_y, test_names, abnormal_class, isize, channels
) -> Splits:
    train_idx, parts = class_protocol_indices(train_y, test_y, abnormal_class)
    if len(train_idx) == 0:
        raise InputError(f"{path}: no normal training images for abnormal class {abnormal_class}; check the data")
    c_native = train_x.shape[1]
    c = c_native if channels is None else channels
    train = _gather(train_x, train_idx, isize, channels, kind)
    n_test = sum(len(idx) for _, idx, _ in parts)
    test = torch.empty((n_test, c, isize, isize), dtype=torch.float32)
    labels, names = [], []
    pos = 0
    for source, idx, label in parts:
        x, nm = (train_x, train_names) if source == "train" else (test_x, test_names)
        _gather(x, idx, isize, channels, kind, out=test[pos : pos + len(idx)])
        pos += len(idx)
        labels.append(np.full(len(idx), label, dtype=np.int64))
        names.extend(nm[i] for i in idx)
    test_labels = torch.from_numpy(np.concatenate(labels))
    n_abn = int(test_labels.sum())
    desc = (
        f"{kind} {path}, abnormal class {abnormal_class}: train {len(train_idx)} normal, test {n_test - n_abn} "
        f"normal + {n_abn} abnormal (abnormal from train and test), {c} channel(s), {isize}x{isize}"
    )
    return Splits(
        train=train,
        test=test,
        test_labels=test_labels,
        test_names=names,
        channels=c,
        isize=isize,
        skipped=0,
        description=desc,
        train_names=[train_names[i] for i in train_idx],
    )


def _gather(x: np.ndarray, idx: np.ndarray, isize: int, channels, kind: str, out=None, chunk: int = 4096):
    """uint8 x[idx] -> float32 in chunks (never a full float copy of the uint8 source)."""
    c = x.shape[1] if channels is None else channels
    if out is None:
        out = torch.empty((len(idx), c, isize, isize), dtype=torch.float32)
    for s in range(0, len(idx), chunk):
        part = x[idx[s : s + chunk]]
        batch_to_tensor(part, isize, channels, name=kind, out=out[s : s + len(part)])
    return out


# ----------------------------------------------------------------------------------------------- folder


def _load_folder(root: Path, isize: int, channels: int | None, skip_bad: bool) -> Splits:
    layout = detect_layout(root)
    groups = [(layout.train, 0, "train")] + [(layout.test_normal, 0, "test")]
    groups += [(d, 1, "test") for d in layout.test_abnormal]
    files, labels, roles = [], [], []
    for folder, label, role in groups:
        fs = list_images(folder)
        files += fs
        labels += [label] * len(fs)
        roles += [role] * len(fs)
    sizes: list[tuple[int, int]] = []
    data, kept, skipped = load_images(files, isize, channels, skip_bad, sizes=sizes)
    n_train = sum(1 for i in kept if roles[i] == "train")  # train files come first, so train is a prefix
    kept_parents = {files[i].parent for i in kept}
    for folder, _, _ in groups:  # a folder whose every image was skipped
        if folder not in kept_parents:
            raise InputError(f"{folder}: every image was unreadable and skipped; add readable images")
    train, test = data[:n_train], data[n_train:]
    test_sel = range(n_train, len(kept))
    train_sel = range(n_train)
    test_labels = torch.tensor([labels[kept[j]] for j in test_sel], dtype=torch.int64)
    test_names = [str(files[kept[j]]) for j in test_sel]
    train_names = [str(files[kept[j]]) for j in train_sel]
    c = int(data.shape[1])
    n_abn = int(test_labels.sum())
    listed_abnormal = [f for f, y in zip(files, labels) if y == 1]  # skipped ones too: their masks are no strays
    test_masks, mask_note = _folder_masks(root, layout.name, listed_abnormal, [files[kept[j]] for j in test_sel],
                                          [sizes[j] for j in test_sel], test_labels, isize)
    extra = f" in {len(layout.test_abnormal)} defect folders" if layout.name == "MVTec AD" else ""
    desc = (
        f"folder {root} ({layout.name} layout): train {len(train_sel)} normal, test {len(test_sel) - n_abn} normal "
        f"+ {n_abn} abnormal{extra}, {c} channel(s), {isize}x{isize}, {skipped} skipped"
        + (f", masks for all {n_abn} abnormal images" if test_masks is not None else "")
        + (f"; {mask_note}" if mask_note else "")
    )
    return Splits(
        train=train,
        test=test,
        test_labels=test_labels,
        test_names=test_names,
        channels=c,
        isize=isize,
        skipped=skipped,
        description=desc,
        train_names=train_names,
        test_masks=test_masks,
        mask_note=mask_note,
    )


def _folder_masks(root: Path, layout_name: str, listed_abnormal: list[Path], test_files: list[Path],
                  test_sizes: list[tuple[int, int]], test_labels: torch.Tensor,
                  isize: int) -> tuple[torch.Tensor | None, str]:
    """(masks [N, isize, isize] or None, note) for the kept test images: see skipgan.data.masks."""
    abnormal = [f for f, y in zip(test_files, test_labels.tolist()) if y == 1]
    found = find_masks(root, layout_name, listed_abnormal)
    if not found:
        return None, ""
    # every mask is read and checked, even when pixel metrics will be skipped: a wrong one is an error
    masks = [read_mask(found[f], hw, f) if f in found else None for f, hw in zip(test_files, test_sizes)]
    if any(f not in found for f in abnormal):
        missing = next(f for f in abnormal if f not in found)
        return None, (f"pixel metrics skipped: {sum(f not in found for f in abnormal)} of {len(abnormal)} abnormal test images "
                      f"have no mask (e.g. {missing})")
    return masks_to_isize(masks, isize), ""
