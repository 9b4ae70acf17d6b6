"""int8 post-training quantisation (skipgan/quant/): the int8 semantics, their calibration, the int8 model file and
`skipgan quantize`, with every bad input."""

import json

import pytest
import torch
import torch.nn.functional as F

from skipgan.cli import main
from skipgan.engine.fold import fold_conv
from skipgan.errors import InputError
from skipgan.model import Architecture, SkipGANomaly
from skipgan.modelfile import load_model, model_precision, save_model
from skipgan.quant import Int8Params, conv_layers, quantized
from skipgan.quant.calibrate import (all_layers_int8, choose_kept, observe_input_ranges, relative_error,
                                     scores_of)
from skipgan.quant.int8 import fake_input, fake_weight, input_qparams, out_dim, quantize_weight, weight_scales

CAL = {"threshold": 0.25, "target_fpr": 0.01, "val_stats": {"mean": 0.1, "std": 0.05}}
TINY = ["--epochs", "1", "--ngf", "4", "--ndf", "4", "--nz", "8", "--no-progress", "--device", "cpu"]


def bn_model(nc=2, isize=32):
    torch.manual_seed(0)
    m = SkipGANomaly(Architecture(isize=isize, nc=nc, ngf=4, ndf=4, nz=8))
    m.train()
    with torch.no_grad():  # BN running statistics away from their defaults
        m.score(torch.randn(8, nc, isize, isize))
    return m.eval()


# ------------------------------------------------------------------------------------------------ the semantics
@pytest.mark.parametrize("transposed", [False, True])
def test_weights_are_symmetric_per_output_channel(transposed):
    w = torch.randn(6, 5, 4, 4)
    dim = 1 if transposed else 0
    q, s = quantize_weight(w, dim)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127 and int(q.min()) >= -127
    assert s.shape == (w.shape[dim],)
    for c in range(w.shape[dim]):  # every channel reaches ±127 exactly once its max is scaled
        assert int(q.select(dim, c).abs().max()) == 127
    assert torch.equal(quantize_weight(-w, dim)[0], -q)  # symmetric
    # dequantised: within half a step of every weight
    err = (fake_weight(w, dim, s) - w).abs()
    assert bool((err <= 0.5 * s.view([-1 if d == dim else 1 for d in range(4)]) + 1e-7).all())


def test_round_half_to_even_and_a_zero_channel():
    w = torch.zeros(3, 1, 1, 1)
    w[0, 0, 0, 0] = 127.0
    w[1, 0, 0, 0] = 2.5  # max of its channel: 127 exactly
    q, s = quantize_weight(w, 0)
    assert s[2] == 1.0 and int(q[2].abs().max()) == 0  # all-zero channel
    # a value exactly between two steps rounds to even
    w2 = torch.tensor([[[[127.0]]], [[[0.5]]]]).view(2, 1, 1, 1)
    q2, _ = quantize_weight(w2, 0, torch.tensor([1.0, 1.0]))
    assert int(q2[1]) == 0 and int(quantize_weight(w2 * 3, 0, torch.tensor([1.0, 1.0]))[0][1]) == 2


@pytest.mark.parametrize("which", ["down", "up"])
def test_per_channel_integers_commute_with_batchnorm_folding(which):
    m = bn_model()
    level = getattr(m.generator, which)[1]
    folded = fold_conv(level.conv, level.bn)
    dim = out_dim(level.conv)
    q_raw, _ = quantize_weight(level.conv.weight, dim)
    q_fold, _ = quantize_weight(folded.weight, dim)
    # the fold scales each output channel: the integers may differ only where fp rounding put a weight on a tie
    assert (q_raw.int() - q_fold.int()).abs().max() <= 1
    assert (q_raw != q_fold).float().mean() < 1e-3


