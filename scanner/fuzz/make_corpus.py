"""Write the seed corpora of the scanner's fuzz harnesses: small valid inputs of every kind the scanner reads.

    python scanner/fuzz/make_corpus.py            # rewrites scanner/fuzz/corpus/{decode,path_lines,metadata}/

Seeds are tiny (7 x 5 pixels) so that mutations reach the headers and the pixel loops alike; they are committed,
and re-running this script gives the same bytes (seeded, no timestamps).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

OUT = Path(__file__).resolve().parent / "corpus"
H, W = 5, 7


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def text_chunks():
    """tEXt, zTXt and iTXt chunks (the scanner skips every ancillary chunk unread; Pillow reads them)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "skipgan make_corpus")
    info.add_text("Comment", "a compressed comment " * 4, zip=True)
    info.add_itxt("Title", "titre", lang="fr", tkey="Title")
    return info


def png_raw(width: int, height: int, depth: int, color: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk: 16-bit colour, which Pillow does not write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pnm(magic: str, a: np.ndarray, maxval: int, comment: bool = False) -> bytes:
    head = f"{magic}\n" + ("# a comment\n" if comment else "") + f"{a.shape[1]} {a.shape[0]}\n{maxval}\n"
    return head.encode() + (a.astype(">u2") if maxval > 255 else a.astype(np.uint8)).tobytes()


def tiff(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **kw)
    return buf.getvalue()


def decode_seeds(rng: np.random.Generator) -> dict[str, bytes]:
    g8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    f32 = rng.random((H, W), dtype=np.float32)
    pal = Image.fromarray(g8 % 4).convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    seeds = {
        "gray8.png": png_bytes(Image.fromarray(g8)),
        "gray16.png": png_bytes(Image.fromarray(g16)),
        "gray1.png": png_bytes(Image.fromarray(g8 > 127)),
        "rgb8.png": png_bytes(Image.fromarray(rgb)),
        "rgba8.png": png_bytes(Image.fromarray(np.dstack([rgb, g8]))),
        "la8.png": png_bytes(Image.fromarray(np.dstack([g8, g8]), mode="LA")),
        "palette.png": png_bytes(pal),
        "palette_trns.png": png_bytes(pal, transparency=0),
        "gray8_text_chunks.png": png_bytes(Image.fromarray(g8), pnginfo=text_chunks(), dpi=(300, 300)),
        "rgb16.png": png_raw(W, H, 16, 2, b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(H))),
        "gray8.pgm": pnm("P5", g8, 255),
        "gray16_comment.pgm": pnm("P5", g16, 65535, comment=True),
        "rgb8.ppm": pnm("P6", rgb, 255),
        "rgb16.ppm": pnm("P6", rgb16, 65535),
        "gray8.tif": tiff(g8),
        "gray16.tif": tiff(g16),
        "float32.tif": tiff(f32),
        "rgb8_interleaved.tif": tiff(rgb, photometric="rgb", planarconfig="contig"),
        "rgb8_planar.tif": tiff(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"),
        "rgb16_planar.tif": tiff(np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate"),
        "gray8_zlib_strips.tif": tiff(g8, compression="zlib", rowsperstrip=2),
        "gray16_bigendian.tif": tiff(g16, byteorder=">"),
        "gray8_bigtiff.tif": tiff(g8, bigtiff=True),
    }
    return seeds


def metadata_seeds() -> dict[str, bytes]:
    meta = {"format": "skipgan-export", "format_version": 1, "skipgan_version": "0.9.0", "export_format": "torchscript",
            "device": "cpu", "dtype": "float32", "isize": 32, "channels": 1, "architecture": {"isize": 32, "nc": 1},
            "lam": 0.9, "probes": 8, "threshold": 1.25, "target_fpr": 0.05,
            "val_stats": {"mean": 0.5, "std": 0.1}, "max_batch": 64,
            "input": {"name": "images", "layout": "NCHW", "dtype": "uint8", "size": "any H x W"},
            "outputs": ["scores", "normalised", "verdicts"]}
    cuda = dict(meta, device="cuda", export_format="aoti", input=dict(meta["input"], dtype="uint16"))
    return {"torchscript_cpu.json": json.dumps(meta, sort_keys=True).encode(),
            "aoti_cuda.json": json.dumps(cuda, sort_keys=True).encode(),
            "old_version.json": json.dumps(dict(meta, format_version=0)).encode(),
            "not_skipgan.json": b'{"format": "other"}'}


def path_line_seeds() -> dict[str, bytes]:
    return {"paths.txt": b"images/a.png\nimages/b.tif\n\nimages/c.pgm\n",
            "crlf.txt": b"a.png\r\nb.png\r\n",
            "no_newline.txt": b"a.png"}


def main() -> int:
    rng = np.random.default_rng(0)
    for name, seeds in (("decode", decode_seeds(rng)), ("metadata", metadata_seeds()),
                        ("path_lines", path_line_seeds())):
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for fname, data in seeds.items():
            (d / fname).write_bytes(data)
        print(f"{d}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
