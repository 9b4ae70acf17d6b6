"""Decode image files into (C, H, W) arrays and normalise them to float32 tensors in [-1, 1].

Decoding keeps the file's native sample type (uint8, uint16, float32) so that 16-bit data keeps its precision
until `to_tensor` converts it to float32; only then is it resized (antialiased bilinear, in float).

Rules (decisions written down here so the behaviour is predictable):

* PNG / JPEG / BMP / PGM / PPM go through Pillow, TIFF through tifffile; the choice is made by the file extension.
* Alpha is dropped: RGBA -> RGB, LA -> L, P (palette) -> RGB. Anomaly models look at intensities; a
  transparency channel would only make folders of mixed PNGs disagree on the channel count.
* 16-bit grey PNGs (Pillow modes 'I;16*' or 'I') come back as uint16 with all 16 bits. Pillow cannot decode
  16-bit *colour* PNGs at full depth (it gives 8-bit RGB); a warning says so. Use 16-bit TIFF for that.
* TIFF channel axis: when the file itself stores several samples per pixel (one page; tifffile axis 'S'),
  that axis is the channel axis (interleaved -> HWC, planar -> CHW). Otherwise (a stack of pages, or no
  such metadata) the shape decides: if the first axis is <= 8 and the last axis is > 8, the first axis is
  the channel axis (planar CHW); else if the last axis is <= 8 it is the channel axis (interleaved HWC);
  else (e.g. a z-stack of 30 pages) InputError. Singleton axes are dropped first.
* Sample types: uint8 and uint16 are kept; float16/32/64 become float32 and must already lie in [0, 1];
  bool becomes uint8 0/255; other integer types are refused with a message.
* Non-square images are resized to isize x isize without cropping (aspect ratio is not kept): a defect at
  the border must not be cropped away.
* isize is a size the model can take (`skipgan.isize.check_isize`: a power of two from 32 to 512): this
  preprocessing exists to feed the model, so resizing to any other size is refused as the same mistake.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from skipgan import preprocess
from skipgan.errors import InputError
from skipgan.isize import check_isize
from skipgan.preprocess import LUMA_601  # noqa: F401  (re-exported: part of this module's public face)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
TIFF_EXTENSIONS = (".tif", ".tiff")

# Images resized per call of F.interpolate in `batch_to_tensor`; bounds the float32 working memory.
RESIZE_CHUNK = 512


class CorruptImageError(InputError):
    """The file exists but cannot be decoded (truncated, corrupt, not an image). `--skip-bad` skips these."""

    def __init__(self, path: str | os.PathLike, detail: str | None = None):
        self.path = str(path)
        msg = f"{path}: cannot decode image (truncated or corrupt); remove it or pass --skip-bad"
        if detail:
            msg += f" [{detail}]"
        super().__init__(msg)


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into a (C, H, W) array of its native dtype (uint8, uint16 or float32).

    Raises `InputError` if the file is missing or of an unsupported kind, and `CorruptImageError` (a subclass
    of `InputError`) if it cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file; check the path")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise InputError(f"{path}: unsupported image type '{suffix}'; use one of {' '.join(IMAGE_EXTENSIONS)}")
    if suffix in TIFF_EXTENSIONS:
        arr = _read_tiff(path)
    else:
        arr = _read_pillow(path)
    return _native_dtype(arr, path)


# ----------------------------------------------------------------------------------------------- Pillow


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None if the file does not look like a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone else switched it on: we still want truncation caught
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated images would pass silently")
    try:
        with Image.open(path) as im:
            im.load()  # force the full decode so that truncation is caught here
            arr = _pillow_to_array(im)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image is too large to decode safely ({_one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, IndexError, TypeError) as exc:
        # OSError covers PIL.UnidentifiedImageError and "image file is truncated".
        raise CorruptImageError(path, _one_line(exc)) from None
    if path.suffix.lower() == ".png":
        header = _png_header(path)
        if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
            warnings.warn(
                f"{path}: 16-bit colour PNG is decoded at 8 bits by Pillow; save it as a 16-bit TIFF to keep "
                "full precision",
                stacklevel=3,
            )
    return arr


def _pillow_to_array(im) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):  # I;16, I;16L, I;16B, I;16N: 16-bit grey, any byte order
        arr = np.asarray(im)
        arr = arr.astype(np.uint16)  # native byte order, values unchanged
        return arr[None]
    if mode == "I":  # 32-bit signed ints; 16-bit PNGs open like this in some Pillow versions
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(
                f"{im.filename}: 32-bit integer image with values outside 0..65535; save it as 8/16-bit or float TIFF"
            )
        return arr.astype(np.uint16)[None]
    if mode == "F":
        return np.asarray(im, dtype=np.float32)[None]
    if mode == "1":
        return (np.asarray(im).astype(np.uint8) * 255)[None]
    if mode == "L":
        return np.asarray(im)[None]
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))[None]
    if mode == "RGB":
        return np.asarray(im).transpose(2, 0, 1)
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im)[..., :3].transpose(2, 0, 1)
    if mode in ("P", "PA"):
        rgb = im.convert("RGBA") if "transparency" in im.info or mode == "PA" else im.convert("RGB")
        return np.asarray(rgb)[..., :3].transpose(2, 0, 1)
    # CMYK, YCbCr, LAB, HSV, ...: let Pillow convert to RGB
    return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


# ----------------------------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise CorruptImageError(path, "no image data")
            series = tf.series[0]
            axes = series.axes
            arr = series.asarray()
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many types (TiffFileError, ValueError, struct.error, ...)
        raise CorruptImageError(path, _one_line(exc)) from None
    arr = np.asarray(arr)
    return _tiff_to_chw(arr, axes, path)


def _tiff_to_chw(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    # drop singleton axes (e.g. a 1-page stack, or 1 sample per pixel)
    if len(axes) != arr.ndim:
        axes = "?" * arr.ndim
    keep = [i for i, n in enumerate(arr.shape) if n != 1]
    if len(keep) < 2:
        raise InputError(f"{path}: TIFF image of shape {arr.shape} is not 2-D; expected (H, W), (H, W, C) or (C, H, W)")
    if len(keep) < arr.ndim:
        axes = "".join(axes[i] for i in keep)
        arr = arr.reshape([arr.shape[i] for i in keep])
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise InputError(
            f"{path}: TIFF image of shape {arr.shape} has too many dimensions; expected (H, W), (H, W, C) or (C, H, W)"
        )
    if axes.count("S") == 1:  # the file says where the samples are
        c_axis = axes.index("S")
    elif arr.shape[0] <= 8 and arr.shape[-1] > 8:
        c_axis = 0
    elif arr.shape[-1] <= 8:
        c_axis = 2
    else:
        raise InputError(
            f"{path}: cannot tell the channel axis of TIFF shape {arr.shape} (a stack of pages?); store it as "
            "(H, W, C) or (C, H, W) with C <= 8, or as one page with several samples per pixel"
        )
    if c_axis == 1:
        raise InputError(f"{path}: TIFF layout '{axes}' with samples in the middle axis is not supported")
    return arr if c_axis == 0 else np.moveaxis(arr, 2, 0)


# ----------------------------------------------------------------------------------------------- dtypes


def _native_dtype(arr: np.ndarray, path: Path) -> np.ndarray:
    dt = arr.dtype
    if dt == np.uint8 or dt == np.uint16:
        out = arr.astype(dt.newbyteorder("="), copy=False)
    elif dt == np.bool_:
        out = arr.astype(np.uint8) * np.uint8(255)
    elif dt.kind == "f":
        out = arr.astype(np.float32, copy=False)
    elif dt.kind in "iu" and dt.itemsize == 1:  # int8
        raise InputError(f"{path}: signed 8-bit samples are not supported; save as unsigned 8/16-bit or float")
    else:
        raise InputError(
            f"{path}: unsupported sample type {dt} ({dt.itemsize * 8}-bit); save as unsigned 8/16-bit or float in [0, 1]"
        )
    return np.ascontiguousarray(out)


def dtype_scale(dtype: np.dtype) -> float:
    """Full range of a numpy sample type (skipgan.preprocess.sample_range: 255 for uint8, 65535 for uint16, 1 for
    float); InputError for any other type."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16) and dtype.kind != "f":
        raise InputError(f"unsupported sample type {dtype}; expected uint8, uint16 or float")
    return preprocess.sample_range(torch.from_numpy(np.empty(0, dtype)).dtype)


