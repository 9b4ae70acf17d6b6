"""skipgan::bias_act_out (conv_bn_act's epilogue on a given y) against the pure-PyTorch reference."""

import pytest
import torch

from skipgan import ops

CUDA = pytest.mark.cuda  # conftest.py: skipped without a GPU; benchmarks/gpu_check.sh fails on such a skip
ACTS = list(ops.ACTIVATIONS)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def make(n, c, h, w, dtype=torch.float32, fmt="nchw", device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (2 * torch.randn(n, c, h, w, generator=g)).to(device, dtype).contiguous(memory_format=FORMATS[fmt])
    scale = (0.5 + torch.rand(c, generator=g)).to(device)
    shift = (0.2 * torch.randn(c, generator=g)).to(device)
    return y, scale, shift


def tol(dtype):
    # Same input values on both sides (fp32 math); only the vectorised tanh / exp and the final rounding differ.
    return {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
            torch.float16: dict(rtol=2e-3, atol=2e-3)}[dtype]


def run_and_compare(y, scale, shift, *, act, act2=None, out=None, out2=None, slope=0.2):
    ref = ops.bias_act_reference(y, scale, shift, act=act, act2=act2, slope=slope)
    got = ops.bias_act(y, scale, shift, act=act, act2=act2, out=out, out2=out2, slope=slope)
    if act2 is None:
        ref, got = (ref,), (got,)
    for r, g in zip(ref, got):
        assert g.dtype == y.dtype
        torch.testing.assert_close(g, r, **tol(y.dtype))
    return got


# ---------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_matches_reference(dtype, fmt):
    # batch 1, odd channel counts and sizes, 1x1 maps, one channel
    for shape in [(1, 3, 5, 7), (2, 5, 2, 2), (3, 1, 5, 5), (2, 7, 1, 1), (1, 1, 1, 1)]:
        y, s, b = make(*shape, dtype=dtype, fmt=fmt)
        for act in ACTS:
            run_and_compare(y, s, b, act=act)
        run_and_compare(y, s, b, act="leaky_relu", act2="tanh", slope=0.1)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_many_channels_and_long_rows(fmt):
    # C > 256: channels_last rows go one pixel at a time; H*W > 512: NCHW planes span several blocks
    for shape in [(2, 300, 3, 2), (2, 4, 33, 21)]:
        y, s, b = make(*shape, fmt=fmt)
        run_and_compare(y, s, b, act="sigmoid", act2="relu")


def test_tanh_special_values():
    # the CPU tanh is a clamped rational function: NaN must stay NaN, +-inf and large values give +-1
    vals = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, 3e-4, 5e-4, 0.3, -2.0, 7.9,
                         8.0, 20.0, -1e30])
    y = vals.repeat(8).view(1, 1, 1, -1)  # one plane of 112: the vectorised path
    got = ops.bias_act(y, act="tanh")
    torch.testing.assert_close(got, torch.tanh(y), rtol=2e-7, atol=2e-7, equal_nan=True)


def test_optional_scale_shift():
    y, s, b = make(2, 6, 5, 4, fmt="channels_last")
    run_and_compare(y, None, None, act="relu")
    run_and_compare(y, s, None, act="tanh")
    run_and_compare(y, None, b, act="leaky_relu")  # the engine's case: BN folded into the weights, shift only


