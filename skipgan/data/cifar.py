"""CIFAR-10 python batches (`cifar-10-batches-py`), read with a restricted unpickler.

The batches are Python pickles. Unpickling runs arbitrary code if the file was crafted to, so `find_class`
refuses every global except the three numpy names needed to rebuild an ndarray. The batches only contain
dicts, lists, bytes, ints, strings and uint8 numpy arrays.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from skipgan.errors import InputError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"global '{module}.{name}' is forbidden")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's ndarray reconstruction globals and refuses everything else."""

    def find_class(self, module, name):  # noqa: D401
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise ForbiddenGlobal(module, name)
        return factory()

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are forbidden")


def restricted_load(path: str | os.PathLike):
    """Load a pickle file with `RestrictedUnpickler` (encoding='bytes'); errors become InputError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc.strerror or exc}); check the path") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as exc:
        raise InputError(
            f"{path}: refusing to unpickle '{exc.module}.{exc.name}' (a CIFAR-10 batch holds only arrays, lists "
            "and strings); this is not a genuine CIFAR-10 file, re-download it"
        ) from None
    except Exception as exc:  # truncated / corrupt pickles raise a zoo of types
        detail = " ".join(str(exc).split())
        raise InputError(
            f"{path}: cannot read CIFAR-10 batch (truncated or corrupt: {type(exc).__name__}: {detail}); re-download it"
        ) from None


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 [N, 3, 32, 32], labels int64 [N])."""
    path = Path(path)
    obj = restricted_load(path)
    bad = f"{path}: not a CIFAR-10 batch (expected a dict with b'data' uint8 [N, 3072] and b'labels'); re-download it"
    if not isinstance(obj, dict):
        raise InputError(bad)
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(bad)
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise InputError(bad) from None
    if labels.shape != (data.shape[0],):
        raise InputError(f"{path}: {data.shape[0]} images but {labels.size} labels; re-download it")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"{path}: labels outside 0..9; not a CIFAR-10 batch")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(folder: str | os.PathLike):
    """`cifar-10-batches-py` folder -> (train_x, train_y, train_names, test_x, test_y, test_names).

    Images are uint8 [N, 3, 32, 32]; names are e.g. 'cifar10:data_batch_2[17]'.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: CIFAR-10 folder not found; pass cifar10:PATH to the extracted cifar-10-batches-py")
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        if not (folder / name).is_file():
            raise InputError(
                f"{folder / name}: missing CIFAR-10 batch; PATH must be the extracted cifar-10-batches-py folder"
            )
    xs, ys, names = [], [], []
    for name in TRAIN_BATCHES:
        x, y = read_batch(folder / name)
        xs.append(x)
        ys.append(y)
        names.extend(f"cifar10:{name}[{i}]" for i in range(len(y)))
    train_x, train_y = np.concatenate(xs), np.concatenate(ys)
    test_x, test_y = read_batch(folder / TEST_BATCH)
    test_names = [f"cifar10:{TEST_BATCH}[{i}]" for i in range(len(test_y))]
    return train_x, train_y, names, test_x, test_y, test_names