@pytest.mark.parametrize("lo,hi", [(-9.2, 9.1), (0.0, 6.5), (-0.2, 1.1), (0.3, 2.0), (-3.0, -1.0)])
def test_input_grid_covers_the_range_and_keeps_zero_exact(lo, hi):
    scale, zero = input_qparams(lo, hi)
    assert 0 <= zero <= 255 and scale > 0
    x = torch.linspace(lo, hi, 1001)
    assert float(fake_input(torch.zeros(3), scale, zero).abs().max()) == 0.0
    assert float((fake_input(x, scale, zero) - x).abs().max()) <= 0.5 * scale * (1 + 1e-5) + 1e-6
    assert torch.equal(fake_input(fake_input(x, scale, zero), scale, zero), fake_input(x, scale, zero))


def test_input_grid_of_a_constant_zero_input():
    assert input_qparams(0.0, 0.0) == (1.0, 0)


def test_quantized_runs_the_int8_semantics_and_restores_the_weights():
    m = bn_model()
    x = torch.rand(3, 2, 32, 32) * 2 - 1
    before = {k: v.clone() for k, v in m.state_dict().items()}
    params = all_layers_int8(m, observe_input_ranges(m, x))
    # one layer by hand: enc1's output under quantized() is conv(dq(q(input)), dq(q(W))) (+ BN)
    captured = {}
    conv = m.generator.down[1].conv
    h = conv.register_forward_hook(lambda _m, args, out: captured.update(x=args[0], y=out))
    with quantized(m, params, ("enc1",)):
        m.score(x)
    h.remove()
    s, z = params.inputs["enc1"]
    expect = F.conv2d(captured["x"], fake_weight(conv.weight, 0, params.weight_scales["enc1"]), None, 2, 1)
    assert torch.equal(captured["x"], fake_input(captured["x"], s, z))  # the hook saw the quantised input
    torch.testing.assert_close(captured["y"], expect, rtol=1e-5, atol=1e-6)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    # all layers: scores near the fp32 ones, not equal
    ref = scores_of(m, x)
    q = scores_of(m, x, params)
    assert not torch.equal(q, ref) and torch.allclose(q, ref, rtol=0.1)


def test_every_layer_is_named_as_the_engine_names_it():
    m = bn_model()
    names = list(conv_layers(m))
    n_enc = len(m.generator.down)
    assert names[:n_enc] == [f"enc{j}" for j in range(n_enc)] and names[-1] == "feat"
    assert all(isinstance(c, torch.nn.ConvTranspose2d) for n, c in conv_layers(m).items() if n.startswith("dec"))


# ------------------------------------------------------------------------------------------------ calibration
def test_layers_are_kept_most_sensitive_first_until_the_budget_holds():
    m = bn_model()
    x = torch.rand(16, 2, 32, 32) * 2 - 1
    params = all_layers_int8(m, observe_input_ranges(m, x))
    full = relative_error(scores_of(m, x, params), scores_of(m, x))
    same, rec = choose_kept(m, params, x, budget=full * 2)
    assert same.kept == () and rec["sensitivity"] == "not measured: within budget"
    tight, rec = choose_kept(m, params, x, budget=full / 4)
    sens = rec["sensitivity"]
    assert list(tight.kept) == sorted(sens, key=sens.get, reverse=True)[: len(tight.kept)]
    assert rec["error"] <= full / 4 or len(tight.kept) == len(sens)
    assert [s["error"] for s in rec["steps"]][0] == pytest.approx(full, abs=1e-5)


def test_a_range_missing_for_a_layer_is_an_error():
    m = bn_model()
    ranges = observe_input_ranges(m, torch.rand(2, 2, 32, 32))
    del ranges["feat"]
    with pytest.raises(ValueError, match="feat"):
        all_layers_int8(m, ranges)


# ------------------------------------------------------------------------------------------------ model files
def test_int8_model_file_round_trip(tmp_path):
    m = bn_model()
    x = torch.rand(4, 2, 32, 32) * 2 - 1
    params = all_layers_int8(m, observe_input_ranges(m, x))
    m.int8 = Int8Params(params.inputs, params.weight_scales, ("dec0",), {"note": "test"})
    save_model(tmp_path / "q.safetensors", m, CAL)
    m2, meta = load_model(tmp_path / "q.safetensors")
    assert model_precision(meta) == "int8" and meta["quantization"]["kept"] == ["dec0"]
    assert m2.int8.inputs == m.int8.inputs and m2.int8.kept == ("dec0",)
    for name, s in m.int8.weight_scales.items():
        assert torch.equal(m2.int8.weight_scales[name], s)
    assert torch.equal(scores_of(m2, x, m2.int8), scores_of(m, x, m.int8))
    m.int8 = None
    save_model(tmp_path / "f.safetensors", m, CAL)
    m3, meta3 = load_model(tmp_path / "f.safetensors")
    assert m3.int8 is None and model_precision(meta3) == "fp32"