def test_output_follows_y_when_allocated():
    y, s, b = make(2, 6, 5, 4, fmt="channels_last")
    out = ops.bias_act(y, s, b, act="relu")
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("y_fmt", list(FORMATS))
@pytest.mark.parametrize("out_fmt", list(FORMATS))
def test_writes_into_channel_slices(dtype, y_fmt, out_fmt):
    y, s, b = make(2, 5, 6, 7, dtype=dtype, fmt=y_fmt)
    mf = FORMATS[out_fmt]
    buf = torch.full((2, 12, 6, 7), 7.0, dtype=dtype).contiguous(memory_format=mf)
    buf2 = torch.full((2, 8, 6, 7), 7.0, dtype=dtype).contiguous(memory_format=mf)
    run_and_compare(y, s, b, act="leaky_relu", act2="relu", out=buf[:, 4:9], out2=buf2[:, 3:])
    assert torch.all(buf[:, :4] == 7) and torch.all(buf[:, 9:] == 7) and torch.all(buf2[:, :3] == 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("y_fmt", list(FORMATS))
@pytest.mark.parametrize("out_fmt", list(FORMATS))
def test_writes_into_zero_bordered_buffer(dtype, y_fmt, out_fmt):
    """The engine's im2col input: the interior of a buffer whose 1-pixel border must stay zero (the padding)."""
    for c in (3, 16):
        y, s, b = make(2, c, 5, 6, dtype=dtype, fmt=y_fmt)
        padded = torch.zeros(2, c, 7, 8, dtype=dtype).contiguous(memory_format=FORMATS[out_fmt])
        run_and_compare(y, s, b, act="leaky_relu", out=padded[:, :, 1:-1, 1:-1])
        border = padded.clone()
        border[:, :, 1:-1, 1:-1] = 0
        assert torch.all(border == 0)


def test_engine_gemm_result_view():
    """The engine's call: a GEMM result [N*H*W, C] seen as NCHW through a permute (channels_last strides)."""
    g = torch.Generator().manual_seed(3)
    n, h, c = 3, 4, 10
    yy = torch.randn(n * h * h, c, generator=g)
    y = yy.view(n, h, h, c).permute(0, 3, 1, 2)
    shift = torch.randn(c, generator=g)
    nhwc = torch.zeros(n, h + 2, h + 2, 2 * c)  # zero-bordered NHWC buffer, we fill its first c channels
    out = nhwc.permute(0, 3, 1, 2)[:, :c, 1:-1, 1:-1]
    run_and_compare(y, None, shift, act="relu", out=out)
    assert torch.all(nhwc[..., c:] == 0) and torch.all(nhwc[:, 0] == 0) and torch.all(nhwc[:, :, -1] == 0)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_in_place(fmt):
    y, s, b = make(2, 5, 6, 7, fmt=fmt)
    ref = ops.bias_act_reference(y, s, b, act="tanh")
    out = ops.bias_act(y, s, b, act="tanh", out=y)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(y, ref, **tol(y.dtype))


def test_noncontiguous_y_is_copied():
    y, s, b = make(2, 5, 8, 7)
    run_and_compare(y[:, :, ::2], s, b, act="relu")
    run_and_compare(y.transpose(2, 3), s, b, act="sigmoid")


def test_empty_batch():
    y, s, b = make(0, 3, 4, 4)
    torch.ops.skipgan.bias_act_out(y, s, b, 1, 0.0, torch.empty_like(y))


def test_deterministic_across_thread_counts():
    y, s, b = make(4, 64, 17, 19, fmt="channels_last")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.bias_act(y, s, b, act="tanh", act2="leaky_relu")
        torch.set_num_threads(2)
        two = ops.bias_act(y, s, b, act="tanh", act2="leaky_relu")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


# ---------------------------------------------------------------------------------------------- opcheck


def opcheck_samples(device):
    relu, leaky, tanh = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh"))
    y, s, b = make(2, 5, 3, 4, device=device)
    yield (y, s, b, leaky, 0.2, torch.empty(2, 5, 3, 4, device=device), 0, None)
    buf = torch.empty(2, 12, 3, 4, device=device)
    yield (y, None, b, leaky, 0.2, buf[:, :5], relu, buf[:, 6:11])
    y, s, b = make(2, 3, 4, 3, fmt="channels_last", device=device)
    padded = torch.zeros(2, 3, 6, 5, device=device).contiguous(memory_format=torch.channels_last)
    yield (y, s, None, tanh, 0.0, padded[:, :, 1:-1, 1:-1], 0, None)


def test_opcheck_cpu():
    for args in opcheck_samples("cpu"):
        torch.library.opcheck(torch.ops.skipgan.bias_act_out.default, args)


# ---------------------------------------------------------------------------------------------- bad input


def call(y, scale=None, shift=None, act=1, out=None, act2=0, out2=None):
    torch.ops.skipgan.bias_act_out(y, scale, shift, act, 0.2, out, act2, out2)


def test_rejects_bad_input():
    y, s, b = make(2, 5, 4, 4)
    out = torch.empty(2, 5, 4, 4)
    op = r"skipgan::bias_act_out: "
    with pytest.raises(RuntimeError, match=op + r"y: expected a 4-D tensor, got 3-D"):
        call(y[0], out=out)
    with pytest.raises(RuntimeError, match=op + r"y: expected dtype float32, float16 or bfloat16, got Double"):
        call(y.double(), out=out.double())
    with pytest.raises(RuntimeError, match=op + r"out: expected dtype Float \(the dtype of y\), got Half"):
        call(y, out=out.half())
    with pytest.raises(RuntimeError, match=op + r"out: expected shape \[2, 5, 4, 4\] \(the shape of y\), got "
                                               r"\[2, 5, 4, 3\]"):
        call(y, out=torch.empty(2, 5, 4, 3))
    with pytest.raises(RuntimeError, match=op + r"scale: expected shape \[5\] \(one value per output channel\)"):
        call(y, scale=s[:4], out=out)
    with pytest.raises(RuntimeError, match=op + r"shift: expected dtype Float, got BFloat16"):
        call(y, shift=b.bfloat16(), out=out)
    with pytest.raises(RuntimeError, match=op + r"act: expected an activation code 0..4"):
        call(y, act=5, out=out)
    with pytest.raises(RuntimeError, match=op + r"act2: expected an activation code 0..4"):
        call(y, act2=-1, out=out)


def test_rejects_bad_outputs():
    y, s, b = make(2, 5, 4, 4)
    op = r"skipgan::bias_act_out: "
    buf = torch.empty(2, 12, 4, 4)
    with pytest.raises(RuntimeError, match=op + r"out2: expected shape \[2, 5, 4, 4\] \(the shape of out\)"):
        call(y, out=buf[:, :5], act2=1, out2=buf[:, 5:9])
    with pytest.raises(RuntimeError, match=op + r"out2: expected dtype Float"):
        call(y, out=buf[:, :5], act2=1, out2=torch.empty(2, 5, 4, 4, dtype=torch.bfloat16))
    flat = torch.empty(2 * 80 + 16)
    with pytest.raises(RuntimeError, match=op + r"out2: expected memory disjoint from out"):
        call(y, out=flat[:160].view(2, 5, 4, 4), act2=1, out2=flat[16:176].view(2, 5, 4, 4))
    # y itself is fine (in place), a shifted view of y's memory is not
    big = torch.randn(2 * 80 + 16)
    with pytest.raises(RuntimeError, match=op + r"out: expected memory disjoint from y, or y itself"):
        call(big[16:176].view(2, 5, 4, 4), out=big[:160].view(2, 5, 4, 4))
    with pytest.raises(RuntimeError, match=r"internal overlap|unsupported operation"):
        call(y, out=torch.empty(1, 5, 4, 4).expand(2, 5, 4, 4))


# ---------------------------------------------------------------------------------------------- CUDA


@CUDA
def test_opcheck_cuda():
    for args in opcheck_samples("cuda"):
        torch.library.opcheck(torch.ops.skipgan.bias_act_out.default, args)


@CUDA
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_cuda_matches_reference(dtype, fmt):
    for shape in [(1, 3, 5, 7), (2, 7, 1, 1), (2, 300, 3, 2)]:
        y, s, b = make(*shape, dtype=dtype, fmt=fmt, device="cuda")
        for act in ACTS:
            run_and_compare(y, s, b, act=act)
    y, s, b = make(2, 5, 6, 7, dtype=dtype, fmt=fmt, device="cuda")
    buf = torch.full((2, 9, 6, 7), 7.0, dtype=dtype, device="cuda").contiguous(memory_format=FORMATS[fmt])
    padded = torch.zeros(2, 5, 8, 9, dtype=dtype, device="cuda").contiguous(memory_format=FORMATS[fmt])
    run_and_compare(y, s, b, act="leaky_relu", act2="relu", out=buf[:, 2:7], out2=padded[:, :, 1:-1, 1:-1])
    assert torch.all(buf[:, :2] == 7) and torch.all(buf[:, 7:] == 7)
    padded[:, :, 1:-1, 1:-1] = 0
    assert torch.all(padded == 0)


@CUDA
def test_cuda_rejects_mixed_devices():
    y, s, b = make(2, 5, 4, 4, device="cuda")
    with pytest.raises(RuntimeError, match=r"bias_act_out: out: expected device cuda:0 \(the device of y\), got cpu"):
        call(y, out=torch.empty(2, 5, 4, 4))
    with pytest.raises(RuntimeError, match=r"bias_act_out: scale: expected device cuda:0"):
        call(y, scale=s.cpu(), out=torch.empty_like(y))
