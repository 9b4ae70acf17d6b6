"""What one image may cost, checked from its header before anything is allocated for it.

The same numbers and messages as the C++ scanner's scanner/image_limits.h (tests/test_image_limits.py holds them
equal), so `skipgan score` and `skipgan_scanner` refuse the same files the same way. A file over a cap is an
`ImageTooLargeError` (a BadImageError: one error line when scoring, skipped by `--skip-bad` in training), never an
allocation. OpenCV's CV_IO_MAX_IMAGE_PIXELS (2^30) and Pillow's MAX_IMAGE_PIXELS play this part there; Pillow's
is set from `max_pixels` by the reader.
"""

from __future__ import annotations

import dataclasses

from skipgan.errors import BadImageError


class ImageTooLargeError(BadImageError):
    """An image (or file) over one of the caps of ImageLimits; the message names the cap and its flag."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    # Per side: far above any sensor (line-scan cameras included), below what 32-bit row arithmetic could overflow.
    max_side: int = 65536
    # 2^27 = 134,217,728 pixels: a 16-bit 8k x 8k X-ray (67 M) passes with room to spare. --max-pixels.
    max_pixels: int = 1 << 27
    # Decoded bytes of one image (samples x bytes per sample), and with 1 MiB for headers the most read of a file:
    # 1 GiB. --max-bytes.
    max_bytes: int = 1 << 30

    def __post_init__(self):
        for name in ("max_side", "max_pixels", "max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:  # the settings' form: cli/flags.as_input_error names the flag
                raise ValueError(f"{name}={value!r}: must be at least 1")

    @property
    def max_file_bytes(self) -> int:
        return self.max_bytes + (1 << 20)

    def check(self, path, width: int, height: int, channels: int, sample_bytes: int) -> None:
        """ImageTooLargeError naming the cap when width x height x channels x sample_bytes is over one."""
        if width <= 0 or height <= 0:
            raise BadImageError(path, "empty image (0 pixels)")
        if width > self.max_side or height > self.max_side:
            raise ImageTooLargeError(path, f"image of {width} x {height} pixels is over the cap of {self.max_side} "
                                           "pixels per side")
        pixels = width * height
        if pixels > self.max_pixels:
            raise ImageTooLargeError(path, f"image of {width} x {height} = {pixels} "
                                           f"pixels is over the cap of --max-pixels {self.max_pixels}")
        decoded = pixels * channels * sample_bytes
        if decoded > self.max_bytes:
            raise ImageTooLargeError(path, f"image of {width} x {height} x {channels} samples = {decoded} "
                                           f"bytes decoded is over the cap of --max-bytes {self.max_bytes}")

    def check_file(self, path, size: int) -> None:
        if size > self.max_file_bytes:
            raise ImageTooLargeError(path, f"file is over the cap of --max-bytes {self.max_bytes} "
                                           "(+1 MiB for headers) bytes")


DEFAULT_LIMITS = ImageLimits()

# Deflate expands at most 1032:1, so a PNG's compressed bytes bound the pixels it can hold (both readers check it
# before allocating: a few hundred header bytes claiming 8k x 8k are refused, not decoded into a gigabyte).
DEFLATE_MAX_RATIO = 1032
