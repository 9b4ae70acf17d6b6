"""Image decoding (PNG/JPEG/BMP/TIFF, 8/16-bit, n channels) and normalisation to [-1, 1]."""

import numpy as np
import pytest
import torch
from PIL import Image

from skipgan.data.images import CorruptImageError, batch_to_tensor, read_image, to_tensor
from skipgan.errors import InputError

try:
    from data_fixtures import gray8, rgb8, truncate, write_pil, write_png, write_tiff
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import gray8, rgb8, truncate, write_pil, write_png, write_tiff


# ----------------------------------------------------------------------------------------------- PNG


def test_png_gray8(tmp_path):
    a = gray8()
    arr = read_image(write_png(tmp_path / "g.png", a))
    assert arr.dtype == np.uint8 and arr.shape == (1, 12, 10)
    np.testing.assert_array_equal(arr[0], a)


def test_png_rgb8(tmp_path):
    a = rgb8()
    arr = read_image(write_png(tmp_path / "c.png", a))
    assert arr.dtype == np.uint8 and arr.shape == (3, 12, 10)
    np.testing.assert_array_equal(arr, a.transpose(2, 0, 1))


def test_png_rgba_drops_alpha(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    arr = read_image(write_png(tmp_path / "c.png", a))
    assert arr.shape == (3, 6, 7)
    np.testing.assert_array_equal(arr, a[..., :3].transpose(2, 0, 1))


def test_png_la_drops_alpha(tmp_path):
    im = Image.fromarray(np.stack([gray8(5, 6), np.full((5, 6), 7, np.uint8)], -1), mode="LA")
    im.save(tmp_path / "la.png")
    arr = read_image(tmp_path / "la.png")
    assert arr.shape == (1, 5, 6)
    np.testing.assert_array_equal(arr[0], gray8(5, 6))


def test_png_palette_to_rgb(tmp_path):
    rgb = rgb8(8, 8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    arr = read_image(tmp_path / "p.png")
    assert arr.shape == (3, 8, 8) and arr.dtype == np.uint8
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(arr, expected)


def test_png_16bit_keeps_values_and_precision(tmp_path):
    a = np.array([[1000, 1001, 300], [65535, 0, 40000]], dtype=np.uint16)
    path = write_png(tmp_path / "g16.png", a)
    assert Image.open(path).mode in ("I;16", "I")
    arr = read_image(path)
    assert arr.dtype == np.uint16 and arr.shape == (1, 2, 3)
    np.testing.assert_array_equal(arr[0], a)  # values above 255 survive
    # bigger image at native size: 1000 and 1001 stay different after normalisation
    big = np.full((32, 32), 1000, np.uint16)
    big[:, 16:] = 1001
    t = to_tensor(read_image(write_png(tmp_path / "b16.png", big)), 32)
    assert t.dtype == torch.float32 and t.shape == (1, 32, 32)
    assert t[0, 0, 0] != t[0, 0, 31]
    assert torch.allclose(t[0, 0, 0], torch.tensor(1000 / 65535 * 2 - 1))
    assert torch.allclose(t[0, 0, 31], torch.tensor(1001 / 65535 * 2 - 1))


def test_png_16bit_precision_survives_resize(tmp_path):
    big = np.full((128, 128), 1000, np.uint16)
    big[:, 64:] = 1001
    t = to_tensor(read_image(write_png(tmp_path / "b16.png", big)), 32)
    assert t[0, 0, 0] < t[0, 0, 31]  # not flattened to 8 bits (where both would be 4/255)


# ----------------------------------------------------------------------------------------------- JPEG / BMP


def test_jpeg_gray_and_rgb(tmp_path):
    g = read_image(write_pil(tmp_path / "g.jpg", gray8(16, 16), quality=95))
    assert g.shape == (1, 16, 16) and g.dtype == np.uint8
    c = read_image(write_pil(tmp_path / "c.JPEG", rgb8(16, 16), quality=95))
    assert c.shape == (3, 16, 16) and c.dtype == np.uint8


def test_bmp(tmp_path):
    a = rgb8(5, 9)
    arr = read_image(write_pil(tmp_path / "c.bmp", a))
    np.testing.assert_array_equal(arr, a.transpose(2, 0, 1))


# ----------------------------------------------------------------------------------------------- TIFF


def test_tiff_gray8_and_gray16(tmp_path):
    a8 = gray8()
    arr = read_image(write_tiff(tmp_path / "g.tif", a8))
    assert arr.dtype == np.uint8 and arr.shape == (1, 12, 10)
    np.testing.assert_array_equal(arr[0], a8)
    a16 = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 500).astype(np.uint16)
    arr = read_image(write_tiff(tmp_path / "g16.tiff", a16))
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr[0], a16)
    assert arr.max() > 255


