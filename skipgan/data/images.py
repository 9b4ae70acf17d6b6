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

import logging
import os
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from skipgan import preprocess
from skipgan.data.limits import DEFAULT_LIMITS, DEFLATE_MAX_RATIO, ImageLimits, ImageTooLargeError  # noqa: F401
from skipgan.errors import BadImageError, InputError
from skipgan.isize import check_isize
from skipgan.preprocess import LUMA_601  # noqa: F401  (re-exported: part of this module's public face)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
TIFF_EXTENSIONS = (".tif", ".tiff")

# Images resized per call of F.interpolate in `batch_to_tensor`; bounds the float32 working memory.
RESIZE_CHUNK = 512


class CorruptImageError(BadImageError):
    """The file exists but cannot be decoded (truncated, corrupt, not an image)."""

    def __init__(self, path: str | os.PathLike, detail: str | None = None):
        reason = "cannot decode image (truncated or corrupt); remove it or pass --skip-bad"
        super().__init__(path, f"{reason} [{detail}]" if detail else reason)


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_image(path: str | os.PathLike, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode an image file into a (C, H, W) array of its native dtype (uint8, uint16 or float32).

    Raises `BadImageError` naming the file for anything wrong with this one file: missing, of an unsupported
    kind, over a cap of `limits` (`ImageTooLargeError`, checked from the header before decoding), or undecodable
    (`CorruptImageError`).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "no such image file; check the path")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise BadImageError(path, f"unsupported image type '{suffix}'; use one of {' '.join(IMAGE_EXTENSIONS)}")
    size = path.stat().st_size
    limits.check_file(path, size)
    if suffix in TIFF_EXTENSIONS:
        arr = _read_tiff(path, limits, size)
    else:
        arr = _read_pillow(path, limits, size)
    arr = _native_dtype(arr, path)
    # What was decoded, held to the same rules as the header (a damaged file can decode to another shape, or none)
    limits.check(path, arr.shape[2], arr.shape[1], arr.shape[0], arr.dtype.itemsize)
    return arr


# ----------------------------------------------------------------------------------------------- Pillow


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> samples per pixel in the file (IHDR)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_ihdr(head: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from the first 26 bytes of a PNG, or None if they are not a PNG's."""
    if len(head) < 26 or head[:8] != _PNG_MAGIC or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24], head[25]


def _check_png_header(path: Path, ihdr: tuple[int, int, int, int], size: int, limits: ImageLimits) -> None:
    """Before Pillow opens the file (its own bomb check would answer first, in other words than the scanner's): the
    caps, with the samples the decoders make of it (RGB, RGBA, palette -> 3; grey, grey+alpha -> 1), and what the
    file's bytes can hold (deflate expands at most DEFLATE_MAX_RATIO:1): the checks of scanner/image_decode.cpp."""
    width, height, depth, color = ihdr
    channels = 3 if color & 2 or color == 3 else 1
    limits.check(path, width, height, channels, 2 if depth == 16 and channels == 1 else 1)
    row_bytes = (width * _PNG_CHANNELS.get(color, 4) * depth + 7) // 8
    if height * (row_bytes + 1) > size * DEFLATE_MAX_RATIO + 4096:
        raise CorruptImageError(path, f"truncated PNG: {size} bytes cannot hold {width} x {height} pixels")


def _pillow_samples(mode: str) -> tuple[int, int]:
    """(channels, bytes per sample) that _pillow_to_array makes of a Pillow mode: what decoding will hold."""
    if mode.startswith("I;16"):
        return 1, 2
    if mode in ("I", "F"):
        return 1, 4
    if mode in ("1", "L", "LA", "La"):  # alpha dropped
        return 1, 1
    return 3, 1  # P, PA, RGB, RGBA, CMYK, YCbCr, ...: RGB


_PNM_NUMBER = re.compile(rb"(?:\s|#[^\n]*\n?)*(\d{1,18})")


def _read_binary_pnm(path: Path, limits: ImageLimits) -> np.ndarray | None:
    """Binary PGM/PPM (P5/P6, maxval 255 or 65535) read here, as the scanner reads it (scanner/image_decode.cpp):
    all 16 bits of 16-bit colour too (Pillow reduces a 16-bit PPM to 8 bits). The caps are checked from the header
    before the samples are taken (the file itself is within the file cap). None for another PNM (Pillow reads it,
    its header checked here first)."""
    data = path.read_bytes()
    if len(data) < 3 or not data[2:3].isspace():
        return None
    fields, pos = [], 2
    for _ in range(3):
        m = _PNM_NUMBER.match(data, pos)
        if not m:
            raise CorruptImageError(path, "truncated or corrupt PGM/PPM header")
        fields.append(int(m.group(1)))
        pos = m.end()
    width, height, maxval = fields
    channels = 3 if data[:2] == b"P6" else 1
    limits.check(path, width, height, channels, 2 if maxval > 255 else 1)
    if maxval not in (255, 65535):
        return None
    if pos >= len(data) or not data[pos:pos + 1].isspace():
        raise CorruptImageError(path, "truncated or corrupt PGM/PPM header")
    dtype = np.dtype(">u2" if maxval == 65535 else np.uint8)
    need = width * height * channels * dtype.itemsize
    if len(data) - pos - 1 < need:
        raise CorruptImageError(path, "truncated PGM/PPM: fewer pixels than the header says")
    arr = np.frombuffer(data, dtype, width * height * channels, pos + 1).reshape(height, width, channels)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=dtype.newbyteorder("="))  # big endian in the file


