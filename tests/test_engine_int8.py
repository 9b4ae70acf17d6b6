"""The int8 engine (engine/int8_layers.py, Screener(int8=True), --dtype int8) against the int8 reference
(skipgan/quant/int8.py), and the native quantize op against its definition."""

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from skipgan import ops
from skipgan.engine import Screener
from skipgan.engine.cpu import bf16_fast, int8_restriction
from skipgan.engine.fold import fold_conv
from skipgan.engine import plan as P
from skipgan.engine.int8_layers import QCol2imConvT, QDenseConv, QIm2colConv
from skipgan.engine.layers import candidate_forms, form_kernels, make_layer
from skipgan.model import Architecture, SkipGANomaly, score_in_batches
from skipgan.quant import quantized
from skipgan.quant.calibrate import all_layers_int8, observe_input_ranges
from skipgan.quant.int8 import fake_input, fake_weight, input_qparams, out_dim, quantize_input, weight_scales

try:
    from isa_copies import assert_script_passes_with_isa
except ImportError:
    from tests.isa_copies import assert_script_passes_with_isa

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")
needs_int8 = pytest.mark.skipif(int8_restriction() is not None, reason=f"no fast int8 here: {int8_restriction()}")
RELU, LEAKY, TANH = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh"))


# ------------------------------------------------------------------------------------------- skipgan::quantize_u8_out
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 7, 9, 5), (2, 65), (4097,)])
def test_quantize_op_equals_its_definition(dtype, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 5).to(dtype)
    for scale, zero in [(0.037, 117), (0.05, 0), (1.0, 255), (0.011, 3)]:
        assert torch.equal(ops.quantize_u8(x, scale, zero), quantize_input(x, scale, zero))


def test_quantize_op_rounds_half_to_even_and_clamps():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, 0.0] * 9)  # 72: vector body and scalar tail
    got = ops.quantize_u8(x, 1.0, 10)
    assert got[:8].tolist() == [10, 12, 12, 10, 8, 255, 0, 10]
    assert torch.equal(got, quantize_input(x, 1.0, 10))


def test_quantize_op_non_contiguous_input_and_output():
    x = torch.randn(4, 6, 8, 3).permute(0, 3, 1, 2)  # channels_last view
    out = torch.empty(4, 3, 8, 6, dtype=torch.uint8).transpose(2, 3)  # another non-dense order
    ops.quantize_u8(x, 0.02, 128, out)
    assert torch.equal(out, quantize_input(x, 0.02, 128))


ISA_SCRIPT = r"""
import torch, skipgan.ops as o
from skipgan.quant.int8 import quantize_input
assert o.build_info()["cpu_isa"] == "{isa}", o.build_info()
g = torch.Generator().manual_seed(0)
for n in (1, 31, 32, 33, 4099):
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        x = (torch.randn(n, generator=g) * 4).to(dt)
        x[::7] = torch.round(x[::7].float() * 2).to(dt) / 2 * 0.1  # ties at scale 0.1
        assert torch.equal(o.quantize_u8(x, 0.1, 77), quantize_input(x, 0.1, 77)), (n, dt)
print("ok")
"""


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_quantize_op_other_cpu_kernel_copies(isa):
    """The copies this CPU does not pick by itself (ATEN_CPU_CAPABILITY)."""
    assert_script_passes_with_isa(ISA_SCRIPT, isa)


def test_quantize_op_opcheck():
    x = torch.randn(2, 5, 7, 3)
    torch.library.opcheck(torch.ops.skipgan.quantize_u8_out.default, (x, 0.03, 100, torch.empty_like(x, dtype=torch.uint8)))


@pytest.mark.parametrize("bad,match", [
    (dict(scale=0.0), "scale: expected a positive finite"), (dict(scale=float("nan")), "scale"),
    (dict(zero=256), "zero: expected 0..255"), (dict(zero=-1), "zero"),
    (dict(out=torch.empty(2, 3)), "out: expected dtype uint8"),
    (dict(out=torch.empty(3, 2, dtype=torch.uint8)), "out: expected x's shape"),
    (dict(x=torch.zeros(2, 3, dtype=torch.int32)), "x"),
])
def test_quantize_op_bad_arguments(bad, match):
    args = dict(x=torch.zeros(2, 3), scale=0.1, zero=0, out=torch.empty(2, 3, dtype=torch.uint8)) | bad
    with pytest.raises(RuntimeError, match=match):
        torch.ops.skipgan.quantize_u8_out(args["x"], args["scale"], args["zero"], args["out"])


