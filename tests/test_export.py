"""`skipgan export`: every format holds the engine's pipeline with preprocessing inside, scores what the engine
scores, carries its metadata, and refuses bad arguments with a one-line error and nothing written."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from skipgan import ops
from skipgan.cli import main
from skipgan.data.images import LUMA_601, batch_to_tensor
from skipgan.engine import Screener
from skipgan.engine.fold import fold_for_scoring
from skipgan.errors import InputError
from skipgan.export import read_metadata, run_exported, torchscript
from skipgan.export.pipeline import GEMM, STANDARD, VENDOR, ScreeningPipeline
from skipgan.export.tensorrt import parser_refusals
from skipgan.export.torchscript import script
from skipgan.modelfile import load_model, save_model
from skipgan.preprocess import resize_normalise, to_model_input
from skipgan.scoring import calibration_values, verdicts

try:
    from data_fixtures import gray8, write_png
    from model_fixtures import export_claiming_device, make
except ImportError:
    from tests.data_fixtures import gray8, write_png
    from tests.model_fixtures import export_claiming_device, make

pytestmark = [pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]  # torch.jit.* deprecation notes

CAL = {"threshold": 0.5, "target_fpr": 0.05, "val_stats": {"mean": 0.4, "std": 0.2, "n": 10}}
CUDA = pytest.mark.cuda  # conftest.py: skipped without a GPU; benchmarks/gpu_check.sh fails on such a skip
STANDARD_OPS = {"Add", "Cast", "Clip", "Concat", "Conv", "ConvTranspose", "Div", "Greater", "LeakyRelu", "Mul", "Pow",
                "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Slice", "Sub", "Tanh", "Unsqueeze", "Expand",
                "Constant", "Gather", "Squeeze", "Identity", "Flatten", "Split", "Transpose", "Sqrt", "MatMul", "Range",
                "Abs", "Reciprocal"}


def model_file(tmp_path, name="m", **kw):
    model = make(**kw)
    path = tmp_path / f"{name}.safetensors"
    save_model(path, model, CAL)
    return path


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """1-channel model with 3 noise probes and a border margin."""
    return model_file(tmp_path_factory.mktemp("gray"), nc=1, probes=3, margin=1)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return model_file(tmp_path_factory.mktemp("rgb"), nc=3, probes=0)


# map settings of a trained model (calibrated numbers of the right kind; any values do for equality)
MAP_SETTINGS = {"sigma": 2.0, "topk_percent": 2.0, "mean": 0.01, "std": 0.02, "threshold": 3.0, "knn_mean": 0.5,
                "knn_std": 0.3, "knn_threshold": 2.0}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A model with a knn memory (texture and intensity parts), a calibration per aggregation and map settings, as
    `skipgan train` writes one: 1 channel, 2 probes, a border margin."""
    from skipgan.model.patch_knn import KnnSettings, PatchKnn
    from skipgan.modelfile import scoring_metadata

    model = make(nc=1, probes=2, margin=1)
    x = samples(12, 1, 32, 32, torch.float32, seed=3) * 2 - 1
    model.knn = PatchKnn.fit(model, x, KnnSettings(memory_size=300, intensity_memory=500))
    cals = {how: {**CAL, "threshold": 0.5 + i} for i, how in enumerate(("mean", "max", "topk", "knn"))}
    path = tmp_path_factory.mktemp("scored") / "m.safetensors"
    save_model(path, model, CAL, scoring_metadata("mean", cals, MAP_SETTINGS))
    return path


@pytest.fixture(scope="module")
def scored_relative(tmp_path_factory):
    """`scored`'s model with the knn map's pixel patches taken relative to their local mean (--knn-relative-sigma)."""
    from skipgan.model.patch_knn import KnnSettings, PatchKnn
    from skipgan.modelfile import scoring_metadata

    model = make(nc=1, probes=2, margin=1)
    x = samples(12, 1, 32, 32, torch.float32, seed=3) * 2 - 1
    model.knn = PatchKnn.fit(model, x, KnnSettings(memory_size=300, intensity_memory=500, relative_sigma=4.0))
    # the texture part put far below every value, so that the joined map is the intensity part's (whose patches this
    # model takes differently; on these random images the texture part would decide every maximum)
    model.knn.stats["texture"] = (1e6, 1.0)
    cals = {how: {**CAL, "threshold": 0.5 + i} for i, how in enumerate(("mean", "max", "topk", "knn"))}
    path = tmp_path_factory.mktemp("scored_relative") / "m.safetensors"
    save_model(path, model, CAL, scoring_metadata("knn", cals, MAP_SETTINGS))
    return path