def _damage(path, out, edit_tensors=None, edit_meta=None):
    from skipgan.tensorfile import load_tensors, save_tensors
    tensors, meta = load_tensors(path)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    save_tensors(out, tensors, meta)


@pytest.mark.parametrize("damage", ["missing tensor", "bad grid", "kept unknown", "wrong scales", "other layers"])
def test_damaged_int8_data_is_one_clear_error(tmp_path, damage):
    m = bn_model()
    m.int8 = all_layers_int8(m, observe_input_ranges(m, torch.rand(2, 2, 32, 32)))
    save_model(tmp_path / "q.safetensors", m, CAL)
    edits = {
        "missing tensor": dict(edit_tensors=lambda t: t.pop("int8.enc1.input")),
        "bad grid": dict(edit_tensors=lambda t: t.__setitem__("int8.enc1.input", torch.tensor([-1.0, 3.0]))),
        "kept unknown": dict(edit_meta=lambda m: m["quantization"].__setitem__("kept", ["enc9"])),
        "wrong scales": dict(edit_tensors=lambda t: t.__setitem__("int8.feat.weight_scale", torch.ones(3))),
        "other layers": dict(edit_meta=lambda m: m["quantization"]["layers"].remove("feat")),
    }[damage]
    _damage(tmp_path / "q.safetensors", tmp_path / "bad.safetensors", **edits)
    with pytest.raises(InputError, match=r"bad\.safetensors: damaged int8 quantisation data .*skipgan quantize"):
        load_model(tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--abnormal-class", "3", "--out", str(out), *TINY]) == 0
    return out / "model.safetensors"


@pytest.fixture(scope="module")
def trained_with_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("run8")
    assert main(["train", "--abnormal-class", "5", "--out", str(out), "--quantize", "int8", *TINY]) == 0
    return out


def test_train_quantize_writes_the_int8_file_beside_the_model(trained_with_int8, tmp_path):
    m, meta = load_model(trained_with_int8 / "int8.safetensors")
    _, meta32 = load_model(trained_with_int8 / "model.safetensors")
    assert m.int8 is not None and "quantization" not in meta32
    # the same file `skipgan quantize` writes from the run's model
    assert main(["quantize", str(trained_with_int8 / "model.safetensors"), "--out", str(tmp_path / "q.safetensors")]) == 0
    m2, meta2 = load_model(tmp_path / "q.safetensors")
    assert meta2["calibration"] == meta["calibration"] and m2.int8.inputs == m.int8.inputs


@pytest.fixture(scope="module")
def quantized_file(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8.safetensors"
    assert main(["quantize", str(trained), "--out", str(out), "--calibration-images", "64"]) == 0
    return out


def test_quantize_writes_an_int8_model_recalibrated_on_its_own_scores(trained, quantized_file, capsys):
    m, meta = load_model(quantized_file)
    _, meta32 = load_model(trained)
    q = meta["quantization"]
    assert q["precision"] == "int8" and q["calibration"]["calibration_images"] == 64
    assert q["calibration"]["validation_images"] == meta32["calibration"]["val_stats"]["n"]
    assert meta["calibration"]["val_stats"]["n"] == meta32["calibration"]["val_stats"]["n"]
    assert meta["calibration"]["threshold"] != meta32["calibration"]["threshold"]  # the int8 scores' own
    assert set(meta["calibrations"]) == set(meta32["calibrations"])
    assert meta["train"] == meta32["train"] and meta["run_info"] == meta32["run_info"]
    assert not [p for p in quantized_file.parent.iterdir() if ".tmp" in p.name]


def test_evaluate_an_int8_model_in_the_engine_and_the_reference(trained, quantized_file, tmp_path, capsys):
    from skipgan.engine.cpu import int8_restriction

    runs = {"eager": ["--engine", "eager"], "f": ["--engine", "eager"]}
    if int8_restriction() is None:
        runs["fused"] = []  # the int8 engine: an int8 file's default precision
    for name, flags in runs.items():
        model = trained if name == "f" else quantized_file
        assert main(["evaluate", str(model), *flags, "--out", str(tmp_path / name), "--device", "cpu"]) == 0
    m = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in runs}
    assert m["eager"]["dtype"] == "int8" and m["f"]["dtype"] == "fp32"
    assert m["eager"]["threshold"] != m["f"]["threshold"]  # the int8 file's own, recalibrated
    assert abs(m["eager"]["auroc"] - m["f"]["auroc"]) < 0.05
    if "fused" in m:
        assert abs(m["fused"]["auroc"] - m["eager"]["auroc"]) < 0.02


def test_score_an_int8_model_file(quantized_file, tmp_path, capsys):
    from skipgan.engine.cpu import int8_restriction

    if int8_restriction() is not None:
        pytest.skip(f"no fast int8 here: {int8_restriction()}")
    from PIL import Image
    import numpy as np
    for v in (0, 128, 255):
        Image.fromarray(np.full((8, 8), v, np.uint8)).save(tmp_path / f"{v}.png")
    assert main(["score", str(quantized_file), str(tmp_path), "-v"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert len(lines) == 3 and all("score" in line for line in lines)
    assert "int8 products (oneDNN u8s8)" in out.err


@pytest.mark.parametrize("argv,message", [
    (["score", "{q}", "{dir}", "--dtype", "bf16"], "--dtype bf16: .* is an int8 model file, it scores in int8 only"),
    (["score", "{q}", "{dir}", "--engine", "eager", "--dtype", "fp32"], "--dtype fp32: .* is an int8 model file"),
    (["score", "{f}", "{dir}", "--dtype", "int8"], "--dtype int8: .* is not an int8 model file; make one with"),
    (["export", "{q}", "--format", "aoti", "--out", "{dir}/x.pt2"], "--format aoti: an int8 model file exports to "
                                                                    "torchscript or onnx"),
    (["export", "{q}", "--format", "onnx", "--out", "{dir}/x.onnx", "--dtype", "fp32"],
     "--dtype fp32: .* is an int8 model file, it exports in int8 only"),
    (["export", "{f}", "--format", "onnx", "--out", "{dir}/x.onnx", "--dtype", "int8"],
     "--dtype int8: .* is not an int8 model file; make one with"),
    (["quantize", "{q}", "--out", "{dir}/x.safetensors"], "already an int8 model file"),
    (["quantize", "{f}", "--out", "{dir}/x.safetensors", "--calibration-images", "0"],
     "--calibration-images 0: must be at least 1"),
    (["quantize", "{f}", "--out", "{dir}/x.safetensors", "--budget", "0"], "--budget 0.0: must be positive"),
    (["quantize", "{f}", "--out", "{dir}/x.safetensors", "--data", "folder:{dir}/nothing"], "nothing"),
])
def test_bad_inputs_are_one_line_and_exit_2(trained, quantized_file, tmp_path, capsys, argv, message):
    (tmp_path / "a.png").write_bytes(b"")
    argv = [a.format(q=quantized_file, f=trained, dir=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("skipgan: error:")
    import re
    assert re.search(message, err), err
    assert not any(tmp_path.glob("x.*"))


def test_calibration_images_of_the_wrong_shape(trained, tmp_path, capsys):
    """--data whose images cannot be the model's (3 channels for a 1-channel model are converted, so another
    size of data set is the case: a folder without normal training images)."""
    root = tmp_path / "data"
    (root / "test" / "good").mkdir(parents=True)
    from PIL import Image
    import numpy as np
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "test" / "good" / "a.png")
    assert main(["quantize", str(trained), "--out", str(tmp_path / "x.safetensors"), "--data", f"folder:{root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(root) in err
    assert not (tmp_path / "x.safetensors").exists()