# ------------------------------------------------------------------------------------------- the int8 layers
def _grid_input(shape, scale, zero, seed=0):
    """Values on the layer's uint8 grid (so quantising them is exact: no rounding flips between the engine's
    float path and the reference's)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, shape, generator=g).float() - zero) * scale


def _quantised_layer(conv, bn, x_range):
    with torch.no_grad():
        if bn is not None:  # running statistics away from the defaults
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
    bn = bn.eval() if bn is not None else None
    w_scales = weight_scales(conv.weight, out_dim(conv))
    grid = input_qparams(*x_range)
    return fold_conv(conv, bn, (w_scales, grid)), w_scales, grid


def _reference(conv, bn, x_nchw, w_scales, grid):
    """conv(dq(q(x)), dq(q(W))) (+ BN), in float64: the int8 reference of one layer."""
    w = fake_weight(conv.weight.detach(), out_dim(conv), w_scales).double()
    xq = fake_input(x_nchw, *grid).double()
    if isinstance(conv, torch.nn.ConvTranspose2d):
        y = F.conv_transpose2d(xq, w, None, conv.stride, conv.padding)
    else:
        y = F.conv2d(xq, w, None, conv.stride, conv.padding)
    if conv.bias is not None:
        y = y + conv.bias.detach().double().view(1, -1, 1, 1)
    if bn is not None:
        y = F.batch_norm(y, bn.running_mean.double(), bn.running_var.double(), bn.weight.double(), bn.bias.double(),
                         False, 0.0, bn.eps)
    return y


@needs_int8
@pytest.mark.parametrize("size,c_in,c_out,batch,n", [(8, 3, 5, 4, 4), (16, 7, 9, 6, 1), (4, 16, 8, 8, 5)])
def test_int8_tap_conv_equals_the_reference(size, c_in, c_out, batch, n):
    torch.manual_seed(1)
    conv, bn = torch.nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(c_out)
    layer, w_scales, grid = _quantised_layer(conv, bn, (-0.4, 2.0))
    q = QIm2colConv(layer, size, batch, torch.float32, "cpu")
    x = _grid_input((n, c_in, size, size), *grid)
    src = torch.zeros(batch, size + 2, size + 2, c_in)[:n]
    src[:, 1:-1, 1:-1, :] = x.permute(0, 2, 3, 1)
    o = size // 2
    out = torch.empty(n, o, o, c_out).permute(0, 3, 1, 2)
    out2 = torch.empty(n, o, o, c_out).permute(0, 3, 1, 2)
    q(src, None, None, LEAKY, 0.2, out, RELU, out2)
    y = _reference(conv, bn, x, w_scales, grid)
    torch.testing.assert_close(out.double(), F.leaky_relu(y, 0.2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out2.double(), F.relu(y), rtol=1e-5, atol=1e-5)


@needs_int8
@pytest.mark.parametrize("size,c_in,c_out,batch,n,bias", [(4, 6, 3, 4, 4, False), (8, 5, 7, 3, 1, True)])
def test_int8_transposed_conv_equals_the_reference(size, c_in, c_out, batch, n, bias):
    torch.manual_seed(2)
    conv = torch.nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    bn = None if bias else torch.nn.BatchNorm2d(c_out)
    layer, w_scales, grid = _quantised_layer(conv, bn, (0.0, 3.0))
    q = QCol2imConvT(layer, size, batch, torch.float32, "cpu")
    x = _grid_input((n, c_in, size, size), *grid)
    out = torch.empty(n, 2 * size, 2 * size, c_out).permute(0, 3, 1, 2)
    q(x.permute(0, 2, 3, 1).contiguous(), None, None, RELU, 0.2, out)
    torch.testing.assert_close(out.double(), F.relu(_reference(conv, bn, x, w_scales, grid)), rtol=1e-5, atol=1e-5)


@needs_int8
def test_int8_last_layer_mixes_the_probes_like_the_reference():
    torch.manual_seed(3)
    conv = torch.nn.ConvTranspose2d(8, 2, 4, 2, 1, bias=True)
    layer, w_scales, grid = _quantised_layer(conv, None, (0.0, 2.0))
    k, b, size = 3, 2, 4
    q = QCol2imConvT(layer, size, k * b, torch.float32, "cpu")
    x = _grid_input((k * b, 8, size, size), *grid)
    pw = torch.rand(k, 1, 2 * size, 2 * size)
    out = torch.empty(b, 2 * size, 2 * size, 2).permute(0, 3, 1, 2)
    q(x.permute(0, 2, 3, 1).contiguous(), None, None, TANH, 0.2, out, 0, None, pw)
    y = torch.tanh(_reference(conv, None, x, w_scales, grid)).unflatten(0, (k, b))
    torch.testing.assert_close(out.double(), (y * pw.double()[:, None]).sum(0), rtol=1e-5, atol=1e-5)


@needs_int8
@pytest.mark.parametrize("transposed,size,padding", [(False, 2, 1), (False, 4, 0), (True, 1, 1)])
def test_int8_dense_layer_equals_the_reference(transposed, size, padding):
    torch.manual_seed(4)
    cls = torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d
    conv = cls(6, 5, 4, 2 if padding else 1, padding, bias=False)
    layer, w_scales, grid = _quantised_layer(conv, None, (-1.0, 1.0))
    q = make_layer(layer, size, 3, torch.float32, "cpu")  # the fixed plan's form of a quantised layer
    assert isinstance(q, QDenseConv)
    x = _grid_input((3, 6, size, size), *grid)
    o = layer.out_size(size)
    out = torch.empty(3, o, o, 5).permute(0, 3, 1, 2)
    q(x.permute(0, 2, 3, 1).contiguous(), None, None, LEAKY, 0.2, out)
    torch.testing.assert_close(out.double(), F.leaky_relu(_reference(conv, None, x, w_scales, grid), 0.2),
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- the whole engine
def int8_model(nc=1, isize=32, probes=2, seed=0):
    torch.manual_seed(seed)
    from skipgan.model import Corruption
    m = SkipGANomaly(Architecture(isize=isize, nc=nc, ngf=8, ndf=8, nz=16),
                     corruption=Corruption(noise_std=0.5, score_draws=probes) if probes else Corruption())
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m.score(torch.rand(16, nc, isize, isize) * 2 - 1)
    m.eval()
    x = torch.rand(32, nc, isize, isize) * 2 - 1
    m.int8 = all_layers_int8(m, observe_input_ranges(m, x))
    return m


@needs_int8
@pytest.mark.parametrize("nc,isize,probes", [(1, 32, 2), (3, 32, 0), (1, 64, 1)])
def test_int8_engine_computes_the_int8_reference(nc, isize, probes):
    """Whole pipeline, fp32 activations: the engine's x̂ and f(x) follow the reference's int8 semantics, far closer
    to them than to fp32 (what differs: a value near a grid step may round the other way after a different float
    summation, moving that one element by one step)."""
    m = int8_model(nc, isize, probes)
    x = torch.rand(5, nc, isize, isize) * 2 - 1
    s = Screener.from_model(m, dtype=torch.float32, max_batch=4, int8=True)  # 2 batches, a partial one
    got = s.score(x, reconstruction=True)
    with torch.no_grad(), quantized(m, m.int8):
        ref = score_in_batches(m, x, keep_reconstructions=True)
    fp32 = score_in_batches(m, x, keep_reconstructions=True)
    d_ref = (got.reconstruction - ref.reconstruction).abs().mean()
    d_q = (ref.reconstruction - fp32.reconstruction).abs().mean()
    assert d_ref < 0.1 * d_q, (float(d_ref), float(d_q))
    torch.testing.assert_close(got.score, ref.score, rtol=0.05, atol=1e-6)
    # f(x) of the clean images: one D pass over the same input
    with torch.no_grad(), quantized(m, m.int8):
        f_ref = m.discriminator.features(x[:4])
    s.score(x[:4])
    f_got = s.b.feat[:4]
    f32 = m.discriminator.features(x[:4]).detach()
    assert (f_got - f_ref).abs().mean() < 0.1 * (f_ref - f32).abs().mean()


@needs_int8
def test_int8_engine_keeps_the_kept_layers_in_float():
    m = int8_model()
    from skipgan.quant import Int8Params
    m.int8 = Int8Params(m.int8.inputs, m.int8.weight_scales, ("dec0", "pyr0"))
    s = Screener.from_model(m, dtype=torch.float32, max_batch=4, int8=True)
    assert type(s.dec[0]).__name__ == "Col2imConvT"  # the fold: the float tap form
    assert not type(s.pyr[0]).__name__.startswith("Q")  # a float form, whichever the plan measured fastest
    assert type(s.enc[1]).__name__ == "QIm2colConv"
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad(), quantized(m, m.int8):
        ref = score_in_batches(m, x).score
    torch.testing.assert_close(s.score(x).score, ref, rtol=0.05, atol=1e-6)


@needs_int8
@pytest.mark.skipif(not bf16_fast(), reason="no fast bf16 here")
def test_int8_engine_bf16_activations_close_to_the_reference():
    m = int8_model()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad(), quantized(m, m.int8):
        ref = score_in_batches(m, x).score
    s = Screener.from_model(m, dtype="int8", max_batch=4)
    assert s.int8 and s.dtype == torch.bfloat16
    torch.testing.assert_close(s.score(x).score, ref, rtol=0.1, atol=1e-5)


def test_int8_needs_an_int8_model_and_a_cpu():
    m = copy.deepcopy(int8_model())
    m.int8 = None
    with pytest.raises(ValueError, match="no int8 calibration; make an int8 model file with `skipgan quantize`"):
        Screener.from_model(m, dtype="int8")


def test_int8_refused_where_the_cpu_has_no_int8_dot_products():
    """Under a oneDNN restriction below VNNI (what a CPU without the instructions looks like to the engine)."""
    code = ("import torch; from skipgan.engine import Screener; from skipgan.model import SkipGANomaly, Architecture\n"
            "from skipgan.quant.calibrate import all_layers_int8, observe_input_ranges\n"
            "m = SkipGANomaly(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8)).eval()\n"
            "m.int8 = all_layers_int8(m, observe_input_ranges(m, torch.rand(2, 1, 32, 32)))\n"
            "try:\n    Screener.from_model(m, dtype='int8')\nexcept ValueError as e:\n    print(e)\n")
    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "dtype=int8: " in r.stdout and ("restricted to AVX512_CORE" in r.stdout or "neither" in r.stdout), r


# ------------------------------------------------------------------------------------------- the plan
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(P.PLAN_ENV, raising=False)
    return tmp_path


@needs_int8
def test_int8_plan_is_measured_on_the_int8_forms_and_cached(cache, monkeypatch):
    """The quantised layers' forms are timed like the float layers' (u8s8 their kernel), the plan is cached under a
    key that says which layers are int8 (an fp32 plan of the same shapes is another file), and read back."""
    m = int8_model()
    m.int8 = type(m.int8)(m.int8.inputs, m.int8.weight_scales, ("dec0",))  # one layer kept in fp32
    first = Screener.from_model(m, dtype="int8", max_batch=4)
    assert first.plan.source == "measured"
    for spec in first._specs:
        form, kernel = first.plan.choices[spec.name]
        assert form in candidate_forms(spec.layer, spec.size, spec.fold)
        assert (kernel == "u8s8") == (spec.name != "dec0"), spec.name
    timed = {k for k, v in first.plan.timings_ms.items() if len(v) > 1}
    assert any(first.plan.choices[k][1] == "u8s8" for k in timed)  # some int8 layer had forms to choose from
    key = json.loads(open(first.plan.path).read())["key"]
    assert [g[-1] for g in key["layers"]] == [s.name != "dec0" for s in first._specs]
    monkeypatch.setattr(P, "tune", lambda *a, **k: pytest.fail("a cached plan must not be measured again"))
    again = Screener.from_model(m, dtype="int8", max_batch=4)
    assert again.plan.source == "cache" and again.plan.choices == first.plan.choices


@needs_int8
def test_every_int8_form_scores_as_the_fixed_plan(cache):
    """Each quantised layer's every form, forced in turn, gives the fixed plan's scores: the integer products are
    exact in every form, so only the float rescale's rounding differs (fp32 activations: 1e-5)."""
    m = int8_model()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    fixed = Screener.from_model(m, dtype=torch.float32, int8=True, max_batch=5, plan="fixed")
    want = fixed.score(x)
    for spec in fixed._specs:
        forms = candidate_forms(spec.layer, spec.size, spec.fold)
        assert set(forms) <= {"taps", "dense"} and form_kernels(forms[0], torch.float32, "cpu", True) == ("u8s8",)
        for form in forms:
            forced = dict(fixed.plan.choices, **{spec.name: (form, "u8s8")})
            got = Screener.from_model(m, dtype=torch.float32, int8=True, max_batch=5, plan=forced).score(x)
            torch.testing.assert_close(got.score, want.score, rtol=1e-5, atol=0, msg=f"{spec.name} {form}")


def test_a_quantised_layer_takes_no_float_kernel():
    m = int8_model()
    from skipgan.engine.fold import fold_for_scoring
    net, _ = fold_for_scoring(m, 0, int8=True)
    with pytest.raises(ValueError, match="quantised layer runs on u8s8 only"):
        make_layer(net.encoder[1], 16, 4, torch.float32, "cpu", "taps", "onednn")
    with pytest.raises(ValueError, match="not a form of this layer"):
        make_layer(net.encoder[1], 16, 4, torch.float32, "cpu", "conv")
