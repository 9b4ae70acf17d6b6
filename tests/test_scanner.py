"""The C++ scanner (scanner/, built by CMake): its scores equal `skipgan score`'s, bad images are error lines and
the run goes on, stdin mode, exit codes."""

import io
import json
import os
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from skipgan import ops
from skipgan.cli import main
from skipgan.export import export_model
from skipgan.modelfile import load_model, save_model
from skipgan.scoring import calibration_values, verdicts

try:
    from data_fixtures import gray8, rgb8, truncate, write_png, write_tiff
    from model_fixtures import export_claiming_device, make, make_int8
except ImportError:
    from tests.data_fixtures import gray8, rgb8, truncate, write_png, write_tiff
    from tests.model_fixtures import export_claiming_device, make, make_int8

pytestmark = [pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

CAL = {"threshold": 0.6, "target_fpr": 0.05, "val_stats": {"mean": 0.5, "std": 0.1, "n": 10}}


def rng_u16(h, w, c=None, seed=0):
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def write_pgm16(path, arr):
    path.write_bytes(f"P5\n# 16-bit\n{arr.shape[1]} {arr.shape[0]}\n65535\n".encode() + arr.astype(">u2").tobytes())
    return path


@pytest.fixture(scope="module")
def scanner(cmake_build):
    exe = os.path.join(cmake_build, "scanner", "skipgan_scanner")
    assert os.access(exe, os.X_OK), exe
    return exe


def models(root: Path, nc: int, **kw):
    model = make(nc=nc, **kw)
    path = root / f"nc{nc}.safetensors"
    save_model(path, model, CAL)
    loaded, meta = load_model(path)
    export_model(loaded, meta, "torchscript", root / f"nc{nc}.pt", verify=False)
    return path, root / f"nc{nc}.pt"


@pytest.fixture(scope="module")
def gray_setup(tmp_path_factory):
    """A 1-channel model (3 noise probes, margin 1) and 8/16-bit PNG, TIFF and PGM files of other sizes."""
    root = tmp_path_factory.mktemp("gray")
    model, exported = models(root, 1, probes=3, margin=1)
    d = root / "images"
    write_png(d / "a_png8.png", gray8(40, 29, seed=1))
    write_png(d / "b_png16.png", rng_u16(32, 32, seed=2))
    write_tiff(d / "c_tif8.tif", gray8(50, 50, seed=3))
    write_tiff(d / "d_tif16.tiff", rng_u16(31, 64, seed=4))
    write_pgm16(d / "e_pgm16.pgm", rng_u16(20, 33, seed=5))
    write_png(d / "f_rgb_to_luma.png", rgb8(36, 36, seed=6))
    write_png(d / "g_png8_same.png", gray8(40, 29, seed=7))
    return model, exported, d


@pytest.fixture(scope="module")
def rgb_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    model, exported = models(root, 3, probes=0)
    d = root / "images"
    write_png(d / "a_rgb8.png", rgb8(33, 47, seed=1))
    write_tiff(d / "b_rgb16.tif", rng_u16(40, 40, 3, seed=2), photometric="rgb")
    write_tiff(d / "c_rgb16_planar.tif", np.moveaxis(rng_u16(28, 30, 3, seed=3), -1, 0), photometric="rgb",
               planarconfig="separate")
    write_png(d / "d_gray_to_rgb.png", gray8(32, 32, seed=4))
    write_png(d / "e_rgba.png", np.random.default_rng(5).integers(0, 256, (30, 30, 4), dtype=np.uint8))
    return model, exported, d


def run_scanner(exe, *args, stdin=None, timeout=300):
    r = subprocess.run([exe, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, lines, r.stderr


def skipgan_score(model, *paths):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["score", str(model), *map(str, paths), "--device", "cpu"])
    return rc, [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def assert_same_results(got, want):
    assert [g["path"] for g in got] == [w["path"] for w in want]
    for g, w in zip(got, want):
        assert g["score"] == pytest.approx(w["score"], rel=1e-4, abs=1e-7), g["path"]
        assert g["normalised_score"] == pytest.approx(w["normalised_score"], rel=1e-4, abs=1e-5), g["path"]
        assert g["verdict"] == w["verdict"] or abs(g["score"] - CAL["threshold"]) < 1e-5
        # the scanner's own line: the one definition (skipgan.scoring.verdicts) of its fp32 score, as the export has it
        z, v = verdicts(torch.tensor([g["score"]], dtype=torch.float32), *calibration_values(CAL))
        assert g["normalised_score"] == pytest.approx(float(z), rel=1e-6, abs=1e-6), g["path"]
        assert g["verdict"] == ("abnormal" if bool(v) else "normal"), g["path"]


@pytest.mark.parametrize("setup", ["gray_setup", "rgb_setup"])
@pytest.mark.parametrize("batch", ["1", "3"])
def test_scores_equal_skipgan_score(scanner, setup, batch, request):
    model, exported, folder = request.getfixturevalue(setup)
    rc, got, err = run_scanner(scanner, "--model", exported, "--batch-size", batch, "--workers", "2", folder)
    assert rc == 0, err
    want_rc, want = skipgan_score(model, folder)
    assert want_rc == 0 and len(want) == len(list(folder.iterdir()))
    assert_same_results(got, want)
    assert "images/s" in err


def test_bad_images_are_error_lines_and_the_rest_is_scored(scanner, gray_setup, tmp_path):
    model, exported, folder = gray_setup
    good = sorted(folder.iterdir())
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    truncated = truncate(write_png(tmp_path / "truncated.png", gray8(64, 64, seed=9)), keep=0.5)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    two_channel = write_tiff(tmp_path / "two_channel.tif", np.zeros((2, 32, 32), np.uint8), planarconfig="separate",
                             photometric="minisblack")
    paths = [good[0], corrupt, good[1], truncated, empty, two_channel, good[2]]
    rc, lines, err = run_scanner(scanner, "--model", exported, "--batch-size", "4", *paths)
    assert rc == 1, err
    assert [Path(line["path"]).name for line in lines] == [p.name for p in paths]  # input order kept
    errors = {Path(line["path"]).name: line["error"] for line in lines if "error" in line}
    assert set(errors) == {"corrupt.png", "truncated.png", "empty.tif", "two_channel.tif"}
    assert "channels" in errors["two_channel.tif"]
    _, want = skipgan_score(model, good[0], good[1], good[2])
    assert_same_results([line for line in lines if "score" in line], want)
    assert "could not be scored" in err


def test_stdin_mode_scores_paths_as_they_arrive(scanner, gray_setup):
    model, exported, folder = gray_setup
    paths = sorted(folder.iterdir())
    stdin = "".join(f"{p}\n" for p in paths) + "\n"  # a blank line is ignored
    rc, lines, err = run_scanner(scanner, "--model", exported, "--batch-size", "64", "--flush-ms", "20", "-",
                                 stdin=stdin)
    assert rc == 0, err
    _, want = skipgan_score(model, *paths)
    assert_same_results(lines, want)


def test_stdin_partial_batch_is_flushed_before_input_ends(scanner, gray_setup):
    """A scanner feeding frames: the result of a lone image comes out while stdin is still open."""
    _, exported, folder = gray_setup
    first = sorted(folder.iterdir())[0]
    proc = subprocess.Popen([scanner, "--model", str(exported), "--batch-size", "64", "--flush-ms", "20", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(f"{first}\n")
        proc.stdin.flush()
        line = json.loads(proc.stdout.readline())  # blocks until the partial batch was flushed and scored
        assert line["path"] == str(first) and "score" in line
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_threshold_override(scanner, rgb_setup):
    _, exported, folder = rgb_setup
    rc, lines, _ = run_scanner(scanner, "--model", exported, "--threshold", "-1e9", folder)
    assert rc == 0 and {line["verdict"] for line in lines} == {"abnormal"}
    rc, lines, _ = run_scanner(scanner, "--model", exported, "--threshold", "1e9", folder)
    assert rc == 0 and {line["verdict"] for line in lines} == {"normal"}


@pytest.mark.parametrize("args, message", [
    ([], "--model"),
    (["--model", "{m}"], "no images"),
    (["--model", "{d}/missing.pt", "{d}"], "missing.pt"),
    (["--model", "{d}/bad.pt", "{d}"], "bad.pt"),
    (["--model", "{m}", "--batch-size", "0", "{d}"], "--batch-size"),
    (["--model", "{m}", "--device", "tpu", "{d}"], "--device"),
    (["--model", "{m}", "--bogus", "{d}"], "--bogus"),
    (["--model", "{m}", "--max-pixels", "0", "{d}"], "--max-pixels 0"),
    (["--model", "{m}", "--max-bytes", "1e9", "{d}"], "--max-bytes 1e9"),
    (["--model", "{m}", "{d}/nothing_here"], "nothing_here"),
])
def test_usage_and_model_errors_exit_2(scanner, rgb_setup, tmp_path, args, message):
    _, exported, folder = rgb_setup
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    args = [a.format(m=exported, d=tmp_path if "bad" in a or "missing" in a or "nothing" in a else folder)
            for a in args]
    rc, lines, err = run_scanner(scanner, *args)
    assert rc == 2 and not lines
    assert err.startswith("skipgan_scanner: error:") and message in err and len(err.strip().splitlines()) == 1, err


def test_help_exits_0(scanner):
    r = subprocess.run([scanner, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Exit codes" in r.stdout


def test_aoti_package_in_the_scanner(scanner, rgb_setup, tmp_path):
    """The scanner loads an AOTInductor .pt2 too; images of another sample type are error lines naming the fix."""
    model, _, folder = rgb_setup
    loaded, meta = load_model(model)
    pt2 = tmp_path / "m.pt2"
    export_model(loaded, meta, "aoti", pt2, max_batch=8, verify=False)
    rc, lines, err = run_scanner(scanner, "--model", pt2, "--batch-size", "2", folder)
    by_name = {Path(line["path"]).name: line for line in lines}
    assert rc == 1, err  # the 16-bit TIFFs: this package takes uint8
    assert "--input-dtype uint16" in by_name["b_rgb16.tif"]["error"]
    _, want = skipgan_score(model, *(folder / n for n in ("a_rgb8.png", "d_gray_to_rgb.png", "e_rgba.png")))
    assert_same_results([line for line in lines if "score" in line and "gray" not in line["path"]],
                        [w for w in want if "gray" not in w["path"]])
    assert "channels" in by_name["d_gray_to_rgb.png"]["error"]  # a .pt2 takes exactly the model's channels


def test_a_file_exported_for_another_device_is_refused_at_load(scanner, rgb_setup, tmp_path):
    """The device contract: a CPU TorchScript file (the CPU's GEMM form: no CUDA kernel for its col2im op) with
    --device cuda is exit 2 and one line naming the export flag, before any CUDA call (there is no GPU here: the
    scanner read the file's device first); a file that states cuda is refused on the CPU the same way."""
    _, exported, folder = rgb_setup
    rc, lines, err = run_scanner(scanner, "--model", exported, "--device", "cuda", folder)
    assert rc == 2 and not lines, err
    assert "exported for cpu" in err and "`skipgan export --device cuda`" in err, err
    assert err.startswith("skipgan_scanner: error:") and len(err.strip().splitlines()) == 1, err
    cuda_file = export_claiming_device(exported, "cuda", tmp_path / "cuda.pt")
    rc, lines, err = run_scanner(scanner, "--model", cuda_file, "--device", "cpu", folder)
    assert rc == 2 and not lines and "exported for cuda" in err and "--device cpu" in err, err


@pytest.fixture(scope="module")
def int8_export(gray_setup, tmp_path_factory):
    """An int8 model file (1 channel, 3 probes, margin 1) and its TorchScript export (the int8 engine's layers)."""
    root = tmp_path_factory.mktemp("int8")
    path = root / "q.safetensors"
    save_model(path, make_int8(nc=1, probes=3, margin=1), CAL)
    loaded, meta = load_model(path)
    export_model(loaded, meta, "torchscript", root / "q.pt", verify=False)
    return path, root / "q.pt", gray_setup[2]


def test_int8_torchscript_in_the_scanner(scanner, int8_export):
    """The scanner scores an int8 export as the int8 reference does (`skipgan score --engine eager` of the int8
    file), within the exports' int8 tolerance (skipgan.export.TOLERANCE)."""
    from skipgan.export import TOLERANCE
    from skipgan.export.pipeline import u8s8_products_exact

    if not u8s8_products_exact():
        pytest.skip("u8s8 products saturate on this CPU (the refusal is tested below)")
    model, exported, folder = int8_export
    rc, got, err = run_scanner(scanner, "--model", exported, "--batch-size", "3", folder)
    assert rc == 0, err
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["score", str(model), str(folder), "--engine", "eager"]) == 0
    want = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    assert [g["path"] for g in got] == [w["path"] for w in want]
    top = max(abs(w["score"]) for w in want)
    for g, w in zip(got, want):
        assert abs(g["score"] - w["score"]) < TOLERANCE["int8"] * top, g["path"]


def test_int8_torchscript_refused_at_load_where_u8s8_products_saturate(scanner, int8_export):
    """With oneDNN held below VNNI (its u8s8 kernels then sum in saturating int16) the file's own check refuses it
    at load: exit 2, one line saying why and what to use instead, no result lines."""
    _, exported, folder = int8_export
    r = subprocess.run([scanner, "--model", str(exported), str(folder)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert r.returncode == 2 and not r.stdout.strip(), r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("skipgan_scanner: error:"), err
    assert "needs int8 dot-product instructions" in err and "ONNX int8 export" in err, err


@pytest.mark.cuda
def test_scanner_on_cuda(scanner, rgb_setup, tmp_path):
    """A CUDA export (cuDNN + epilogues) in the scanner on the GPU; without --device it runs where it was exported
    for."""
    model, _, folder = rgb_setup
    loaded, meta = load_model(model)
    exported = tmp_path / "cuda.pt"
    export_model(loaded, meta, "torchscript", exported, device="cuda", verify=False)
    _, want = skipgan_score(model, folder)
    for device in (["--device", "cuda"], []):
        rc, lines, err = run_scanner(scanner, "--model", exported, *device, "--batch-size", "4", folder)
        assert rc == 0, err
        assert_same_results(lines, want)


def test_readme_cpp_example_scores_one_image(cmake_build, gray_setup):
    """scanner/score_one.cpp, the README's 15-line example, builds and prints the scanner's score."""
    _, exported, folder = gray_setup
    image = sorted(folder.iterdir())[0]
    r = subprocess.run([os.path.join(cmake_build, "scanner", "skipgan_score_one"), str(exported), str(image)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _, want = skipgan_score(folder.parent / "nc1.safetensors", image)
    score = float(r.stdout.split("score ")[1].split(",")[0])
    assert score == pytest.approx(want[0]["score"], rel=1e-4) and want[0]["verdict"] in r.stdout


# ------------------------------------------------------------------------------------------ regions
def regions_model(root: Path, how: str, folder: Path, relative_sigma: float = 0.0) -> Path:
    """A 1-channel model scoring by `how` whose calibration flags about half of `folder`'s images and whose map
    threshold lies at the 90th percentile of their maps: flagged images with regions of various sizes
    (relative_sigma: the knn map's setting)."""
    from skipgan.anomaly_map import MapSettings, image_scores, model_maps
    from skipgan.data.images import read_image, to_tensor
    from skipgan.engine import Screener
    from skipgan.model.patch_knn import KnnSettings, PatchKnn
    from skipgan.modelfile import scoring_metadata

    model = make(nc=1, probes=2, margin=1)
    normals = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    model.knn = PatchKnn.fit(model, normals, KnnSettings(memory_size=300, intensity_memory=400,
                                                         relative_sigma=relative_sigma))
    x = torch.stack([to_tensor(read_image(p), 32, channels=1) for p in sorted(folder.iterdir())])
    res = Screener.from_model(model, max_batch=8).score(x, error_map=True)
    base = {"sigma": 1.0, "topk_percent": 1.0, "mean": 0.0, "std": 1.0, "knn_mean": 0.0, "knn_std": 1.0}
    maps = model_maps(res, how, MapSettings(**base, margin=1))
    scale = float(np.quantile(maps, 0.9))
    amap = {**base, "threshold": scale, "knn_threshold": scale}
    scores = image_scores(res, how, MapSettings(**amap, margin=1), maps)
    cal = {**CAL, "threshold": float(np.median(scores)), "val_stats": {"mean": 0.0, "std": 1.0, "n": 10}}
    path = root / f"{how}.safetensors"
    save_model(path, model, cal, scoring_metadata(how, {how: cal}, amap))
    return path


@pytest.mark.parametrize("how,fmt,relative", [("max", "torchscript", 0.0), ("max", "aoti", 0.0),
                                              ("knn", "torchscript", 0.0), ("knn", "aoti", 0.0),
                                              ("knn", "torchscript", 4.0)])
def test_regions_equal_skipgan_score(scanner, gray_setup, tmp_path, how, fmt, relative):
    """A flagged image's line lists the same regions in the scanner as in `skipgan score` (boxes in the image's own
    pixels, areas, peaks, means), unflagged lines none; --max-regions caps both, 0 turns them off. A .pt2 has maps
    only when exported with --maps. relative: the knn map's pixel patches less their local mean."""
    _, _, folder = gray_setup
    if fmt == "aoti":  # one sample type and channel count per package: the 8-bit gray images
        folder8 = tmp_path / "images8"
        folder8.mkdir()
        for name in ("a_png8.png", "c_tif8.tif", "g_png8_same.png"):
            (folder8 / name).write_bytes((folder / name).read_bytes())
        folder = folder8
    model = regions_model(tmp_path, how, folder, relative)
    loaded, meta = load_model(model)
    out = tmp_path / ("m.pt" if fmt == "torchscript" else "m.pt2")
    export_model(loaded, meta, fmt, out, max_batch=8, maps=fmt == "aoti")
    for cap in ("10", "2"):
        rc, got, err = run_scanner(scanner, "--model", out, "--batch-size", "3", "--max-regions", cap, folder)
        assert rc == 0, err
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["score", str(model), str(folder), "--device", "cpu", "--max-regions", cap]) == 0
        want = [json.loads(line) for line in buf.getvalue().splitlines()]
        assert [g["verdict"] for g in got] == [w["verdict"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], rel=1e-4, abs=1e-6)
        flagged = [w for w in want if w["verdict"] == "abnormal"]
        assert flagged
        for g, w in zip(got, want):
            assert ("regions" in g) == ("regions" in w) == (w["verdict"] == "abnormal"), w["path"]
            if "regions" not in w:
                continue
            assert 1 <= len(w["regions"]) <= int(cap)
            assert [r["bbox"] for r in g["regions"]] == [r["bbox"] for r in w["regions"]], w["path"]
            assert [r["area"] for r in g["regions"]] == [r["area"] for r in w["regions"]], w["path"]
            for key in ("peak", "mean"):
                assert [r[key] for r in g["regions"]] == pytest.approx([r[key] for r in w["regions"]], rel=1e-4)
    rc, got, _ = run_scanner(scanner, "--model", out, "--max-regions", "0", folder)
    assert rc == 0 and not any("regions" in g for g in got)


@pytest.mark.parametrize("how", ["max", "knn"])
def test_scanner_maps_are_skipgan_scores_pixels(scanner, gray_setup, tmp_path, how):
    """--maps DIR writes, for flagged images (all with --maps-for all), the overlay and --raw-maps png16 the 16-bit
    map that `skipgan score --maps` writes, under the same relative names, pixel for pixel (one step where the
    export's map and the engine's part by float rounding across a quantisation step); a line names its overlay."""
    from PIL import Image

    _, _, folder = gray_setup
    model = regions_model(tmp_path, how, folder)
    loaded, meta = load_model(model)
    pt = tmp_path / "m.pt"
    export_model(loaded, meta, "torchscript", pt, max_batch=8)
    want_dir, got_dir = tmp_path / "py", tmp_path / "cpp"
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["score", str(model), str(folder), "--device", "cpu", "--maps", str(want_dir),
                     "--raw-maps", "png16"]) == 0
    want = [json.loads(line) for line in buf.getvalue().splitlines()]
    rc, got, err = run_scanner(scanner, "--model", pt, "--batch-size", "3", "--maps", got_dir, "--raw-maps", "png16",
                               folder)
    assert rc == 0, err
    assert [g["verdict"] for g in got] == [w["verdict"] for w in want]
    assert any(g["verdict"] == "normal" for g in got) and any(g["verdict"] == "abnormal" for g in got)
    for g, w in zip(got, want):
        if g["verdict"] == "normal":
            assert "map" not in g
            continue
        rel = Path(g["map"]).relative_to(got_dir)
        assert rel == Path(w["map"]).relative_to(want_dir)
        for suffix in ("", "raw"):
            gp = Path(g["map"]) if not suffix else Path(g["map"][: -len(".map.png")] + ".raw.png")
            wp = Path(w["map"]) if not suffix else Path(w["map"][: -len(".map.png")] + ".raw.png")
            with Image.open(gp) as a, Image.open(wp) as b:
                assert a.mode == b.mode and a.size == b.size, gp
                diff = np.abs(np.asarray(a).astype(np.int64) - np.asarray(b).astype(np.int64))
                assert diff.max() <= 1 and (diff > 0).mean() < 0.005, gp
    assert not list(got_dir.rglob("*.tmp*"))
    rc, got, _ = run_scanner(scanner, "--model", pt, "--maps", tmp_path / "all", "--maps-for", "all", folder)
    assert rc == 0 and all(Path(g["map"]).is_file() for g in got)


@pytest.mark.parametrize("args, message", [
    (["--raw-maps", "png16"], "--raw-maps: needs --maps DIR"),
    (["--maps-for", "all"], "--maps-for: needs --maps DIR"),
    (["--maps", "M", "--maps-for", "some"], "--maps-for some: expected flagged or all"),
    (["--maps", "M", "--raw-maps", "npy"], "--raw-maps npy: expected png16"),
    (["--max-regions", "-1"], "--max-regions -1: expected an integer from 0"),
])
def test_map_flag_errors_exit_2(scanner, gray_setup, tmp_path, args, message):
    _, exported, folder = gray_setup
    args = [str(tmp_path / a) if a == "M" else a for a in args]
    rc, lines, err = run_scanner(scanner, "--model", exported, *args, folder)
    assert rc == 2 and message in err and err.count("\n") == 1 and not lines


def test_maps_from_a_package_without_maps_is_refused(scanner, rgb_setup, tmp_path):
    model, _, folder = rgb_setup
    loaded, meta = load_model(model)
    pt2 = tmp_path / "m.pt2"
    export_model(loaded, meta, "aoti", pt2, max_batch=4, verify=False)
    rc, lines, err = run_scanner(scanner, "--model", pt2, "--maps", tmp_path / "maps", folder)
    assert rc == 2 and "re-export it with `skipgan export --maps`" in err and not lines