def samples(n, c, h, w, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.float32:
        return torch.rand(n, c, h, w, generator=g)
    hi = 256 if dtype == torch.uint8 else 65536
    return torch.randint(0, hi, (n, c, h, w), generator=g).to(dtype)


def engine_scores(path, images, **kw):
    model, meta = load_model(path)
    arch = meta["architecture"]
    x = to_model_input(images, arch["isize"], arch["nc"])
    return Screener.from_model(model, max_batch=8, **kw).score(x, error_map=True)


def export(path, fmt, out, *extra):
    assert main(["export", str(path), "--format", fmt, "--out", str(out), *extra]) == 0
    assert out.exists()
    return out


# ------------------------------------------------------------------------------------------ preprocessing
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
@pytest.mark.parametrize("size", [(32, 32), (45, 37), (17, 90), (8, 8)])
def test_one_preprocessing_for_loaders_and_exports(dtype, size):
    s = samples(3, 3, *size, dtype)
    arr = s.numpy()
    torch.testing.assert_close(to_model_input(s, 32, 3), batch_to_tensor(arr, 32, 3), rtol=0, atol=0)
    torch.testing.assert_close(to_model_input(s, 32, 1), batch_to_tensor(arr, 32, 1), rtol=0, atol=0)


@pytest.mark.parametrize("size", [(32, 32), (45, 37), (17, 90), (8, 8), (1000, 33), (300, 1200), (16, 64)])
@pytest.mark.parametrize("isize", [32, 256])
def test_resize_by_matrices_equals_the_preprocessing(size, isize):
    """The standard-operator graphs' resize (two matrix products of the antialiased bilinear weights, which TensorRT
    parses) equals the one preprocessing (F.interpolate with antialias) within 1e-5: shrinking by up to 30x,
    enlarging, the identity, non-square."""
    unit = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(size[0] * size[1] + isize))
    torch.testing.assert_close(resize_normalise(unit, isize, matrices=True), resize_normalise(unit, isize),
                               rtol=0, atol=1e-5)


def test_luma_constant_matches_the_scripted_spelling():
    x = torch.ones(1, 3, 2, 2) * torch.tensor(LUMA_601).view(1, 3, 1, 1)
    assert float(to_model_input(x, 32, 1).add(1).div(2).mean()) == pytest.approx(sum(v * v for v in LUMA_601))


# ------------------------------------------------------------------------------------------ the pipeline
@pytest.mark.parametrize("mode", [GEMM, VENDOR, STANDARD])
@pytest.mark.parametrize("kw", [dict(nc=1, probes=0), dict(nc=3, probes=3, margin=2), dict(nc=2, masks=True),
                                dict(nc=1, isize=64, probes=2), dict(nc=1, isize=128, probes=3)])  # 128: 9 > 8-image tiles
@pytest.mark.parametrize("scripted", [False, True])
def test_pipeline_scores_equal_the_engine(mode, kw, scripted):
    """Every layer form (the CPU engine's GEMMs, vendor convolutions + epilogue, standard ops), eager and scripted."""
    model = make(**kw)
    images = samples(3, model.arch.nc, 41, 29, torch.uint8)
    net, chosen = fold_for_scoring(model)
    pipe = ScreeningPipeline(net, chosen, CAL, mode=mode).eval()
    if scripted:
        pipe = script(pipe)
    with torch.no_grad():
        s, z, v, emap = pipe.score_with_map(images)
    x = to_model_input(images, model.arch.isize, model.arch.nc)
    want = Screener.from_model(model, max_batch=4).score(x, error_map=True)
    torch.testing.assert_close(s, want.score, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(z, (want.score - 0.4) / 0.2, rtol=1e-5, atol=1e-6)
    assert torch.equal(v, want.score > 0.5)
    torch.testing.assert_close(emap, want.error_map, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernel, form", [("onednn", "dense"), ("mm", "dense"), ("onednn", "taps"), ("mm", "taps"),
                                          ("onednn", "conv")])
