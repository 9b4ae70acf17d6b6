"""`skipgan export` of an int8 model file: TorchScript with the int8 engine's layers (oneDNN u8s8 products) and ONNX
with QuantizeLinear/DequantizeLinear operators, each scoring as the int8 reference (skipgan/quant/int8.py) and as
each other, within the stated tolerance (skipgan.export.TOLERANCE["int8"]); a TorchScript int8 file refuses a CPU
whose u8s8 products would saturate. Also in CI's ISA-restricted runs (.ci/run): there the TorchScript checks turn
into the refusal's."""

import json
import os
import subprocess
import sys

import pytest
import torch

from skipgan import ops
from skipgan.cli import main
from skipgan.export import TOLERANCE, read_metadata, reference_outputs, run_exported
from skipgan.export.pipeline import build_pipeline, u8s8_products_exact
from skipgan.export.torchscript import script
from skipgan.model import score_in_batches
from skipgan.modelfile import load_model, save_model
from skipgan.quant import quantized
from skipgan.quant.int8 import conv_layers

try:
    from model_fixtures import make_int8
except ImportError:
    from tests.model_fixtures import make_int8

pytestmark = [pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]  # torch.jit.* deprecation notes

CAL = {"threshold": 0.5, "target_fpr": 0.05, "val_stats": {"mean": 0.4, "std": 0.2, "n": 10}}
EXACT = u8s8_products_exact()  # False under CI's ONEDNN_MAX_CPU_ISA restrictions below VNNI
REFUSAL = "an int8 TorchScript file needs int8 dot-product instructions"


def int8_file(root, name="q", **kw):
    path = root / f"{name}.safetensors"
    save_model(path, make_int8(**kw), CAL)
    return path


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    return int8_file(tmp_path_factory.mktemp("gray8"), nc=1, probes=2, margin=1)