# ----------------------------------------------------------------------------------------------- tensors


def model_input(samples: torch.Tensor, isize: int, channels: int | None, name: str | None = None) -> torch.Tensor:
    """skipgan.preprocess.to_model_input (the one preprocessing) with the loaders' channel rule: `channels` None
    keeps the image's own; a conversion preprocess does not make is an InputError naming the image and the flag."""
    if channels is not None and channels < 1:
        raise InputError(f"--channels must be >= 1, got {channels}")
    try:
        return preprocess.to_model_input(samples, isize, samples.shape[1] if channels is None else channels)
    except ValueError:
        who = f"{name}: " if name else ""
        raise InputError(
            f"{who}image has {samples.shape[1]} channels but --channels {channels} was given; only 1 -> N (repeat) "
            "and 3 -> 1 (luminance) are converted: pick a matching --channels"
        ) from None


def batch_to_tensor(
    arr: np.ndarray | torch.Tensor,
    isize: int,
    channels: int | None = None,
    *,
    name: str | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N, C, H, W] uint8/uint16/float array -> float32 [N, C', isize, isize] in [-1, 1].

    skipgan.preprocess.to_model_input (the one definition every exported graph also runs: full precision of
    16-bit data, scaled by the dtype's full range, antialiased bilinear resize, channels adapted), through
    `model_input`. Here float input is range-checked first (an InputError naming the image, not a silent clamp).
    Works in chunks of RESIZE_CHUNK images; writes into `out` (a float32 tensor of the final shape) when given.
    """
    if isinstance(arr, torch.Tensor):
        arr = arr.numpy()
    if arr.ndim != 4:
        raise ValueError(f"batch_to_tensor expects [N, C, H, W], got shape {arr.shape}")
    isize = check_isize(isize)
    dtype_scale(arr.dtype)  # refuses sample types other than uint8 / uint16 / float
    n = arr.shape[0]
    chunks = []
    for s in range(0, n, RESIZE_CHUNK):
        part = torch.from_numpy(np.require(arr[s : s + RESIZE_CHUNK], requirements=["C", "W"]))  # never written
        if part.is_floating_point():
            part = _check_float_range(part.float(), name)
        part = model_input(part, isize, channels, name)
        if out is not None:
            out[s : s + part.shape[0]].copy_(part)
        else:
            chunks.append(part)
    if out is not None:
        return out
    if not chunks:
        c = arr.shape[1] if channels is None else channels
        return torch.empty(0, c, isize, isize)
    return chunks[0].contiguous() if len(chunks) == 1 else torch.cat(chunks)


def to_tensor(
    arr: np.ndarray, isize: int, channels: int | None = None, *, name: str | None = None
) -> torch.Tensor:
    """(C, H, W) array from `read_image` -> float32 tensor (C', isize, isize) in [-1, 1].

    uint8 is scaled by 255, uint16 by 65535, float is taken as already in [0, 1]. `channels` converts 1 -> N
    by repetition and 3 -> 1 by ITU-R 601 luminance; any other mismatch raises InputError naming `name`.
    """
    if arr.ndim != 3:
        raise ValueError(f"to_tensor expects (C, H, W), got shape {arr.shape}")
    return batch_to_tensor(arr[None], isize, channels, name=name)[0]


def _check_float_range(x: torch.Tensor, name: str | None) -> torch.Tensor:
    who = f"{name}: " if name else ""
    if x.numel() == 0:
        return x
    if not torch.isfinite(x).all():
        raise InputError(f"{who}float image contains NaN or infinity; fix or remove the image")
    lo, hi = float(x.min()), float(x.max())
    tol = 1e-3
    if lo < -tol or hi > 1.0 + tol:
        raise InputError(
            f"{who}float image values span [{lo:.4g}, {hi:.4g}] but must lie in [0, 1]; rescale it or save it as 8/16-bit"
        )
    return x.clamp(0.0, 1.0)