def test_gemm_pipeline_takes_each_plan_choice_and_scores_as_the_engine(kernel, form):
    """The GEMM form's per-layer choice from the engine's plan (dense or tap matrix, oneDNN or torch.mm, or the
    direct convolution), forced on every layer that has it, scripted: the engine's scores."""
    from skipgan.engine.layers import candidate_forms
    from skipgan.engine.plan import network_specs

    model = make(nc=1, probes=2)
    images = samples(3, 1, 32, 32, torch.uint8)
    net, chosen = fold_for_scoring(model)
    choices = {s.name: (form if form in candidate_forms(s.layer, s.size, s.fold) else "taps", kernel)
               for s in network_specs(net, 8, 8)}
    pipe = script(ScreeningPipeline(net, chosen, CAL, mode=GEMM, plan=choices).eval())
    assert pipe.encoder[0].onednn == (kernel == "onednn" and form != "conv")
    assert pipe.feature.dense == (form == "dense") and pipe.encoder[0].direct == (form == "conv")
    with torch.no_grad():
        s, _, _ = pipe(images)
    want = Screener.from_model(model, max_batch=4).score(to_model_input(images, 32, 1))
    torch.testing.assert_close(s, want.score, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------ the verdict
def test_normalised_score_and_verdict_one_definition_in_the_pipeline_and_skipgan_score(tmp_path, capsys):
    """skipgan.scoring.verdicts is what every export computes (the pipeline eager, scripted and in standard ops)
    and what `skipgan score` prints, on a calibration whose threshold splits the images (the C++ scanner prints the
    export's outputs: tests/test_scanner.py checks its lines against the same function)."""
    model = make(nc=1, probes=2)  # the model in model_file(..., nc=1, probes=2)
    files = [write_png(tmp_path / "images" / f"{i}.png", gray8(32, 32, seed=i)) for i in range(6)]
    images = torch.stack([torch.from_numpy(gray8(32, 32, seed=i))[None] for i in range(6)])
    path = model_file(tmp_path, nc=1, probes=2)
    scores = engine_scores(path, images).score
    cal = {"threshold": float(scores.median()), "target_fpr": 0.05,
           "val_stats": {"mean": float(scores.mean()), "std": float(scores.std()), "n": 6}}
    for mode, scripted in [(GEMM, False), (GEMM, True), (STANDARD, False)]:
        net, chosen = fold_for_scoring(model)
        pipe = ScreeningPipeline(net, chosen, cal, mode=mode).eval()
        with torch.no_grad():
            s, z, v = (script(pipe) if scripted else pipe)(images)
        want_z, want_v = verdicts(s, *calibration_values(cal))
        assert torch.equal(z, want_z) and torch.equal(v, want_v), (mode, scripted)
        assert 0 < int(v.sum()) < len(v)  # both verdicts occur
    save_model(path, model, cal)
    assert main(["score", str(path), str(tmp_path / "images"), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == [str(f) for f in files]
    got = torch.tensor([line["score"] for line in lines], dtype=torch.float64)
    want_z, want_v = verdicts(got, *calibration_values(cal))
    assert [line["normalised_score"] for line in lines] == want_z.tolist()
    assert [line["verdict"] for line in lines] == ["abnormal" if b else "normal" for b in want_v.tolist()]


# ------------------------------------------------------------------------------------------ TorchScript
def test_torchscript_export_scores_equal_engine(gray, tmp_path):
    out = export(gray, "torchscript", tmp_path / "m.pt")
    module = torch.jit.load(str(out))
    for dtype, size, n in [(torch.uint8, (32, 32), 4), (torch.uint16, (50, 23), 1), (torch.float32, (64, 64), 3)]:
        images = samples(n, 1, *size, dtype, seed=n)
        s, z, v = module(images)
        want = engine_scores(gray, images)
        torch.testing.assert_close(s, want.score, rtol=1e-5, atol=1e-8)
        assert v.dtype == torch.bool and torch.equal(v, s > CAL["threshold"])
        torch.testing.assert_close(module.score_with_map(images)[3], want.error_map, rtol=1e-4, atol=1e-6)
    # 1 -> N channels as the loaders convert them; other channel counts are refused with the reason
    with pytest.raises(Exception, match="channels"):
        module(samples(1, 2, 32, 32, torch.uint8))
    meta = read_metadata(out)
    for key in ("format_version", "isize", "channels", "normalisation", "lam", "score_margin", "probes", "threshold",
                "val_stats"):
        assert key in meta, key
    assert (meta["isize"], meta["channels"], meta["probes"], meta["score_margin"]) == (32, 1, 3, 1)
    assert meta["threshold"] == CAL["threshold"] and meta["val_stats"] == CAL["val_stats"]
    # the engine's plan measured on this machine, stated in the file (CPU, how it was chosen, each layer's choice)
    assert meta["plan"]["mode"] == "tuned" and meta["plan"]["cpu"] and "enc0" in meta["plan"]["choices"]


def test_torchscript_file_states_its_device_and_runs_only_there(gray, tmp_path):
    """The device contract: a CPU export holds the CPU's GEMM form (its col2im op has no CUDA kernel), so loading it
    for CUDA is ONE clear error at load, naming the export flag, before any CUDA call (none is possible here); a
    file stating cuda is refused on the CPU the same way, and its metadata reads without loading it."""
    out = export(gray, "torchscript", tmp_path / "m.pt", "--no-verify")
    assert read_metadata(out)["device"] == "cpu"
    images = samples(2, 1, 32, 32, torch.uint8)
    with pytest.raises(InputError, match=r"exported for cpu .*re-export it with `skipgan export --device cuda`"):
        torchscript.load(out, "cuda")
    with pytest.raises(InputError, match=r"exported for cpu .*`skipgan export --device cuda`"):
        run_exported("torchscript", out, images, "cuda")
    cuda_file = export_claiming_device(out, "cuda", tmp_path / "cuda.pt")
    assert read_metadata(cuda_file)["device"] == "cuda"
    with pytest.raises(InputError, match=r"exported for cuda .*`skipgan export --device cpu`"):
        run_exported("torchscript", cuda_file, images, "cpu")
    assert run_exported("torchscript", out, images, "cpu")[0].shape == (2,)


def test_torchscript_loads_in_a_fresh_process_after_import_skipgan(rgb, tmp_path):
    out = export(rgb, "torchscript", tmp_path / "m.pt", "--no-verify")
    code = ("import warnings; warnings.simplefilter('ignore'); import torch, skipgan; "
            f"m = torch.jit.load({str(out)!r}); "
            "print(m(torch.full((2, 3, 40, 30), 128, dtype=torch.uint8))[0].tolist())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = torch.tensor(json.loads(r.stdout.strip().splitlines()[-1]))
    want = engine_scores(rgb, torch.full((2, 3, 40, 30), 128, dtype=torch.uint8)).score
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------------ ONNX
def test_onnx_standard_ops_dynamic_batch_metadata_and_scores(gray, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = export(gray, "onnx", tmp_path / "m.onnx", "--error-map")
    assert not [w for w in caught if "training mode" in str(w.message)]  # the error-map wrapper is in eval mode
    proto = onnx.load(str(out))
    ops_used = {n.op_type for n in proto.graph.node}
    assert ops_used <= STANDARD_OPS, ops_used - STANDARD_OPS
    assert {"Conv", "ConvTranspose", "LeakyRelu", "Relu", "Tanh", "MatMul", "ReduceMean"} <= ops_used
    assert all(o.domain in ("", "ai.onnx") for o in proto.opset_import if o.version) and \
        max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch
    assert [o.name for o in proto.graph.output] == ["scores", "normalised", "verdicts", "error_map"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["skipgan"])["channels"] == 1 and props["isize"] == "32"
    for n, size in [(1, (32, 32)), (5, (70, 41))]:
        images = samples(n, 1, *size, torch.uint8, seed=n)
        s, z, v, emap = run_exported("onnx", out, images)
        want = engine_scores(gray, images)
        torch.testing.assert_close(s, want.score, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(emap, want.error_map, rtol=1e-3, atol=1e-6)
        assert torch.equal(v, s > CAL["threshold"])


@pytest.mark.parametrize("size", [(32, 32), (20, 27), (70, 45)])
def test_onnx_scores_equal_in_openvino(rgb, tmp_path, size):
    """Images at isize, smaller and larger: the graph resizes by matrix products (OpenVINO 2026.4 ran an antialiased
    Resize without its antialias attribute, so larger images scored differently there before)."""
    pytest.importorskip("onnx")
    ov = pytest.importorskip("openvino")
    out = export(rgb, "onnx", tmp_path / "m.onnx", "--no-verify")
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    images = samples(3, 3, *size, torch.uint8)
    got = torch.from_numpy(compiled(images.numpy())[0])
    torch.testing.assert_close(got, engine_scores(rgb, images).score, rtol=1e-4, atol=1e-7)


def test_onnx_fp16_graph_is_valid_and_fp16_typed(rgb, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = export(rgb, "onnx", tmp_path / "m16.onnx", "--dtype", "fp16", "--no-verify")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    types = {i.name: i.data_type for i in proto.graph.initializer}
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights if w in types)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # scores stay fp32
    ort = pytest.importorskip("onnxruntime")
    try:
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    except Exception as e:  # some CPU builds lack fp16 kernels for these ops: the graph itself was checked above
        pytest.skip(f"onnxruntime cannot run this fp16 graph on CPU: {e}")
    images = samples(2, 3, 32, 32, torch.uint8)
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    torch.testing.assert_close(got, engine_scores(rgb, images).score, rtol=2e-2, atol=1e-4)


# ------------------------------------------------------------------------------------------ TensorRT's parser
# ------------------------------------------------------------------------------------------ the model's own score
@pytest.mark.parametrize("fmt", ["torchscript", "aoti", "onnx"])
@pytest.mark.parametrize("how", ["mean", "max", "topk", "knn"])
def test_every_aggregation_and_its_map_in_every_format_equal_skipgan_score(scored, fmt, how, tmp_path):
    """Each aggregation × TorchScript / AOTInductor / ONNX (in ONNX Runtime): the file computes the model's score
    (max, topk: the smoothed, normalised error map; knn: the knn map's search against the memories carried in the
    file), its calibrated verdict and, with --maps, the anomaly map, equal to what `skipgan score` computes from the
    fp32 engine within 1e-4."""
    _export_equals_skipgan_score(scored, fmt, how, tmp_path)


@pytest.mark.parametrize("fmt", ["torchscript", "aoti", "onnx"])
def test_relative_pixel_patches_reach_every_format(scored_relative, fmt, tmp_path):
    """The knn map with --knn-relative-sigma (its local mean: a reflected border and a Gaussian per channel) is the
    engine's in every format, and differs from the absolute patches' map (the setting is not lost on the way)."""
    import dataclasses

    from skipgan.anomaly_map import model_maps
    from skipgan.model.patch_knn import PatchKnn
    from skipgan.modelfile import scoring_choice

    amap = _export_equals_skipgan_score(scored_relative, fmt, "knn", tmp_path)
    model, meta = load_model(scored_relative)
    k = model.knn
    model.knn = PatchKnn(k.memory, dataclasses.replace(k.settings, relative_sigma=0.0), k.intensity, k.stats,
                         k.whitening)
    x = to_model_input(samples(3, 1, 45, 37, torch.uint8, seed=7), 32, 1)
    absolute = model_maps(Screener.from_model(model, max_batch=8).score(x, error_map=True), "knn",
                          scoring_choice(meta, "knn", scored_relative)[2])
    assert float((amap - torch.from_numpy(absolute)).abs().max()) > 0.5  # a lost setting: equal maps


def _export_equals_skipgan_score(path, fmt, how, tmp_path):
    from skipgan.anomaly_map import image_scores, model_maps
    from skipgan.modelfile import scoring_choice

    scored = path
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    out = export(scored, fmt, tmp_path / f"m{ {'torchscript': '.pt', 'aoti': '.pt2', 'onnx': '.onnx'}[fmt]}",
                 "--aggregation", how, "--maps", "--max-batch", "4")
    meta = read_metadata(out)
    assert meta["aggregation"] == how and meta["outputs"][3] == "anomaly_map"
    assert meta["anomaly_map"]["kind"] == ("knn" if how == "knn" else "error")
    images = samples(3, 1, 45, 37, torch.uint8, seed=7)
    s, z, v, amap = run_exported(fmt, out, images, torchscript_map="anomaly")
    model, mmeta = load_model(scored)
    _, cal, settings = scoring_choice(mmeta, how, scored)
    res = engine_scores(scored, images)
    want_maps = torch.from_numpy(model_maps(res, how, settings))
    want = torch.from_numpy(image_scores(res, how, settings, want_maps.numpy())).float()
    torch.testing.assert_close(s, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(amap, want_maps, rtol=1e-4, atol=1e-4)
    zw, vw = verdicts(want, *calibration_values(cal))
    torch.testing.assert_close(z, zw, rtol=1e-4, atol=1e-4)
    assert torch.equal(v, vw)
    return amap


def test_torchscript_knn_search_in_blocks_equals_the_unblocked_graph(scored):
    """TorchScript searches the memories with the native op in query blocks, torch.export's graphs with a fixed
    top-k in one: the same exact distances (their sums rounded in another order)."""
    from skipgan.export.pipeline import build_pipeline
    from skipgan.modelfile import scoring_choice

    model, meta = load_model(scored)
    _, cal, settings = scoring_choice(meta, "knn", scored)
    images = samples(5, 1, 32, 32, torch.uint8, seed=2)
    got = [script(build_pipeline(model, cal, native=True, aggregation="knn", map_settings=settings,
                                 query_block=q)).score_with_anomaly_map(images) for q in (7, 0)]
    torch.testing.assert_close(got[0][3], got[1][3], rtol=1e-5, atol=1e-5)


def test_maps_and_error_map_together_are_refused(scored, tmp_path, capsys):
    assert main(["export", str(scored), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--maps",
                 "--error-map"]) == 2
    assert "--maps and --error-map: choose one" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("setup, extra", [("gray", ["--error-map"]), ("rgb", ["--dtype", "fp16"]),
                                          ("scored", ["--maps", "--aggregation", "knn"]),
                                          ("scored", ["--maps", "--aggregation", "topk"]),
                                          ("scored_relative", ["--maps", "--aggregation", "knn"])])
def test_onnx_graph_is_what_tensorrts_parser_accepts(setup, extra, tmp_path, request):
    """The graph TensorRT builds from (the --format onnx export) holds no operator, attribute or input that
    onnx-tensorrt's checks refuse (skipgan.export.tensorrt.parser_refusals, from the parser's source): no
    antialiased Resize, which the parser refused in every earlier export. A control: an antialiased resize is
    refused."""
    onnx = pytest.importorskip("onnx")
    out = export(request.getfixturevalue(setup), "onnx", tmp_path / "m.onnx", "--no-verify", *extra)
    proto = onnx.load(str(out))
    assert parser_refusals(proto) == []
    if "knn" not in extra:  # the knn map's bilinear upsampling is a Resize, not antialiased: the parser takes it
        assert "Resize" not in {n.op_type for n in proto.graph.node}

    class Antialiased(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, size=[8, 8], mode="bilinear", antialias=True)

    control = torch.onnx.export(Antialiased().eval(), (torch.rand(1, 1, 16, 16),), dynamo=True,
                                opset_version=18).model_proto
    assert any("antialias" in r for r in parser_refusals(control))


def test_tensorrt_build_turns_tf32_off_for_fp32(tmp_path, monkeypatch):
    """fp32 means fp32 in the TensorRT engine too: the builder's TF32 flag (on by default) is cleared, and set only
    for --dtype tf32 (a stand-in for the tensorrt module records the calls: the build itself needs a GPU)."""
    from unittest import mock

    from skipgan.export import tensorrt

    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    graph = h.make_graph([h.make_node("Relu", ["images"], ["scores"])], "g",
                         [h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1])],
                         [h.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1])])
    onnx.save(h.make_model(graph), str(tmp_path / "m.onnx"))
    for dtype in ("fp32", "tf32", "fp16"):
        trt = mock.MagicMock()
        trt.Builder.return_value.build_serialized_network.return_value = b"plan"
        monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: trt)
        tensorrt.build_engine(tmp_path / "m.onnx", tmp_path / f"{dtype}.engine", {"dtype": dtype}, channels=1,
                              height=32, width=32, min_batch=1, opt_batch=2, max_batch=2, workspace_mib=64)
        config = trt.Builder.return_value.create_builder_config.return_value
        flag = config.set_flag if dtype == "tf32" else config.clear_flag
        flag.assert_called_once_with(trt.BuilderFlag.TF32)
        assert (tmp_path / f"{dtype}.engine").read_bytes() == b"plan"


# ------------------------------------------------------------------------------------------ AOTInductor
def test_aoti_package_scores_equal_engine(gray, tmp_path):
    out = export(gray, "aoti", tmp_path / "m.pt2", "--max-batch", "8", "--input-dtype", "uint16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch._inductor.aoti_load_package(str(out))
    for n, size in [(1, (32, 32)), (3, (33, 80)), (8, (40, 40))]:  # up to --max-batch: no hidden shape guard
        images = samples(n, 1, *size, torch.uint16, seed=n)
        s, z, v = compiled(images)
        torch.testing.assert_close(s, engine_scores(gray, images).score, rtol=1e-5, atol=1e-8)
    meta = read_metadata(out)
    assert meta["export_format"] == "aoti" and meta["input"]["dtype"] == "uint16" and meta["max_batch"] == 8
    assert meta["device"] == "cpu"  # the device contract: refused elsewhere, at load, naming the export flag
    with pytest.raises(InputError, match=r"exported for cpu .*`skipgan export --device cuda`"):
        run_exported("aoti", out, samples(1, 1, 32, 32, torch.uint16), "cuda")


# ------------------------------------------------------------------------------------------ TensorRT
def test_tensorrt_without_tensorrt_or_gpu_is_a_clear_error(rgb, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        if torch.cuda.is_available():
            pytest.skip("tensorrt and a GPU are here: test_tensorrt_engine_matches covers the real build")
    except ImportError:
        pass
    out = tmp_path / "m.engine"
    assert main(["export", str(rgb), "--format", "tensorrt", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--format tensorrt" in err and ("tensorrt" in err.lower()) and len(err.strip().splitlines()) == 1
    assert not out.exists()


@CUDA  # gpu_check.sh deselects it where tensorrt is not installed (and says so)
def test_tensorrt_engine_matches(rgb, tmp_path):
    trt = pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    out = export(rgb, "tensorrt", tmp_path / "m.engine", "--dtype", "fp16", "--device", "cuda", "--max-batch", "8",
                 "--input-size", "32x32", "--no-verify")
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(out.read_bytes())
    context = engine.create_execution_context()
    images = samples(4, 3, 32, 32, torch.uint8).cuda()
    context.set_input_shape("images", tuple(images.shape))
    outs = {n: torch.empty(4, dtype=torch.float32 if n != "verdicts" else torch.bool, device="cuda")
            for n in ("scores", "normalised", "verdicts")}
    context.set_tensor_address("images", images.data_ptr())
    for n, t in outs.items():
        context.set_tensor_address(n, t.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(outs["scores"].cpu(), engine_scores(rgb, images.cpu()).score, rtol=2e-2, atol=1e-4)
    assert json.loads((tmp_path / "m.engine.json").read_text())["dtype"] == "fp16"


@CUDA  # gpu_check.sh deselects it where tensorrt is not installed (and says so)
@pytest.mark.parametrize("how", ["topk", "knn"])
def test_tensorrt_engine_of_the_models_own_score_and_map(scored, tmp_path, how):
    """A topk or knn model's TensorRT engine (fp32, --maps): its scores and anomaly maps are `skipgan score`'s."""
    from skipgan.anomaly_map import image_scores, model_maps
    from skipgan.modelfile import scoring_choice

    trt = pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    out = export(scored, "tensorrt", tmp_path / "m.engine", "--aggregation", how, "--maps", "--device", "cuda",
                 "--max-batch", "8", "--input-size", "32x32", "--no-verify")
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(out.read_bytes())
    context = engine.create_execution_context()
    images = samples(4, 1, 32, 32, torch.uint8, seed=9).cuda()
    context.set_input_shape("images", tuple(images.shape))
    outs = {"scores": torch.empty(4, device="cuda"), "normalised": torch.empty(4, device="cuda"),
            "verdicts": torch.empty(4, dtype=torch.bool, device="cuda"), "anomaly_map": torch.empty(4, 32, 32,
                                                                                                   device="cuda")}
    context.set_tensor_address("images", images.data_ptr())
    for n, t in outs.items():
        context.set_tensor_address(n, t.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    _, meta = load_model(scored)
    _, _, settings = scoring_choice(meta, how, scored)
    res = engine_scores(scored, images.cpu())
    want_maps = torch.from_numpy(model_maps(res, how, settings))
    want = torch.from_numpy(image_scores(res, how, settings, want_maps.numpy())).float()
    torch.testing.assert_close(outs["scores"].cpu(), want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(outs["anomaly_map"].cpu(), want_maps, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args, flag", [
    (["--format", "onnx", "--out", "{d}/m.pt"], "--out"),
    (["--format", "onnx", "--dtype", "bf16", "--out", "{d}/m.onnx"], "--dtype bf16"),
    (["--format", "torchscript", "--dtype", "fp16", "--out", "{d}/m.pt"], "--dtype"),
    (["--format", "torchscript", "--dtype", "tf32", "--out", "{d}/m.pt"], "--dtype tf32"),  # a CUDA precision
    (["--format", "onnx", "--dtype", "tf32", "--out", "{d}/m.onnx"], "--dtype tf32"),
    (["--format", "torchscript", "--device", "tpu", "--out", "{d}/m.pt"], "--device"),
    (["--format", "aoti", "--max-batch", "1", "--out", "{d}/m.pt2"], "--max-batch"),
    (["--format", "torchscript", "--probes", "9", "--out", "{d}/m.pt"], "--probes"),
    (["--format", "tensorrt", "--input-size", "big", "--out", "{d}/m.engine"], "--input-size"),
    (["--format", "tensorrt", "--min-batch", "9", "--max-batch", "4", "--out", "{d}/m.engine"], "--min-batch"),
])
def test_bad_arguments_are_one_line_errors_and_write_nothing(gray, tmp_path, capsys, args, flag):
    args = [a.format(d=tmp_path) for a in args]
    assert main(["export", str(gray), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_cuda_export_without_gpu_is_a_clear_error(gray, tmp_path, capsys):
    assert main(["export", str(gray), "--format", "torchscript", "--device", "cuda", "--out",
                 str(tmp_path / "m.pt")]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_missing_or_foreign_model_file(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.safetensors"), "--format", "onnx", "--out",
                 str(tmp_path / "m.onnx")]) == 2
    (tmp_path / "x.onnx").write_bytes(b"\0")
    with pytest.raises(Exception):
        read_metadata(tmp_path / "x.onnx")
    assert "none.safetensors" in capsys.readouterr().err


def test_export_metadata_values_are_what_the_model_holds(gray, tmp_path):
    out = export(gray, "torchscript", tmp_path / "m.pt", "--probes", "2", "--no-verify")
    meta = read_metadata(out)
    model, file_meta = load_model(gray)
    assert meta["probes"] == 2 and meta["lam"] == file_meta["lam"] and meta["normalisation"] == file_meta["normalisation"]
    assert np.isclose(meta["val_stats"]["std"], 0.2)


# ------------------------------------------------------------------------------------------ on a GPU


@CUDA
@pytest.mark.parametrize("fmt, suffix", [("torchscript", ".pt"), ("aoti", ".pt2")])
@pytest.mark.parametrize("dtype, rtol", [("fp32", 1e-4), ("tf32", 1e-2), ("fp16", 2e-2), ("bf16", 5e-2)])
def test_cuda_exports_score_as_the_engine(gray, tmp_path, fmt, suffix, dtype, rtol):
    out = export(gray, fmt, tmp_path / f"m{suffix}", "--device", "cuda", "--dtype", dtype, "--max-batch", "8")
    images = samples(5, 1, 48, 40, torch.uint8)
    got = run_exported(fmt, out, images.cuda(), "cuda")
    want = engine_scores(gray, images)
    torch.testing.assert_close(got[0], want.score, rtol=rtol, atol=1e-5)
    assert read_metadata(out)["device"] == "cuda"


@CUDA
def test_cuda_torchscript_export_refused_on_the_cpu(gray, tmp_path):
    out = export(gray, "torchscript", tmp_path / "m.pt", "--device", "cuda", "--no-verify")
    with pytest.raises(InputError, match=r"exported for cuda .*`skipgan export --device cpu`"):
        run_exported("torchscript", out, samples(1, 1, 32, 32, torch.uint8), "cpu")
