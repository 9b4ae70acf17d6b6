"""Hostile files through the Python side: a property-based fuzz (Hypothesis) of `read_image` over mutated files of
every kind the scanner's fuzzers start from (scanner/fuzz/corpus/decode: 8/16-bit, 1/3 channels, palette and alpha
PNG, planar/interleaved/float/compressed TIFF, PGM/PPM), and `skipgan score` over a folder of them.

What must hold for every input: an image, or one BadImageError naming the file on one line, never another
exception; `skipgan score` writes one JSON line per file, exit code 1, no traceback, no map for a failed image, and
its memory stays below a stated bound. Bounded: a fixed number of examples, derandomized (the same in every CI run).
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_fixtures import train_run
from skipgan.data.images import read_image
from skipgan.data.limits import DEFAULT_LIMITS
from skipgan.errors import BadImageError

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "scanner" / "fuzz" / "corpus" / "decode").iterdir())
SUFFIXES = (".png", ".tif", ".pgm", ".ppm")
# Values that break size arithmetic when written over a header field
HOSTILE_INTS = (0, 1, 255, 256, 65535, 65536, 8192, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(data: bytearray, draw_int, draw_choice, draw_bytes) -> bytearray:
    """Byte flips, truncation, insertion, and header-sized integers overwritten with hostile values."""
    for _ in range(draw_int(1, 4)):
        if not data:
            break
        pos = draw_int(0, len(data) - 1)
        kind = draw_choice(("flip", "truncate", "insert", "int32", "int16", "digits"))
        if kind == "flip":
            data[pos] ^= 1 << draw_int(0, 7)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw_bytes()
        elif kind in ("int32", "int16") and len(data) >= 4:
            fmt = draw_choice(("<", ">")) + ("I" if kind == "int32" else "H")
            value = draw_choice(HOSTILE_INTS) & (0xFFFFFFFF if kind == "int32" else 0xFFFF)
            struct.pack_into(fmt, data, min(pos, len(data) - struct.calcsize(fmt)), value)
        elif kind == "digits":  # PGM/PPM headers are text
            data[pos:pos + 1] = str(draw_choice(HOSTILE_INTS)).encode()
    return data


@st.composite
def hostile_files(draw):
    seed = draw(st.sampled_from(SEEDS))
    data = mutate(bytearray(seed.read_bytes()), lambda a, b: draw(st.integers(a, b)),
                  lambda xs: draw(st.sampled_from(xs)), lambda: draw(st.binary(min_size=1, max_size=16)))
    # mostly the seed's own suffix; sometimes another one (the extension lies about the content)
    suffix = draw(st.sampled_from((seed.suffix,) * 3 + SUFFIXES))
    return bytes(data), suffix


def check_outcome(path: Path):
    try:
        arr = read_image(path)
    except BadImageError as e:
        assert str(path) in str(e) and "\n" not in str(e) and e.reason
        return None
    assert arr.ndim == 3 and arr.dtype in (np.uint8, np.uint16, np.float32)
    c, h, w = arr.shape
    DEFAULT_LIMITS.check(path, w, h, c, arr.dtype.itemsize)
    return arr


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hostile_files())
def test_read_image_gives_an_image_or_one_bad_image_error(tmp_path, case):
    data, suffix = case
    path = tmp_path / f"case{suffix}"
    path.write_bytes(data)
    check_outcome(path)


def test_every_seed_decodes(tmp_path):
    """The seeds themselves are valid images of their kind (else the fuzz would start from nothing)."""
    for seed in SEEDS:
        arr = check_outcome(seed)
        assert arr is not None, seed.name


def write_hostile_folder(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        src = SEEDS[i % len(SEEDS)]
        data = mutate(bytearray(src.read_bytes()), rng.randint, rng.choice,
                      lambda: rng.randbytes(rng.randint(1, 16)))
        p = folder / f"f{i:03d}{src.suffix}"
        p.write_bytes(bytes(data))
        paths.append(p)
    return paths


# Bound on the peak memory of `skipgan score` over tiny hostile files: the process with torch and a model loaded
# takes ~0.5 GB here; every decode is bounded by the caps and by what the file's bytes can hold, so hostile
# headers add nothing near a gigabyte.
SCORE_RSS_LIMIT_MB = 1200


def test_skipgan_score_over_hostile_files(tmp_path):
    data = tmp_path / "data"
    for split in ("train/good", "test/good"):
        (data / split).mkdir(parents=True)
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16), np.uint8)).save(data / "train/good" / f"n{i}.png")
        Image.fromarray(rng.integers(0, 255, (16, 16), np.uint8)).save(data / "test/good" / f"t{i}.png")
    (data / "test/bad").mkdir()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(data / "test/bad" / "b.png")
    _, run = train_run(tmp_path, data)
    folder = tmp_path / "hostile"
    paths = write_hostile_folder(folder, 150)
    maps = tmp_path / "maps"
    cmd = [sys.executable, "-m", "skipgan.cli", "score", str(run / "model.safetensors"), str(folder), "--device",
           "cpu", "--maps", str(maps), "--batch-size", "16"]
    # the score process's own peak memory: measured by a parent of its own (RUSAGE_CHILDREN covers only it)
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(f'PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); "
               "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", measure, *cmd], capture_output=True, text=True, timeout=600)
    out, err = r.stdout, r.stderr
    assert r.returncode == 1, err[-2000:]
    err_lines = err.splitlines()
    peak_mb = int(err_lines[-1].split("=")[1]) / 1024
    print(f"skipgan score over {len(paths)} hostile files: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < SCORE_RSS_LIMIT_MB, f"skipgan score peaked at {peak_mb:.0f} MB"
    assert "Traceback" not in err
    # stderr: the summary line (and the decoding libraries' own notes), no error of skipgan's: those are lines
    assert any(line.startswith("scored ") for line in err_lines)
    assert not any(line.startswith("skipgan: error") for line in err_lines)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in paths]  # one line per file, in input order
    failed = [line for line in lines if "error" in line]
    scored = [line for line in lines if "score" in line]
    assert failed and len(failed) + len(scored) == len(paths)
    for line in failed:
        assert set(line) == {"path", "error"} and "\n" not in line["error"]
    # a map for each scored image, none for a failed one
    written = sorted(str(p.relative_to(maps)) for p in maps.rglob("*") if p.is_file())
    assert len(written) == len(scored)
    for line in scored:
        assert Path(line["map"]).exists()
