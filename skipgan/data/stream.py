"""Decode image files on a pool of worker threads, ahead of the consumer, in input order.

Scoring must not wait on decoding: while the engine scores one batch, the next ones are read, decoded, resized
and normalised (Pillow, tifffile and torch's resize release the GIL for their heavy parts). At most `prefetch`
images are in flight, so memory stays bounded on folders of any size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import torch

from ..errors import BadImageError
from .images import read_image, to_tensor
from .limits import DEFAULT_LIMITS, ImageLimits


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


class DecodedImage(NamedTuple):
    """One decoded file: the model's input and the image's own size (regions are reported in its pixels)."""

    tensor: torch.Tensor  # [C, isize, isize] in [-1, 1]
    height: int
    width: int


def decode_one(path: Path, isize: int, channels: int | None, limits: ImageLimits = DEFAULT_LIMITS
               ) -> DecodedImage | BadImageError:
    """The preprocessing of one file (decode -> resize -> [-1, 1]). Whatever is wrong with this one file (corrupt,
    over a cap, values out of range, channels the model cannot take) is returned, not raised, so the caller
    decides: an error line and go on (`skipgan score`), or stop (`--strict`)."""
    try:
        arr = read_image(path, limits)
        return DecodedImage(to_tensor(arr, isize, channels=channels, name=str(path)), *arr.shape[-2:])
    except BadImageError as e:
        return e


def decode_stream(paths: Iterable[Path], isize: int, channels: int | None, *, workers: int | None = None,
                  prefetch: int = 256, limits: ImageLimits = DEFAULT_LIMITS
                  ) -> Iterator[tuple[Path, DecodedImage | BadImageError]]:
    """(path, DecodedImage or its BadImageError) for every path, in order."""
    workers = workers or default_workers()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skipgan-decode") as pool:
        pending: collections.deque = collections.deque()
        it = iter(paths)
        for p in it:
            pending.append((p, pool.submit(decode_one, p, isize, channels, limits)))
            if len(pending) >= prefetch:
                break
        while pending:
            p, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(decode_one, nxt, isize, channels, limits)))
            try:
                yield p, fut.result()
            except BaseException:
                for _, f in pending:
                    f.cancel()
                raise


def batches(stream: Iterable[tuple[Path, DecodedImage | BadImageError]], size: int
            ) -> Iterator[list[tuple[Path, DecodedImage | BadImageError]]]:
    batch: list = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