def images(n, nc, h, w, seed=0):
    return torch.randint(0, 256, (n, nc, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def rel(a, b):
    return float((a.float() - b).abs().max() / b.abs().max())


def export(path, fmt, out, *extra):
    assert main(["export", str(path), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


# ------------------------------------------------------------------------------------------- the pipeline
@pytest.mark.parametrize("native", [True, False], ids=["gemm", "standard"])
@pytest.mark.parametrize("nc,probes,negative_bn", [(1, 2, False), (3, 0, True)])
def test_int8_pipeline_computes_the_int8_reference(native, nc, probes, negative_bn):
    """x̂ of both int8 forms follows the reference's int8 semantics, far closer to it than to fp32, and the scores
    agree within the export tolerance; the scripted GEMM form equals the eager one."""
    if native and not EXACT:
        pytest.skip("u8s8 products saturate on this CPU (the refusal is tested below)")
    m = make_int8(nc=nc, probes=probes, negative_bn=negative_bn)
    p = build_pipeline(m, CAL, native=native, int8=True)
    assert all(layer.int8 for layer in [*p.encoder, *p.decoder, *p.pyramid, p.feature])
    imgs = images(5, nc, 32, 32)
    x = imgs.float() / 255 * 2 - 1
    with torch.no_grad():
        got = p.generator(p._prepare(imgs)).float()
        scores = p(imgs)[0]
        with quantized(m, m.int8):
            ref = m.generator(x)
            ref_scores = score_in_batches(m, x).score
        fp32 = m.generator(x)
    assert (got - ref).abs().mean() < 0.1 * (ref - fp32).abs().mean()
    assert rel(scores, ref_scores) < TOLERANCE["int8"]
    if native:
        torch.testing.assert_close(script(p)(imgs)[0], scores, rtol=0, atol=0)


def test_kept_layers_stay_float_in_both_forms():
    m = make_int8(kept=("dec0", "pyr0"))
    for native in (True, False):
        p = build_pipeline(m, CAL, native=native, int8=True)
        assert not p.decoder[-1].int8 and not p.pyramid[0].int8 and p.encoder[1].int8
        assert p.decoder[-1].weight.dtype == torch.float32 and p.encoder[1].weight.dtype == torch.int8


# ------------------------------------------------------------------------------------------- the files
@pytest.fixture(scope="module")
def exported(gray, tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    onnx = export(gray, "onnx", root / "q.onnx")
    ts = export(gray, "torchscript", root / "q.pt", "--no-verify") if EXACT else None
    return onnx, ts


def test_onnx_int8_graph_is_qdq_with_int8_weights(gray, exported):
    """One QuantizeLinear (uint8 input grid) per quantised layer, and its weight an int8 initializer read through a
    per-channel DequantizeLinear: the form ONNX Runtime and OpenVINO run as int8."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(exported[0]))
    ops_ = [n.op_type for n in proto.graph.node]
    n_layers = len(conv_layers(load_model(gray)[0]))
    assert ops_.count("QuantizeLinear") == n_layers and ops_.count("DequantizeLinear") == 2 * n_layers
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_weights) == n_layers
    meta = read_metadata(exported[0])
    assert meta["dtype"] == "int8" and meta["quantization"]["precision"] == "int8"


def test_int8_exports_score_as_the_reference_and_as_each_other(gray, exported):
    """The stated tolerance (TOLERANCE["int8"], relative to the largest score) between every pair: ONNX Runtime,
    OpenVINO, TorchScript and the int8 reference, on odd-sized images."""
    model, meta = load_model(gray)
    imgs = images(6, 1, 37, 29, seed=4)
    ref = reference_outputs(model, meta, imgs)[0]
    got = {"onnxruntime": run_exported("onnx", exported[0], imgs)[0]}
    try:  # in the test extra; without it the other runtimes are still compared
        import openvino as ov
    except ImportError:
        ov = None
    if ov is not None:
        compiled = ov.Core().compile_model(str(exported[0]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got["openvino"] = torch.from_numpy(compiled(imgs.numpy())[0])
    if EXACT:
        got["torchscript"] = run_exported("torchscript", exported[1], imgs)[0]
    for name, scores in got.items():
        assert rel(scores, ref) < TOLERANCE["int8"], name
    for a in got:
        for b in got:
            assert rel(got[a], got[b]) < TOLERANCE["int8"], (a, b)


@pytest.mark.parametrize("fmt,suffix,extra", [("torchscript", ".pt", []), ("onnx", ".onnx", ["--maps"])])
def test_int8_knn_model_exports_its_score_and_map(fmt, suffix, extra, tmp_path):
    """A knn model in int8: the export's verification (score and anomaly map against the int8 reference) passes."""
    if fmt == "torchscript" and not EXACT:
        pytest.skip("u8s8 products saturate on this CPU")
    from skipgan.model.patch_knn import KnnSettings, PatchKnn
    from skipgan.modelfile import scoring_metadata

    m = make_int8()
    x = torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    m.knn = PatchKnn.fit(m, x, KnnSettings(memory_size=300, intensity_memory=500))
    settings = {"sigma": 2.0, "topk_percent": 2.0, "mean": 0.01, "std": 0.02, "threshold": 3.0, "knn_mean": 0.5,
                "knn_std": 0.3, "knn_threshold": 2.0}
    path = tmp_path / "k.safetensors"
    save_model(path, m, CAL, scoring_metadata("knn", {"knn": CAL, "mean": CAL}, settings))
    out = export(path, fmt, tmp_path / f"k{suffix}", *extra)
    assert read_metadata(out)["aggregation"] == "knn"


def test_torchscript_int8_refuses_a_cpu_whose_u8s8_products_saturate(gray, tmp_path):
    """Measured, not assumed: with oneDNN held below VNNI its u8s8 kernels sum in saturating int16, the probe sees
    it, and the file refuses with one message (in Python and in C++ alike: it is the graph's own check)."""
    out = tmp_path / "q.pt"
    export(gray, "torchscript", out, "--no-verify")
    code = ("import sys, torch, skipgan; from skipgan.export import run_exported; "
            "from skipgan.export.pipeline import u8s8_products_exact as e; print('exact', e()); "
            f"run_exported('torchscript', {str(out)!r}, torch.zeros(1, 1, 32, 32, dtype=torch.uint8))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert "exact False" in r.stdout and r.returncode != 0
    assert REFUSAL in r.stderr


def test_torchscript_int8_file_scores_after_import_skipgan_in_a_fresh_process(gray, exported):
    if not EXACT:
        pytest.skip("u8s8 products saturate on this CPU")
    code = ("import torch, skipgan; m = torch.jit.load(%r); "
            "print(float(m(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))[0][0]))" % str(exported[1]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip()) > 0


def test_a_prepared_torchscript_module_scores_from_threads_and_scoring_writes_nothing(exported):
    """Loaders prepare a file once (check_machine: the exactness check, the int8 weights prepacked for this CPU);
    scoring writes no state, so a prepared module serves several threads, and a module loaded without preparing
    (plain torch.jit.load) scores the same, packing per call."""
    if not EXACT:
        pytest.skip("u8s8 products saturate on this CPU")
    from concurrent.futures import ThreadPoolExecutor

    from skipgan.export.torchscript import load

    prepared = load(exported[1])
    assert prepared.int8_checked and getattr(prepared.encoder, "1").packed is not None
    imgs = images(4, 1, 32, 32, seed=7)
    want = prepared(imgs)[0]
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(lambda _: prepared(imgs)[0], range(8)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    plain = torch.jit.load(str(exported[1]))
    torch.testing.assert_close(plain(imgs)[0], want, rtol=0, atol=0)
    assert not plain.int8_checked and getattr(plain.encoder, "1").packed is None


@pytest.mark.parametrize("args,message", [
    (["--format", "aoti", "--out", "{d}/x.pt2"], "--format aoti: an int8 model file exports to torchscript or onnx"),
    (["--format", "tensorrt", "--out", "{d}/x.engine"], "--format tensorrt: an int8 model file exports to"),
    (["--format", "onnx", "--out", "{d}/x.onnx", "--dtype", "bf16"], "--dtype bf16: .* it exports in int8 only"),
])
def test_int8_bad_arguments_are_one_line_errors_and_write_nothing(gray, tmp_path, capsys, args, message):
    import re

    assert main(["export", str(gray), *[a.format(d=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not any(tmp_path.glob("x*"))
