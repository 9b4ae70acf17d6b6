"""What one image may cost (skipgan.data.limits, scanner/image_limits.h): the caps are one set of numbers in both
languages, enforced from the header before any allocation, and a file over a cap is one image's error."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skipgan.data.images import CorruptImageError, read_image
from skipgan.data.limits import DEFAULT_LIMITS, ImageLimits, ImageTooLargeError
from skipgan.errors import BadImageError, InputError

ROOT = Path(__file__).resolve().parent.parent
FUZZ = Path(__file__).resolve().parent / "data" / "fuzz"


def test_the_scanner_header_states_the_same_defaults():
    header = (ROOT / "scanner" / "image_limits.h").read_text()
    side = int(re.search(r"int64_t max_side = (\d+);", header).group(1))
    pixels = int(re.search(r"int64_t max_pixels = int64_t\(1\) << (\d+);", header).group(1))
    decoded = int(re.search(r"int64_t max_bytes = int64_t\(1\) << (\d+);", header).group(1))
    assert (side, 1 << pixels, 1 << decoded) == (DEFAULT_LIMITS.max_side, DEFAULT_LIMITS.max_pixels,
                                                  DEFAULT_LIMITS.max_bytes)
    # and the same words for each cap (the scanner's error lines and skipgan score's match)
    for words in ("pixels per side", "over the cap of --max-pixels", "bytes decoded is over the cap of --max-bytes",
                  "(+1 MiB for headers) bytes"):
        assert words in header and words in (ROOT / "skipgan" / "data" / "limits.py").read_text()


def test_a_16_bit_8k_xray_passes_the_defaults():
    DEFAULT_LIMITS.check("xray.tif", 8192, 8192, 1, 2)  # no error


@pytest.mark.parametrize("size, words", [((70000, 10), "65536 pixels per side"),
                                         ((12000, 12000), "--max-pixels 134217728"),
                                         ((8192, 8192, 3, 8), "--max-bytes 1073741824")])
def test_each_cap_names_itself(size, words):
    w, h, *rest = size
    c, b = rest or (1, 1)
    with pytest.raises(ImageTooLargeError, match=re.escape(words)) as ei:
        DEFAULT_LIMITS.check("big.tif", w, h, c, b)
    assert ei.value.path == "big.tif" and "\n" not in str(ei.value)
    assert isinstance(ei.value, BadImageError) and isinstance(ei.value, InputError)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=0)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    except BadImageError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("name, error", [
    ("pgm_sides_2pow40.pgm", BadImageError),            # the scanner's SIGSEGV (2^80 bytes overflowed to 0)
    ("pgm_60000x60000_16bit.pgm", ImageTooLargeError),  # the scanner's std::bad_alloc
    ("png_width_2pow31.png", ImageTooLargeError),
    ("png_8192x8192_in_100_bytes.png", CorruptImageError),  # within the caps, but 69 bytes cannot hold it
    ("tiff_8192x8192_in_one_strip.tif", CorruptImageError),
    ("pgm_one_byte_short.pgm", CorruptImageError),
    ("pgm_maxval_overflow.pgm", CorruptImageError),
    ("png_ztxt_1_8gb.png", CorruptImageError),  # found by decode_fuzzer: libpng would allocate the zTXt's claim
    ("not_an_image.png", CorruptImageError),
    ("empty.tif", CorruptImageError),
])
def test_hostile_headers_are_refused_before_allocating(name, error):
    """tests/data/fuzz/: each file is refused with its own error, and what the refusal cost stays in megabytes
    (a 8192 x 8192 claim would be 64 MB to 128 MB; the others gigabytes or more)."""
    path = FUZZ / name
    with pytest.raises(error) as ei:
        read_image(path)
    assert str(path) in str(ei.value) and "\n" not in str(ei.value)
    assert _peak_bytes(lambda: read_image(path)) < 16 << 20


def test_a_smaller_cap_refuses_a_real_image(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(p)
    assert read_image(p).shape == (1, 100, 100)
    with pytest.raises(ImageTooLargeError, match="--max-pixels 5000"):
        read_image(p, ImageLimits(max_pixels=5000))
    with pytest.raises(ImageTooLargeError, match="--max-bytes 9999"):
        read_image(p, ImageLimits(max_bytes=9999))
    with pytest.raises(ImageTooLargeError, match="file is over the cap of --max-bytes 10 "):
        ImageLimits(max_bytes=10).check_file(p, (1 << 20) + 11)
