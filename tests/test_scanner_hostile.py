"""The C++ scanner against hostile input, on the normal (non-sanitizer) build: every input kept from the fuzz work
(tests/data/fuzz/) is one error line and the run goes on; hostile stdin lines, file names that are not UTF-8 and
hostile export metadata; the caps of --max-pixels / --max-bytes, with the same words as `skipgan score`.
The sanitizer/fuzzer build of the same code is scanner/fuzz/ (run by .ci/run)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from skipgan import ops

try:
    from test_scanner import assert_same_results, gray_setup, run_scanner, scanner, skipgan_score  # noqa: F401
except ImportError:
    from tests.test_scanner import assert_same_results, gray_setup, run_scanner, scanner, skipgan_score  # noqa: F401

pytestmark = [pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

FUZZ = Path(__file__).resolve().parent / "data" / "fuzz"


def test_every_kept_fuzz_input_is_an_error_line(scanner, gray_setup, tmp_path):
    model, exported, folder = gray_setup
    good = sorted(folder.iterdir())[0]
    kept = sorted(FUZZ.iterdir())
    paths = [good, *kept, good]
    rc, lines, err = run_scanner(scanner, "--model", exported, "--batch-size", "4", *paths)
    assert rc == 1, err  # not 139 (SIGSEGV) nor 134 (std::bad_alloc): the scanner survived them all
    assert [line["path"] for line in lines] == [str(p) for p in paths]
    assert all("score" in line for line in (lines[0], lines[-1]))
    for line in lines[1:-1]:
        assert set(line) == {"path", "error"} and line["error"], line
    errors = {Path(line["path"]).name: line["error"] for line in lines[1:-1]}
    assert "65536 pixels per side" in errors["pgm_sides_2pow40.pgm"]
    assert "--max-pixels" in errors["pgm_60000x60000_16bit.pgm"]
    assert "cannot hold 8192 x 8192" in errors["png_8192x8192_in_100_bytes.png"]
    assert "must lie in [0, 1]" in errors["tiff_float_values_5.tif"]
    # `skipgan score` fails the same files (its decoders are Pillow/tifffile: the words of corrupt-file errors differ)
    rc, want = skipgan_score(model, *paths)
    assert rc == 1 and [("error" in w) for w in want] == [("error" in line) for line in lines]


def test_caps_are_the_same_words_in_the_scanner_and_skipgan_score(scanner, gray_setup, tmp_path):
    model, exported, folder = gray_setup
    wide = tmp_path / "wide.pgm"
    wide.write_bytes(b"P5\n70000 1\n255\n" + bytes(70000))
    rc, lines, _ = run_scanner(scanner, "--model", exported, "--max-pixels", "1000", folder, wide)
    assert rc == 1
    rc_py, want = skipgan_score(model, folder, wide, "--max-pixels", "1000")
    assert rc_py == 1 and [line["path"] for line in lines] == [w["path"] for w in want]
    for got, w in zip(lines, want):  # same errors, word for word; the small images (< 1000 pixels) scored
        assert got.get("error") == w.get("error"), (got, w)
    reasons = {Path(line["path"]).name: line.get("error") for line in lines}
    assert reasons["wide.pgm"] == "image of 70000 x 1 pixels is over the cap of 65536 pixels per side"
    assert reasons["a_png8.png"] == "image of 29 x 40 = 1160 pixels is over the cap of --max-pixels 1000"
    assert reasons["g_png8_same.png"] == reasons["a_png8.png"]


def test_hostile_stdin_lines_are_error_lines_in_order(scanner, gray_setup):
    _, exported, folder = gray_setup
    good = str(sorted(folder.iterdir())[0]).encode()
    stdin = (good + b"\n" + b"x" * 10000 + b"\n" + b"a\0b.png\n" + b"/no/such/\xff\xfe.png\r\n" + good)
    r = subprocess.run([scanner, "--model", str(exported), "--flush-ms", "20", "-"], input=stdin,
                       capture_output=True, timeout=300)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(lines) == 5 and "score" in lines[0] and "score" in lines[4]
    assert "longer than a path may be" in lines[1]["error"] and len(lines[1]["path"]) < 300
    assert "NUL byte" in lines[2]["error"]
    assert "cannot open" in lines[3]["error"] and lines[3]["path"] == "/no/such/\ufffd\ufffd.png"


def test_a_file_name_that_is_not_utf8_is_scored(scanner, gray_setup, tmp_path):
    """nlohmann-json throws on invalid UTF-8 by default: such a name once ended the whole run (exit 2)."""
    _, exported, folder = gray_setup
    d = tmp_path / "names"
    d.mkdir()
    shutil.copy(sorted(folder.iterdir())[0], os.path.join(os.fsencode(d), b"\xff\xfe.png"))
    rc, lines, err = run_scanner(scanner, "--model", exported, d)
    assert rc == 0, err
    assert len(lines) == 1 and "score" in lines[0] and lines[0]["path"].endswith("\ufffd\ufffd.png")


class Tiny(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("meta, words", [
    ('{"format": 5}', "'format' is not a string"),
    ('{"format": "other"}', "not a skipgan export"),
    ('not json', "not a skipgan export"),
    ('{"format": "skipgan-export", "format_version": "1"}', "format version \"1\" is not supported"),
    ('{"format": "skipgan-export", "format_version": 1, "device": 7}', "'device' is not a string"),
    ('{"format": "skipgan-export", "format_version": 1, "device": "tpu"}', "names device 'tpu'"),
    ('[' * 100000 + ']' * 100000, "nested"),
    ('{"format": "skipgan-export", "format_version": 1, "input": []}', "'input' is not an object"),
])
def test_hostile_export_metadata_is_one_model_error(scanner, tmp_path, meta, words):
    pt = tmp_path / "hostile.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(pt), _extra_files={"skipgan.json": meta})
    img = tmp_path / "a.pgm"
    img.write_bytes(b"P5\n2 2\n255\n" + bytes(4))
    rc, lines, err = run_scanner(scanner, "--model", pt, img)
    assert rc == 2 and not lines
    assert err.startswith("skipgan_scanner: error:") and str(pt) in err and words in err, err
    assert len(err.strip().splitlines()) == 1


def test_every_kind_of_seed_decodes_as_skipgan_score_reads_it(scanner, gray_setup):
    """The fuzz corpus's seeds (every kind the scanner reads: 8/16-bit, grey/RGB/alpha/palette PNG, PGM/PPM,
    interleaved/planar/float/compressed/big-endian/BigTIFF) score in the scanner as in `skipgan score`: the C++
    decoders give the Python readers' samples."""
    model, exported, _ = gray_setup
    seeds = sorted((Path(__file__).resolve().parent.parent / "scanner" / "fuzz" / "corpus" / "decode").iterdir())
    rc, lines, err = run_scanner(scanner, "--model", exported, *seeds)
    assert rc == 0, err
    rc, want = skipgan_score(model, *seeds)
    assert rc == 0
    assert_same_results(lines, want)
