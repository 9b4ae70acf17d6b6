"""Helpers that write tiny image files and fake datasets for the data-layer tests (no downloads)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

LAYOUT_DIRS = {
    "skipgan": ("train/normal", "test/normal", ["test/abnormal"]),
    "official": ("train/0.normal", "test/0.normal", ["test/1.abnormal"]),
    "mvtec": ("train/good", "test/good", ["test/crack", "test/scratch"]),
}


def gray8(h=12, w=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def rgb8(h=12, w=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_masked_set(root: Path, normal, defect, n_train: int = 24, n_test: int = 4) -> Path:
    """skipgan layout with ground-truth masks: n_train normal training images, n_test normal and n_test abnormal
    test images; normal() -> image, defect(i) -> (image, mask with 255 = abnormal), called in that order."""
    for i in range(n_train):
        write_png(root / "train/normal" / f"n{i:02d}.png", normal())
    for i in range(n_test):
        write_png(root / "test/normal" / f"t{i}.png", normal())
    for i in range(n_test):
        img, mask = defect(i)
        write_png(root / "test/abnormal" / f"a{i}.png", img)
        write_png(root / "test/abnormal_mask" / f"a{i}.png", mask)
    return root


def write_png(path, arr: np.ndarray) -> Path:
    """(H, W) uint8/uint16 or (H, W, 3|4) uint8 -> PNG (16-bit grey for uint16)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_pil(path, arr: np.ndarray, **save_kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save_kw)
    return path


def write_tiff(path, arr: np.ndarray, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr, **kw)
    return path


def truncate(path, keep: float = 0.5) -> Path:
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def make_folder_dataset(
    root, layout: str = "skipgan", n_train: int = 3, n_test: int = 2, n_abn: int = 2, size=(12, 10), rgb=False,
    ext: str = ".png",
) -> Path:
    """Write a tiny image-folder dataset in one of the layouts ('skipgan', 'official', 'mvtec')."""
    root = Path(root)
    train, test_normal, abnormal = LAYOUT_DIRS[layout]
    k = 0

    def img():
        nonlocal k
        k += 1
        return rgb8(*size, seed=k) if rgb else gray8(*size, seed=k)

    for i in range(n_train):
        write_pil(root / train / f"img{i:03d}{ext}", img())
    for i in range(n_test):
        write_pil(root / test_normal / f"img{i:03d}{ext}", img())
    for d in abnormal:
        for i in range(n_abn):
            write_pil(root / d / f"img{i:03d}{ext}", img())
    if layout == "mvtec":  # a mask for the first crack image: read as ground truth, never as a test image
        write_pil(root / "ground_truth" / "crack" / "img000_mask.png", np.zeros(size, np.uint8))
    return root


def py2_pickle(obj) -> bytes:
    """Pickle `obj` the way Python 2's cPickle (protocol 2) wrote the real CIFAR-10 batches.

    Supports dict, list, tuple, bytes (as Python 2 str), int, bool, None and uint8 numpy arrays (through
    ``numpy.core.multiarray._reconstruct``, the name found in the real files). Python 3's own protocol-2
    pickles differ: they store bytes via ``_codecs.encode``.
    """
    out = bytearray(b"\x80\x02")

    def string(b: bytes):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def integer(n: int):
        out.extend(b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n))

    def w(o):
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                w(k)
                w(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                w(v)
            out.extend(b"e")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for v in o:
                w(v)
            out.extend(b"t")
        elif isinstance(o, bytes):
            string(o)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            integer(o)
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.extend(b"\x85")  # TUPLE1
            string(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, MARK (state)
            integer(1)
            w(tuple(int(n) for n in o.shape))
            out.extend(b"cnumpy\ndtype\n")
            string(b"u1")
            out.extend(b"\x89\x88\x87R(")  # False, True, TUPLE3, REDUCE, MARK (dtype state)
            integer(3)
            string(b"|")
            out.extend(b"NNN")
            integer(-1)
            integer(-1)
            integer(0)
            out.extend(b"tb\x89")  # TUPLE, BUILD (dtype), is_fortran=False
            string(np.ascontiguousarray(o).tobytes())
            out.extend(b"tb")  # TUPLE, BUILD (array)
        else:
            raise TypeError(type(o))

    w(obj)
    out.extend(b".")
    return bytes(out)


def write_cifar(folder, n_per_batch: int = 20, seed: int = 0, protocol: int | None = None) -> Path:
    """Fake cifar-10-batches-py: data_batch_1..5 and test_batch, pickled dicts like the real files.

    protocol None writes Python-2-style pickles like the real download (`py2_pickle`); an int uses Python 3's
    pickle with that protocol. Image i of every batch has all pixels equal to label * 20 + (i % 3), so tests
    can check the order. Labels cycle through 0..9 (offset by the batch number).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = [(i + b) % 10 for i in range(n_per_batch)]
        data = np.empty((n_per_batch, 3072), np.uint8)
        for i, lab in enumerate(labels):
            data[i] = lab * 20 + (i % 3)
        obj = {
            b"batch_label": f"fake batch {b}".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(n_per_batch)],
        }
        raw = py2_pickle(obj) if protocol is None else pickle.dumps(obj, protocol=protocol)
        (folder / name).write_bytes(raw)
    return folder


def idx_bytes(arr: np.ndarray, magic_type: int = 0x08) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, magic_type, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return header + arr.tobytes()


def write_mnist(folder, n_train: int = 30, n_test: int = 20, gz: bool = False, hw=(28, 28)) -> Path:
    """Fake MNIST idx files; image i has all pixels = label * 25, labels cycle 0..9."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = np.repeat((labels * 25)[:, None, None], hw[0] * hw[1], axis=1).reshape(n, *hw).astype(np.uint8)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            path = folder / f"{prefix}-{kind}"
            if gz:
                with gzip.open(str(path) + ".gz", "wb") as f:
                    f.write(data)
            else:
                path.write_bytes(data)
    return folder
