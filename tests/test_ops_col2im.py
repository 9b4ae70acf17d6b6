"""skipgan::col2im_bias_act_out (transposed-conv fold of a GEMM result + epilogue) against the references."""

import pytest
import torch
import torch.nn.functional as F

from skipgan import ops

try:
    from isa_copies import assert_script_passes_with_isa
except ImportError:
    from tests.isa_copies import assert_script_passes_with_isa

ACTS = list(ops.ACTIVATIONS)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# (kernel, stride, padding, output_padding): the UNet's 4/2/1, and others (overlapping, disjoint, gapped taps)
CONFIGS = [(4, 2, 1, 0), (3, 1, 1, 0), (2, 2, 0, 0), (3, 2, 1, 1), (1, 3, 0, 2), (5, 2, 2, 1)]


def out_size(h, k, s, p, op=0):
    return (h - 1) * s - 2 * p + k + op


def make(n, h, w, k, c, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cols = torch.randn(n, h, w, k, k, c, generator=g).to(dtype)
    scale = 0.5 + torch.rand(c, generator=g)
    shift = 0.2 * torch.randn(c, generator=g)
    return cols, scale, shift


def tol(dtype):
    # fp32 sums of the same inputs in another order, then the vectorised tanh / exp and the final rounding
    return {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
            torch.float16: dict(rtol=2e-3, atol=2e-3)}[dtype]


def run_and_compare(cols, k, s, p, scale, shift, *, act, act2=None, out=None, out2=None, output_size=None,
                    probe_weight=None, slope=0.2):
    kw = dict(act=act, act2=act2, slope=slope, probe_weight=probe_weight)
    size = output_size if out is None else tuple(out.shape[2:])
    ref = ops.col2im_bias_act_reference(cols, k, s, p, scale, shift, output_size=size, **kw)
    got = ops.col2im_bias_act(cols, k, s, p, scale, shift, out=out, out2=out2, output_size=size, **kw)
    if act2 is None:
        ref, got = (ref,), (got,)
    for r, g in zip(ref, got):
        assert g.dtype == cols.dtype
        torch.testing.assert_close(g, r, **tol(cols.dtype))
    return got


# ---------------------------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("k,s,p,op", CONFIGS)
def test_reference_is_conv_transpose2d(k, s, p, op):
    """cols = X_nhwc @ weight.permute(0, 2, 3, 1).reshape(C_in, -1), folded, IS conv_transpose2d(x, weight)."""
    g = torch.Generator().manual_seed(1)
    n, c_in, c, h, w = 2, 6, 5, 4, 7
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_in, c, k, k, generator=g)
    cols = (x.permute(0, 2, 3, 1).reshape(-1, c_in) @ weight.permute(0, 2, 3, 1).reshape(c_in, -1))
    cols = cols.view(n, h, w, k, k, c)
    expected = F.conv_transpose2d(x, weight, stride=s, padding=p, output_padding=op)
    size = expected.shape[2:]
    torch.testing.assert_close(ops.col2im_bias_act_reference(cols, k, s, p, act="none", output_size=size), expected,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ops.col2im_bias_act(cols, k, s, p, act="none", output_size=size), expected,
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_matches_reference(dtype, fmt):
    for n, h, w, c in [(1, 5, 3, 3), (2, 1, 1, 4), (2, 2, 2, 1), (1, 5, 5, 7)]:
        for k, s, p, op in CONFIGS:
            if out_size(h, k, s, p) < 1 or out_size(w, k, s, p) < 1:
                continue
            cols, sc, sh = make(n, h, w, k, c, dtype=dtype)
            ho, wo = out_size(h, k, s, p, op), out_size(w, k, s, p, op)
            for act in ACTS:
                out = torch.empty(n, c, ho, wo, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
                run_and_compare(cols, k, s, p, sc, sh, act=act, out=out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("c", [16, 64, 300])
def test_more_channels(c, dtype):
    # blocks of several vector chunks (64: several pixels per affine call; 300 > 256: one pixel per call), with
    # a last tap covering part of a block (kernel 3 or 5, stride 2) and stride 1
    for k, s, p, op in [(4, 2, 1, 0), (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 1, 0)]:
        cols, sc, sh = make(2, 3, 4, k, c, dtype=dtype)
        size = (out_size(3, k, s, p, op), out_size(4, k, s, p, op))
        for fmt in FORMATS:
            out = torch.empty(2, c, *size, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
            run_and_compare(cols, k, s, p, sc, sh, act="relu", act2="tanh", out=out, out2=torch.empty_like(out))


def test_kernel_much_larger_than_stride():
    # 81 taps per output pixel: more than the per-row tap list holds, every block takes the general path
    cols, sc, sh = make(2, 5, 4, 9, 3)
    run_and_compare(cols, 9, 1, 4, sc, sh, act="leaky_relu")
    run_and_compare(cols, 9, 1, 0, sc, sh, act="none")


def test_optional_scale_shift_and_defaults():
    cols, sc, sh = make(2, 4, 3, 4, 3)
    run_and_compare(cols, 4, 2, 1, None, None, act="tanh")
    run_and_compare(cols, 4, 2, 1, sc, None, act="relu")
    run_and_compare(cols, (4, 4), (2, 2), (1, 1), None, sh, act="leaky_relu", slope=0.1)
    out = ops.col2im_bias_act(cols, 4, 2, 1, None, sh, act="relu")
    assert out.shape == (2, 3, 8, 6) and out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_second_output_and_channel_slices(dtype, fmt):
    mf = FORMATS[fmt]
    cols, sc, sh = make(2, 4, 5, 4, 6, dtype=dtype)
    buf = torch.full((2, 16, 8, 10), 7.0, dtype=dtype).contiguous(memory_format=mf)
    buf2 = torch.full((2, 9, 8, 10), 7.0, dtype=dtype).contiguous(memory_format=mf)
    run_and_compare(cols, 4, 2, 1, sc, sh, act="leaky_relu", act2="relu", out=buf[:, 3:9], out2=buf2[:, 3:])
    assert torch.all(buf[:, :3] == 7) and torch.all(buf[:, 9:] == 7) and torch.all(buf2[:, :3] == 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_writes_into_zero_bordered_buffer(dtype, fmt):
    """A decoder output feeding an im2col conv: the interior of a buffer whose border must stay zero."""
    for c in (1, 3, 32):
        cols, sc, sh = make(2, 3, 3, 4, c, dtype=dtype)
        padded = torch.zeros(2, c, 8, 8, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
        padded2 = torch.zeros(2, c + 2, 8, 8, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
        run_and_compare(cols, 4, 2, 1, sc, sh, act="relu", act2="leaky_relu", out=padded[:, :, 1:-1, 1:-1],
                        out2=padded2[:, 1:-1, 1:-1, 1:-1])
        for buf in (padded, padded2):
            buf[:, :, 1:-1, 1:-1] = 0
            assert torch.all(buf == 0)


def test_engine_call():
    """The engine's last layer: cols from torch.mm on an NHWC input, tanh into an NHWC buffer, shift only."""
    g = torch.Generator().manual_seed(2)
    n, h, c_in, c = 3, 4, 8, 3
    x = torch.randn(n, h, h, c_in, generator=g)
    weight = torch.randn(c_in, c, 4, 4, generator=g) / 8
    shift = 0.1 * torch.randn(c, generator=g)
    cols = torch.mm(x.reshape(-1, c_in), weight.permute(0, 2, 3, 1).reshape(c_in, -1)).view(n, h, h, 4, 4, c)
    nhwc = torch.empty(n, 2 * h, 2 * h, c)
    torch.ops.skipgan.col2im_bias_act_out(cols, [4, 4], [2, 2], [1, 1], None, shift, ops.ACTIVATIONS["tanh"], 0.0,
                                          nhwc.permute(0, 3, 1, 2))
    expected = torch.tanh(F.conv_transpose2d(x.permute(0, 3, 1, 2), weight, stride=2, padding=1) +
                          shift.view(1, -1, 1, 1))
    torch.testing.assert_close(nhwc.permute(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


def test_noncontiguous_cols_are_copied():
    cols, sc, sh = make(2, 3, 4, 4, 5)
    run_and_compare(cols.transpose(1, 2).contiguous().transpose(1, 2), 4, 2, 1, sc, sh, act="relu")


def test_empty_batch():
    cols, sc, sh = make(0, 3, 3, 4, 2)
    torch.ops.skipgan.col2im_bias_act_out(cols, [4, 4], [2, 2], [1, 1], sc, sh, 1, 0.0, torch.empty(0, 2, 6, 6))


# ---------------------------------------------------------------------------------------------- probe mode


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_pixel", "per_channel"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_probe_mode(dtype, K, per_channel, fmt):
    g = torch.Generator().manual_seed(5)
    B, c, h = 2, 3, 5
    cols, sc, sh = make(K * B, h, h, 4, c, dtype=dtype)
    ho = out_size(h, 4, 2, 1)
    pw = torch.rand(K, c if per_channel else 1, ho, ho, generator=g)
    pw = pw / pw.sum(0, keepdim=True)  # the engine's weights average the probes
    for act in ("tanh", "sigmoid", "none"):
        out = torch.full((B, c, ho, ho), 7.0, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
        run_and_compare(cols, 4, 2, 1, sc, sh, act=act, out=out, probe_weight=pw)


def test_probe_mode_single_probe_is_plain_fold():
    cols, sc, sh = make(2, 4, 4, 4, 3)
    plain = ops.col2im_bias_act(cols, 4, 2, 1, sc, sh, act="tanh")
    probed = ops.col2im_bias_act(cols, 4, 2, 1, sc, sh, act="tanh", probe_weight=torch.ones(1, 1, 8, 8))
    assert torch.equal(plain, probed)


def test_probe_mode_strided_weights_and_outputs():
    g = torch.Generator().manual_seed(6)
    K, B, c = 3, 2, 5
    cols, sc, sh = make(K * B, 3, 4, 3, c)
    # [K, C, Ho, Wo] seen through a transpose, and a per-pixel weight expanded over K (stride 0)
    pw_t = torch.rand(K, 6, 5, c, generator=g).permute(0, 3, 2, 1)
    pw_e = torch.rand(1, 1, 5, 6, generator=g).expand(K, 1, 5, 6)
    for pw in (pw_t, pw_e):
        padded = torch.zeros(B, c, 7, 8)
        run_and_compare(cols, 3, (1, 1), (0, 0), sc, sh, act="relu", out=padded[:, :, 1:-1, 1:-1],
                        probe_weight=pw)
        padded[:, :, 1:-1, 1:-1] = 0
        assert torch.all(padded == 0)


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("probe", [False, True])
def test_deterministic_across_thread_counts(probe):
    cols, sc, sh = make(4, 16, 16, 4, 16)
    pw = torch.rand(2, 16, 32, 32, generator=torch.Generator().manual_seed(0)) if probe else None
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.col2im_bias_act(cols, 4, 2, 1, sc, sh, act="tanh", probe_weight=pw)
        torch.set_num_threads(2)
        two = ops.col2im_bias_act(cols, 4, 2, 1, sc, sh, act="tanh", probe_weight=pw)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    torch.testing.assert_close(one, ops.col2im_bias_act_reference(cols, 4, 2, 1, sc, sh, act="tanh", probe_weight=pw),
                               **tol(torch.float32))


# ---------------------------------------------------------------------------------------------- opcheck


def opcheck_samples():
    relu, leaky, tanh = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh"))
    cols, sc, sh = make(2, 3, 4, 4, 5)
    yield (cols, [4, 4], [2, 2], [1, 1], sc, sh, leaky, 0.2, torch.empty(2, 5, 6, 8), 0, None, None)
    buf = torch.empty(2, 12, 6, 8).contiguous(memory_format=torch.channels_last)
    yield (cols, [4, 4], [2, 2], [1, 1], None, sh, leaky, 0.2, buf[:, :5], relu, buf[:, 6:11], None)
    cols, sc, sh = make(6, 3, 3, 3, 2)
    yield (cols, [3, 3], [1, 1], [1, 1], sc, None, tanh, 0.0, torch.empty(2, 2, 3, 3), 0, None,
           torch.rand(3, 1, 3, 3))


def test_opcheck_cpu():
    for args in opcheck_samples():
        torch.library.opcheck(torch.ops.skipgan.col2im_bias_act_out.default, args)


def test_no_cuda_kernel():
    # CPU only on purpose (the engine runs transposed convs through cuDNN on CUDA): the dispatcher rejects CUDA
    assert torch._C._dispatch_has_kernel_for_dispatch_key("skipgan::col2im_bias_act_out", "CPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("skipgan::col2im_bias_act_out", "CUDA")


# ---------------------------------------------------------------------------------------------- bad input


def call(cols, kernel=(4, 4), stride=(2, 2), padding=(1, 1), scale=None, shift=None, act=1, out=None, act2=0,
         out2=None, probe_weight=None):
    torch.ops.skipgan.col2im_bias_act_out(cols, list(kernel), list(stride), list(padding), scale, shift, act, 0.2,
                                          out, act2, out2, probe_weight)


OP = r"skipgan::col2im_bias_act_out: "


def test_rejects_bad_input():
    cols, sc, sh = make(2, 3, 3, 4, 5)
    out = torch.empty(2, 5, 6, 6)
    with pytest.raises(RuntimeError, match=OP + r"cols: expected a 6-D tensor, got 5-D"):
        call(cols[0], out=out)
    with pytest.raises(RuntimeError, match=OP + r"cols: expected dtype float32, float16 or bfloat16, got Double"):
        call(cols.double(), out=out.double())
    with pytest.raises(RuntimeError, match=OP + r"out: expected dtype Float \(the dtype of cols\), got BFloat16"):
        call(cols, out=out.bfloat16())
    with pytest.raises(RuntimeError, match=OP + r"kernel: expected \[4, 4\] \(cols is \[N, H, W, kH, kW, C\]"):
        call(cols, kernel=(3, 3), out=out)
    with pytest.raises(RuntimeError, match=OP + r"stride: expected two values >= 1"):
        call(cols, stride=(0, 2), out=out)
    with pytest.raises(RuntimeError, match=OP + r"padding: expected two values >= 0"):
        call(cols, padding=(1, -1), out=out)
    with pytest.raises(RuntimeError, match=OP + r"scale: expected shape \[5\] \(one value per output channel\)"):
        call(cols, scale=sc[:3], out=out)
    with pytest.raises(RuntimeError, match=OP + r"shift: expected dtype Float, got Half"):
        call(cols, shift=sh.half(), out=out)
    with pytest.raises(RuntimeError, match=OP + r"act: expected an activation code 0..4"):
        call(cols, act=9, out=out)
    with pytest.raises(RuntimeError, match=OP + r"cols: transposed convolution output would be empty"):
        call(make(2, 1, 1, 1, 5)[0], kernel=(1, 1), padding=(1, 1), out=out)


def test_rejects_bad_outputs():
    cols, sc, sh = make(2, 3, 3, 4, 5)
    with pytest.raises(RuntimeError, match=OP + r"out: expected shape \[2, 5, 6\.\.7, 6\.\.7\], got \[2, 5, 8, 6\]"):
        call(cols, out=torch.empty(2, 5, 8, 6))
    with pytest.raises(RuntimeError, match=OP + r"out: expected shape \[2, 5, 6\.\.7, 6\.\.7\], got \[2, 4, 6, 6\]"):
        call(cols, out=torch.empty(2, 4, 6, 6))
    with pytest.raises(RuntimeError, match=OP + r"out: expected a 4-D tensor"):
        call(cols, out=torch.empty(2, 180))
    buf = torch.empty(2, 12, 6, 6)
    with pytest.raises(RuntimeError, match=OP + r"out2: expected shape \[2, 5, 6, 6\] \(the shape of out\)"):
        call(cols, out=buf[:, :5], act2=1, out2=buf[:, 5:9])
    with pytest.raises(RuntimeError, match=OP + r"out: expected memory disjoint from cols"):
        call(cols, out=cols.view(-1)[:360].view(2, 5, 6, 6))


def test_rejects_bad_probe_arguments():
    cols, sc, sh = make(6, 3, 3, 4, 5)
    out = torch.empty(2, 5, 6, 6)
    pw = torch.rand(3, 1, 6, 6)
    with pytest.raises(RuntimeError, match=OP + r"out2: expected None with probe_weight"):
        call(cols, out=out, act2=1, out2=torch.empty(2, 5, 6, 6), probe_weight=pw)
    with pytest.raises(RuntimeError, match=OP + r"act2: expected 0 \(none\) with probe_weight .*, got 2"):
        call(cols, out=out, act2=2, probe_weight=pw)
    with pytest.raises(RuntimeError, match=OP + r"probe_weight: expected size\(0\) = K >= 1 dividing "
                                                r"cols.size\(0\) = 6 .*got K = 4"):
        call(cols, out=out, probe_weight=torch.rand(4, 1, 6, 6))
    with pytest.raises(RuntimeError, match=OP + r"out: expected shape \[2, 5, 6\.\.7, 6\.\.7\], got \[6, 5, 6, 6\]"):
        call(cols, out=torch.empty(6, 5, 6, 6), probe_weight=pw)
    with pytest.raises(RuntimeError, match=OP + r"probe_weight: expected shape \[3, 1 or 5, 6, 6\]"):
        call(cols, out=out, probe_weight=torch.rand(3, 2, 6, 6))
    with pytest.raises(RuntimeError, match=OP + r"probe_weight: expected shape \[3, 1 or 5, 6, 6\]"):
        call(cols, out=out, probe_weight=torch.rand(3, 1, 6, 7))
    with pytest.raises(RuntimeError, match=OP + r"probe_weight: expected dtype Float, got BFloat16"):
        call(cols, out=out, probe_weight=pw.bfloat16())
    with pytest.raises(RuntimeError, match=OP + r"probe_weight: expected a 4-D tensor"):
        call(cols, out=out, probe_weight=pw[0])


# ---------------------------------------------------------------------------------------------- other ISA copies

SCRIPT = r"""
import torch, skipgan.ops as o
assert o.build_info()["cpu_isa"] == "{isa}", o.build_info()
g = torch.Generator().manual_seed(0)
for dt, tol in ((torch.float32, dict(rtol=1e-5, atol=1e-5)), (torch.bfloat16, dict(rtol=1e-2, atol=1e-2))):
    for c in (1, 3, 7, 40):
        for k, s, p in ((4, 2, 1), (3, 2, 1), (3, 1, 1)):
            cols = torch.randn(4, 5, 3, k, k, c, generator=g).to(dt)
            sh = torch.randn(c, generator=g)
            for fmt in (torch.contiguous_format, torch.channels_last):
                out = torch.empty(4, c, (5 - 1) * s - 2 * p + k, (3 - 1) * s - 2 * p + k, dtype=dt).contiguous(
                    memory_format=fmt)
                got = o.col2im_bias_act(cols, k, s, p, None, sh, act="tanh", act2="relu", out=out)
                ref = o.col2im_bias_act_reference(cols, k, s, p, None, sh, act="tanh", act2="relu",
                                                  output_size=out.shape[2:])
                torch.testing.assert_close(got, ref, **tol)
                pw = torch.rand(2, c, *out.shape[2:], generator=g)
                got = o.col2im_bias_act(cols, k, s, p, None, sh, act="sigmoid", out=out[:2], probe_weight=pw)
                ref = o.col2im_bias_act_reference(cols, k, s, p, None, sh, act="sigmoid", output_size=out.shape[2:],
                                                  probe_weight=pw)
                torch.testing.assert_close(got, ref, **tol)
                y = out.float().to(dt)
                got = o.bias_act(y, None, sh, act="tanh", act2="leaky_relu", out2=torch.zeros(4, c + 2, *y.shape[2:],
                                 dtype=dt)[:, 1:-1])
                torch.testing.assert_close(got, o.bias_act_reference(y, None, sh, act="tanh", act2="leaky_relu"),
                                           **tol)
print("ok")
"""


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_other_cpu_kernel_copies(isa):
    """The kernel copies this CPU does not pick by itself (ATEN_CPU_CAPABILITY), both ops."""
    assert_script_passes_with_isa(SCRIPT, isa)