def test_tiff_rgb_interleaved(tmp_path):
    a = rgb8()
    arr = read_image(write_tiff(tmp_path / "c.tif", a, photometric="rgb"))
    assert arr.shape == (3, 12, 10)
    np.testing.assert_array_equal(arr, a.transpose(2, 0, 1))


def test_tiff_rgb_planar(tmp_path):
    a = rgb8().transpose(2, 0, 1).copy()
    arr = read_image(write_tiff(tmp_path / "c.tif", a, photometric="rgb", planarconfig="separate"))
    np.testing.assert_array_equal(arr, a)


def test_tiff_two_channel_planar_16bit(tmp_path):
    """Dual-energy X-ray: (2, H, W) uint16, written as two pages."""
    a = np.random.default_rng(3).integers(0, 65536, (2, 20, 24), dtype=np.uint16)
    arr = read_image(write_tiff(tmp_path / "de.tif", a))
    assert arr.dtype == np.uint16 and arr.shape == (2, 20, 24)
    np.testing.assert_array_equal(arr, a)


def test_tiff_two_channel_interleaved(tmp_path):
    a = np.random.default_rng(4).integers(0, 65536, (20, 24, 2), dtype=np.uint16)
    # tifffile's default writes this as 20 pages of 24x2; the shape rule still finds the channel axis
    arr = read_image(write_tiff(tmp_path / "de_pages.tif", a))
    np.testing.assert_array_equal(arr, a.transpose(2, 0, 1))
    # a real interleaved file (one page, 2 samples per pixel)
    arr = read_image(write_tiff(tmp_path / "de.tif", a, photometric="minisblack", planarconfig="contig"))
    np.testing.assert_array_equal(arr, a.transpose(2, 0, 1))


def test_tiff_small_planar_uses_file_metadata(tmp_path):
    """(3, 8, 8) is ambiguous by shape; the file's planar configuration decides."""
    a = np.random.default_rng(5).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    arr = read_image(write_tiff(tmp_path / "c.tif", a, photometric="rgb", planarconfig="separate"))
    np.testing.assert_array_equal(arr, a)


def test_tiff_float(tmp_path):
    a = np.linspace(0, 1, 120, dtype=np.float32).reshape(12, 10)
    arr = read_image(write_tiff(tmp_path / "f.tif", a))
    assert arr.dtype == np.float32
    t = to_tensor(arr, 32)
    assert t.shape == (1, 32, 32) and t.min() >= -1 and t.max() <= 1


def test_tiff_float_out_of_range_refused(tmp_path):
    arr = read_image(write_tiff(tmp_path / "f.tif", np.full((4, 4), 300.0, np.float32)))
    with pytest.raises(InputError, match="f.tif.*\\[0, 1\\]"):
        to_tensor(arr, 32, name=str(tmp_path / "f.tif"))


def test_tiff_signed_int_refused(tmp_path):
    p = write_tiff(tmp_path / "s.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(InputError, match="s.tif.*int16"):
        read_image(p)


# ----------------------------------------------------------------------------------------------- to_tensor


def test_to_tensor_range_and_shape():
    a = np.zeros((1, 32, 32), np.uint8)
    a[0, 0, 1], a[0, 1, 0] = 255, 128
    t = to_tensor(a, 32)  # native size: no resize, exact values
    assert t.dtype == torch.float32 and t.shape == (1, 32, 32)
    assert t[0, 0, 0] == -1 and t[0, 0, 1] == 1 and abs(float(t[0, 1, 0]) - (128 / 255 * 2 - 1)) < 1e-6
    t = to_tensor(np.zeros((3, 40, 30), np.uint8), 32)
    assert t.shape == (3, 32, 32) and torch.all(t == -1)


def test_to_tensor_16bit_scale():
    a = np.zeros((1, 32, 32), np.uint16)
    a[0, :, 16:] = 65535
    t = to_tensor(a, 32)
    assert t.min() == -1 and t.max() == 1


def test_to_tensor_antialiased_downscale():
    # a 1-pixel checkerboard averages to grey when shrunk with antialiasing
    a = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)[None]
    t = to_tensor(a, 32)
    assert t.abs().max() < 0.05