def _read_pillow(path: Path, limits: ImageLimits, size: int) -> np.ndarray:
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone else switched it on: we still want truncation caught
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated images would pass silently")
    # Pillow's own decompression-bomb guard, from the same number (for the formats checked only once open)
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    # Between once and twice that Pillow only warns, on stderr; the caps refuse such an image anyway, as this
    # file's one error. (Set on every call: a caller's warnings.catch_warnings() would drop a filter set once.)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    with open(path, "rb") as f:
        head = f.read(26)
    ihdr = _png_ihdr(head)
    if ihdr is not None:
        _check_png_header(path, ihdr, size, limits)
    elif head[:2] in (b"P5", b"P6"):
        raw = _read_binary_pnm(path, limits)
        if raw is not None:
            return raw
    try:
        with Image.open(path) as im:
            limits.check(path, *im.size, *_pillow_samples(im.mode))  # before load() allocates the pixels
            im.load()  # force the full decode so that truncation is caught here
            arr = _pillow_to_array(im)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, f"image is over the cap of --max-pixels {limits.max_pixels} "
                                       f"({_one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, IndexError, TypeError) as exc:
        # OSError covers PIL.UnidentifiedImageError and "image file is truncated".
        raise CorruptImageError(path, _one_line(exc)) from None
    if ihdr is not None and ihdr[2] == 16 and ihdr[3] in (2, 4, 6):
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
            raise BadImageError(im.filename, "32-bit integer image with values outside 0..65535; save it as 8/16-bit "
                                             "or float TIFF")
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


# Most that any TIFF compression (deflate 1032:1, LZW, PackBits, ...) expands one strip's bytes by: with the
# strips' byte counts it bounds what a file can hold before tifffile allocates its output.
TIFF_MAX_RATIO = 4096


def _check_tiff_size(series, path: Path, limits: ImageLimits, size: int) -> None:
    """The caps, and what the strips' bytes can hold, from the tags alone, before tifffile allocates the image
    (it sets aside the whole output before decoding the first strip)."""
    page = series.keyframe
    width, height = int(page.imagewidth), int(page.imagelength)
    elements = int(np.prod(series.shape, dtype=np.int64)) if series.shape else 0
    itemsize = series.dtype.itemsize if series.dtype else 1
    limits.check(path, width, height, max(elements // max(width * height, 1), 1), itemsize)
    held = sum(min(int(n), size) for p in series.pages if p is not None for n in getattr(p, "databytecounts", ()))
    ratio = 1 if page.compression == 1 else TIFF_MAX_RATIO
    if elements * itemsize > held * ratio + 4096:
        raise CorruptImageError(path, f"truncated TIFF: strips of {held} bytes cannot hold {width} x {height} pixels")


def _read_tiff(path: Path, limits: ImageLimits, size: int) -> np.ndarray:
    import tifffile

    # tifffile logs its doubts about a damaged file on stderr as well as raising; what is wrong reaches the user
    # once, as this file's error
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise CorruptImageError(path, "no image data")
            series = tf.series[0]
            axes = series.axes
            _check_tiff_size(series, path, limits, size)
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
        raise BadImageError(path, f"TIFF image of shape {arr.shape} is not 2-D; expected (H, W), (H, W, C) or (C, H, W)")
    if len(keep) < arr.ndim:
        axes = "".join(axes[i] for i in keep)
        arr = arr.reshape([arr.shape[i] for i in keep])
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise BadImageError(
            path, f"TIFF image of shape {arr.shape} has too many dimensions; expected (H, W), (H, W, C) or (C, H, W)"
        )
    if axes.count("S") == 1:  # the file says where the samples are
        c_axis = axes.index("S")
    elif arr.shape[0] <= 8 and arr.shape[-1] > 8:
        c_axis = 0
    elif arr.shape[-1] <= 8:
        c_axis = 2
    else:
        raise BadImageError(
            path, f"cannot tell the channel axis of TIFF shape {arr.shape} (a stack of pages?); store it as "
            "(H, W, C) or (C, H, W) with C <= 8, or as one page with several samples per pixel"
        )
    if c_axis == 1:
        raise BadImageError(path, f"TIFF layout '{axes}' with samples in the middle axis is not supported")
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
        raise BadImageError(path, "signed 8-bit samples are not supported; save as unsigned 8/16-bit or float")
    else:
        raise BadImageError(
            path, f"unsupported sample type {dt} ({dt.itemsize * 8}-bit); save as unsigned 8/16-bit or float in [0, 1]"
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
        raise _image_error(
            name, f"image has {samples.shape[1]} channels but --channels {channels} was given; only 1 -> N (repeat) "
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


def _image_error(name: str | None, reason: str) -> InputError:
    """A BadImageError for the image `name` (one image's problem: scoring reports it and goes on), or a plain
    InputError when no image is named (an array given from Python)."""
    return BadImageError(name, reason) if name else InputError(reason)


def _check_float_range(x: torch.Tensor, name: str | None) -> torch.Tensor:
    if x.numel() == 0:
        return x
    if not torch.isfinite(x).all():
        raise _image_error(name, "float image contains NaN or infinity; fix or remove the image")
    lo, hi = float(x.min()), float(x.max())
    tol = 1e-3
    if lo < -tol or hi > 1.0 + tol:
        raise _image_error(
            name, f"float image values span [{lo:.4g}, {hi:.4g}] but must lie in [0, 1]; rescale it or save it as 8/16-bit"
        )
    return x.clamp(0.0, 1.0)
