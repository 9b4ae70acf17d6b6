"""The local-defect data set: small foreign regions pasted on real textures (scikit-image's bundled photographs),
with exact masks. benchmarks/accuracy/local_defects.py writes it (`make`) and scores every method on it.

Three 512x512 grayscale textures of scikit-image's data module — brick, grass, gravel (`pip install scikit-image`,
the `bench` extra; no downloads). A patch is a CROP x CROP crop, area-averaged 2x down to PATCH x PATCH and stored as
a 16-bit grayscale PNG (the averaging makes genuine 16-bit values). Training crops come from the left part of the
photograph (TRAIN_COLS), test crops from the right part (TEST_COLS): disjoint areas of the same texture. Abnormal test
patches get ONE pasted foreign region covering AREA (2-15 %) of the patch, with its exact mask (the pixels that were
replaced): another texture (a photograph of the moon or the cameraman, crop of the same scale), a smooth blob, a
bright or dark object, a scratch line. MVTec AD layout: <texture>/train/good, test/good, test/<defect>/,
ground_truth/<defect>/<name>_mask.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")
FOREIGN = ("moon", "camera")
DEFECTS = ("texture", "blob", "object", "scratch")
CROP, PATCH = 128, 64
TRAIN_COLS, TEST_COLS = (0, 300), (312, 512)
# The development split (`make --dev`): both halves inside the training columns, so that settings are chosen
# without ever looking at the reported test area.
DEV_TRAIN_COLS, DEV_TEST_COLS = (0, 150), (160, 300)
N_TRAIN, N_TEST_NORMAL, N_PER_DEFECT = 300, 60, 15
AREA = (0.02, 0.15)


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs (TEXTURES, FOREIGN, the families' sources), float 0..255."""
    try:
        import skimage.data  # the `bench` and `test` extras: only the benchmark data sets need it
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the defect benchmarks are made from scikit-image's photographs ({name!r}): "
                                  "pip install 'skipgan[bench]' (or scikit-image)") from e

    return getattr(skimage.data, name)().astype(np.float64)


def crop(img: np.ndarray, cols: tuple[int, int], rng, size: int = CROP) -> np.ndarray:
    """A random `size` x `size` crop with all its columns in [cols), area-averaged to PATCH x PATCH, float 0..255.

    `size` is a multiple of PATCH (PATCH itself: native scale); `img` is [H, W] or [H, W, C] (then [PATCH, PATCH, C]).
    """
    h = img.shape[0]
    r = rng.integers(0, h - size + 1)
    c = rng.integers(cols[0], cols[1] - size + 1)
    f = size // PATCH
    return img[r : r + size, c : c + size].reshape(PATCH, f, PATCH, f, *img.shape[2:]).mean(axis=(1, 3))


def ellipse_mask(rng, area_px: float, size: int = PATCH) -> np.ndarray:
    """A randomly placed and turned ellipse of about `area_px` pixels (a size x size boolean mask). Also the
    trainer's synthetic defects (skipgan/train/aggregation_choice.py)."""
    yy, xx = np.mgrid[0:size, 0:size]
    ratio = rng.uniform(0.4, 1.0)
    a = np.sqrt(area_px / (np.pi * ratio))
    b = a * ratio
    cy, cx = rng.uniform(a, size - a, 2) if a < size / 2 else (size / 2, size / 2)
    t = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def line_mask(rng, area_px: float, width: tuple[float, float] = (2.0, 3.5), size: int = PATCH) -> np.ndarray:
    """A randomly turned line, its width drawn from `width` pixels, of about `area_px` pixels (at most 0.9 size
    long), centred in the middle 40 % (a size x size boolean mask)."""
    yy, xx = np.mgrid[0:size, 0:size]
    width = rng.uniform(*width)
    length = min(area_px / width, size * 0.9)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    t = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def defect(kind: str, patch: np.ndarray, foreign: list[np.ndarray], rng) -> tuple[np.ndarray, np.ndarray]:
    """(patch with one pasted region, its exact mask); the region covers AREA of the patch."""
    n = PATCH * PATCH
    while True:
        frac = rng.uniform(*AREA)
        mask = line_mask(rng, frac * n * 0.4) if kind == "scratch" else ellipse_mask(rng, frac * n)
        if AREA[0] <= mask.mean() <= AREA[1]:
            break
    out = patch.copy()
    if kind == "texture":
        src = foreign[rng.integers(len(foreign))]
        out[mask] = crop(src, (0, src.shape[1]), rng)[mask]
    elif kind == "blob":  # smooth: the patch's mean plus a gentle gradient
        yy, xx = np.mgrid[0:PATCH, 0:PATCH]
        g = rng.normal(0, 0.6, 2)
        out[mask] = np.clip(patch.mean() + g[0] * (yy[mask] - PATCH / 2) + g[1] * (xx[mask] - PATCH / 2), 0, 255)
    elif kind == "object":
        level = rng.uniform(225, 250) if rng.random() < 0.5 else rng.uniform(5, 30)
        out[mask] = np.clip(level + rng.normal(0, 4, int(mask.sum())), 0, 255)
    else:  # scratch, bright or dark
        level = rng.uniform(220, 250) if rng.random() < 0.5 else rng.uniform(5, 35)
        out[mask] = level
    return out, mask


def _write16(path: Path, v: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(v, 0, 255) / 255.0 * 65535.0).astype(np.uint16)).save(path)


def _write_mask(path: Path, m: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m.astype(np.uint8) * 255).save(path)


def write_dataset(out: Path, seed: int = 0, dev: bool = False) -> None:
    """The data set in the MVTec AD layout under `out` (one folder per texture); `dev`: the development split."""
    train_cols, test_cols = (DEV_TRAIN_COLS, DEV_TEST_COLS) if dev else (TRAIN_COLS, TEST_COLS)
    foreign = [photo(n) for n in FOREIGN]
    for ti, tex in enumerate(TEXTURES):
        rng = np.random.default_rng(seed * 100 + ti)
        img, root = photo(tex), out / tex
        for i in range(N_TRAIN):
            _write16(root / "train/good" / f"{i:03d}.png", crop(img, train_cols, rng))
        for i in range(N_TEST_NORMAL):
            _write16(root / "test/good" / f"{i:03d}.png", crop(img, test_cols, rng))
        for kind in DEFECTS:
            for i in range(N_PER_DEFECT):
                patch, mask = defect(kind, crop(img, test_cols, rng), foreign, rng)
                _write16(root / "test" / kind / f"{i:03d}.png", patch)
                _write_mask(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