@pytest.mark.parametrize("bad", [8, 16, 48, 1024, 0, -32, 32.0, True])
def test_resize_only_to_sizes_the_model_takes(bad):
    """Preprocessing feeds the model: the model's isize rule (skipgan.isize), one error for both."""
    with pytest.raises(InputError, match=r"isize=.*must be a power of two from 32 to 512 \(32, 64, 128, 256 or 512\)"):
        to_tensor(np.zeros((1, 32, 32), np.uint8), bad)
    with pytest.raises(ValueError):  # the same exception the model raises
        batch_to_tensor(np.zeros((2, 1, 32, 32), np.uint8), bad)
    assert batch_to_tensor(np.zeros((2, 1, 8, 8), np.uint8), np.int64(64)).shape == (2, 1, 64, 64)


def test_channel_adaptation():
    g = np.full((1, 32, 32), 255, np.uint8)
    assert torch.equal(to_tensor(g, 32, 3), torch.ones(3, 32, 32))
    rgb = np.zeros((3, 32, 32), np.uint8)
    rgb[0] = 255  # pure red -> luma 0.299
    t = to_tensor(rgb, 32, 1)
    assert t.shape == (1, 32, 32)
    assert torch.allclose(t, torch.full((1, 32, 32), 0.299 * 2 - 1), atol=1e-6)
    with pytest.raises(InputError, match="x.png.*--channels 3"):
        to_tensor(np.zeros((2, 32, 32), np.uint8), 32, 3, name="x.png")
    with pytest.raises(InputError, match="--channels 2"):
        to_tensor(rgb, 32, 2, name="x.png")


# ----------------------------------------------------------------------------------------------- bad input


def test_truncated_png(tmp_path):
    p = truncate(write_png(tmp_path / "t.png", rgb8(64, 64)), 0.6)
    with pytest.raises(CorruptImageError) as ei:
        read_image(p)
    msg = str(ei.value)
    assert str(p) in msg and "--skip-bad" in msg and "\n" not in msg
    assert isinstance(ei.value, InputError)


def test_truncated_jpeg(tmp_path):
    p = truncate(write_pil(tmp_path / "t.jpg", rgb8(64, 64), quality=95), 0.5)
    with pytest.raises(CorruptImageError, match="t.jpg"):
        read_image(p)


def test_truncated_tiff(tmp_path):
    p = truncate(write_tiff(tmp_path / "t.tif", gray8(64, 64)), 0.5)
    with pytest.raises(CorruptImageError, match="t.tif"):
        read_image(p)


@pytest.mark.parametrize("name", ["junk.png", "junk.jpg", "junk.bmp", "junk.tif"])
def test_garbage_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"this is not an image at all" * 3)
    with pytest.raises(CorruptImageError, match=name):
        read_image(p)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(InputError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="a.gif.*unsupported"):
        read_image(tmp_path / "a.gif")


def test_tiff_page_stack_ambiguous_refused(tmp_path):
    p = write_tiff(tmp_path / "z.tif", np.zeros((12, 16, 16), np.uint8))  # 12 pages of 16x16
    with pytest.raises(InputError, match="z.tif: cannot tell the channel axis"):
        read_image(p)


def test_pillow_16bit_modes():
    from skipgan.data.images import _pillow_to_array

    a = np.array([[1000, 65535], [0, 256]], dtype=np.uint16)
    im = Image.frombytes("I;16B", (2, 2), a.astype(">u2").tobytes())
    out = _pillow_to_array(im)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out[0], a)
    out = _pillow_to_array(Image.fromarray(a.astype(np.int32)))  # mode 'I'
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], a)


def _png16_rgb(path, rgb16):
    """Minimal 16-bit RGB PNG writer (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_png_16bit_colour_warns(tmp_path):
    a = np.full((4, 5, 3), 1000, np.uint16)
    p = _png16_rgb(tmp_path / "c16.png", a)
    with pytest.warns(UserWarning, match="c16.png: 16-bit colour PNG"):
        arr = read_image(p)
    assert arr.shape == (3, 4, 5)
