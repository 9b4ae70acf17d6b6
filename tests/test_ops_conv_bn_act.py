"""skipgan::conv_bn_act_out against the pure-PyTorch reference and against eager conv -> BN -> act -> cat."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from skipgan import ops
from skipgan.scoring import combine_scores, error_map

CUDA = pytest.mark.cuda  # conftest.py: skipped without a GPU; benchmarks/gpu_check.sh fails on such a skip
ACTS = list(ops.ACTIVATIONS)


def make(n, c_in, c_out, h, w, k=4, transposed=False, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    wshape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
    weight = torch.randn(wshape, generator=g) / (c_in * k * k) ** 0.5
    scale = 0.5 + torch.rand(c_out, generator=g)
    shift = 0.2 * torch.randn(c_out, generator=g)
    return (x.to(device, dtype), weight.to(device, dtype), scale.to(device), shift.to(device))


def tol(dtype):
    # bf16 / fp16: the conv output is rounded to the input dtype before the fp32 epilogue, the reference
    # keeps it in fp32, so allow a few ulps of the output dtype.
    return {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
            torch.float16: dict(rtol=4e-3, atol=4e-3)}[dtype]


def run_and_compare(x, weight, scale, shift, *, stride, padding, transposed=False, output_padding=0, act, act2=None,
                    out=None, out2=None, slope=0.2):
    ref = ops.conv_bn_act_reference(x, weight, scale, shift, stride=stride, padding=padding, transposed=transposed,
                                    output_padding=output_padding, act=act, act2=act2, slope=slope)
    got = ops.conv_bn_act(x, weight, scale, shift, stride=stride, padding=padding, transposed=transposed,
                          output_padding=output_padding, act=act, act2=act2, out=out, out2=out2, slope=slope)
    if act2 is None:
        ref, got = (ref,), (got,)
    for r, g in zip(ref, got):
        assert g.dtype == x.dtype
        torch.testing.assert_close(g, r, **tol(x.dtype))
    return got


# ---------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_matches_reference(dtype, transposed):
    # batch 1, odd channel counts, odd spatial size
    x, w, s, b = make(1, 3, 5, 9, 7, transposed=transposed, dtype=dtype)
    for act in ACTS:
        run_and_compare(x, w, s, b, stride=2, padding=1, transposed=transposed, act=act)


@pytest.mark.parametrize("act,act2", [("leaky_relu", "relu"), ("relu", "tanh"), ("none", "sigmoid")])
def test_second_output(act, act2):
    x, w, s, b = make(2, 4, 6, 8, 8)
    run_and_compare(x, w, s, b, stride=2, padding=1, act=act, act2=act2, slope=0.1)


def test_optional_scale_shift_and_kernel_shapes():
    x, w, s, b = make(2, 3, 5, 11, 6, k=3)
    run_and_compare(x, w, None, None, stride=1, padding=1, act="relu")
    run_and_compare(x, w, s, None, stride=(1, 2), padding=(0, 1), act="tanh")
    run_and_compare(x, w, None, b, stride=1, padding=0, act="leaky_relu")  # shift only = a conv bias
    x, w, s, b = make(2, 3, 5, 11, 6, k=1)
    run_and_compare(x, w, s, b, stride=1, padding=0, act="sigmoid")


def test_transposed_output_padding_from_out_shape():
    x, w, s, b = make(2, 4, 3, 5, 6, k=3, transposed=True)
    # stride 2, kernel 3, padding 1: 2H-1 or 2H are both valid output heights; `out` decides.
    run_and_compare(x, w, s, b, stride=2, padding=1, transposed=True, output_padding=(1, 0), act="relu")
    run_and_compare(x, w, s, b, stride=2, padding=1, transposed=True, output_padding=(0, 1), act="relu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_and_noncontiguous_inputs(dtype):
    x, w, s, b = make(2, 6, 7, 10, 9, dtype=dtype)
    cl = torch.channels_last
    run_and_compare(x.contiguous(memory_format=cl), w, s, b, stride=2, padding=1, act="leaky_relu", act2="relu")
    run_and_compare(x.contiguous(memory_format=cl), w.contiguous(memory_format=cl), s, b, stride=1, padding=2,
                    act="tanh")
    run_and_compare(x[:, :, 1:, ::1].transpose(2, 3), w, s, b, stride=1, padding=1, act="relu")
    wt = make(2, 6, 5, 4, 4, transposed=True, dtype=dtype)[1]
    run_and_compare(x.contiguous(memory_format=cl), wt, s[:5], b[:5], stride=2, padding=1, transposed=True,
                    act="relu")


def test_few_channels_channels_last():
    """The last layer's shape: 3 output channels, channels_last, tanh(convT + bias), dense and sliced outputs."""
    x, w, _, b = make(3, 8, 3, 13, 11, transposed=True)
    x = x.contiguous(memory_format=torch.channels_last)
    run_and_compare(x, w, None, b, stride=2, padding=1, transposed=True, act="tanh", act2="sigmoid")
    d_in = torch.full((6, 3, 26, 22), 7.0).contiguous(memory_format=torch.channels_last)  # [x; x_hat] buffer
    run_and_compare(x, w, None, b, stride=2, padding=1, transposed=True, act="tanh", out=d_in[3:])
    assert torch.all(d_in[:3] == 7)


@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_writes_into_channel_slices(fmt, dtype):
    mf = torch.contiguous_format if fmt == "nchw" else torch.channels_last
    x, w, s, b = make(2, 5, 7, 12, 10, dtype=dtype)
    x = x.contiguous(memory_format=mf)
    buf = torch.full((2, 16, 6, 5), 7.0, dtype=dtype).contiguous(memory_format=mf)
    buf2 = torch.full((2, 9, 6, 5), 7.0, dtype=dtype).contiguous(memory_format=mf)
    out, out2 = buf[:, 3:10], buf2[:, 2:]
    run_and_compare(x, w, s, b, stride=2, padding=1, act="leaky_relu", act2="relu", out=out, out2=out2)
    # everything outside the slices is untouched
    assert torch.all(buf[:, :3] == 7) and torch.all(buf[:, 10:] == 7) and torch.all(buf2[:, :2] == 7)
    # a slice along H/W too (general-stride path)
    big = torch.full((2, 7, 12, 5), 7.0, dtype=dtype)
    run_and_compare(x, w, s, b, stride=2, padding=1, act="relu", out=big[:, :, ::2])
    assert torch.all(big[:, :, 1::2] == 7)


def folded_bn(bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale.detach(), (bn.bias - bn.running_mean * scale).detach()


@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
def test_unet_level_against_eager(fmt):
    """One UNet level the way the engine runs it: no torch.cat, no separate BN / activation kernels.

    Encoder: y = BN(conv(a)); LeakyReLU(y) feeds the next encoder conv and ReLU(y) is the skip half of the
    decoder input (ReLU(cat(a_k, d_k)) in the eager model). Decoder: ReLU(BN(convT(.))) into the other half.
    """
    torch.manual_seed(0)
    mf = torch.contiguous_format if fmt == "nchw" else torch.channels_last
    n, c_in, c, h = 3, 8, 16, 16
    conv = torch.nn.Conv2d(c_in, c, 4, 2, 1, bias=False)
    bn = torch.nn.BatchNorm2d(c)
    convt = torch.nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False)
    bnt = torch.nn.BatchNorm2d(c)
    for m in (bn, bnt):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.uniform_(-0.2, 0.2)
    bn.eval()
    bnt.eval()
    a = torch.randn(n, c_in, h, h).contiguous(memory_format=mf)
    inner = torch.randn(n, 2 * c, h // 4, h // 4).contiguous(memory_format=mf)

    with torch.no_grad():
        y = bn(conv(a))
        next_in_ref = F.leaky_relu(y, 0.2)
        d = bnt(convt(F.relu(inner)))
        cat_ref = F.relu(torch.cat([y, d], 1))

        next_in = torch.empty(n, c, h // 2, h // 2).contiguous(memory_format=mf)
        cat_buf = torch.empty(n, 2 * c, h // 2, h // 2).contiguous(memory_format=mf)
        s, b = folded_bn(bn)
        torch.ops.skipgan.conv_bn_act_out(a, conv.weight, s, b, [2, 2], [1, 1], False, ops.ACTIVATIONS["leaky_relu"],
                                          0.2, next_in, ops.ACTIVATIONS["relu"], cat_buf[:, :c])
        st, bt = folded_bn(bnt)
        torch.ops.skipgan.conv_bn_act_out(F.relu(inner), convt.weight, st, bt, [2, 2], [1, 1], True,
                                          ops.ACTIVATIONS["relu"], 0.0, cat_buf[:, c:])
    torch.testing.assert_close(next_in, next_in_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cat_buf, cat_ref, rtol=1e-4, atol=1e-5)


def test_empty_batch():
    x, w, s, b = make(0, 3, 4, 8, 8)
    out = torch.empty(0, 4, 4, 4)
    torch.ops.skipgan.conv_bn_act_out(x, w, s, b, [2, 2], [1, 1], False, 1, 0.0, out)


# ---------------------------------------------------------------------------------------------- opcheck


def opcheck_samples(device):
    x, w, s, b = make(2, 3, 5, 7, 9, device=device)
    relu, leaky, tanh = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh"))
    yield (x, w, s, b, [2, 2], [1, 1], False, leaky, 0.2, torch.empty(2, 5, 3, 4, device=device), 0, None)
    buf = torch.empty(2, 12, 3, 4, device=device)
    yield (x, w, s, None, [2, 2], [1, 1], False, leaky, 0.2, buf[:, :5], relu, buf[:, 6:11])
    xt, wt, st, bt = make(2, 3, 5, 4, 3, transposed=True, device=device)
    out = torch.empty(2, 5, 8, 6, device=device).contiguous(memory_format=torch.channels_last)
    yield (xt.contiguous(memory_format=torch.channels_last), wt, st, bt, [2, 2], [1, 1], True, tanh, 0.0, out, 0,
           None)
    yield (x, w, s, b, [2, 2], [1, 1], False, relu, 0.0, torch.empty(2, 5, 3, 4, device=device), 0, None, True)


def test_opcheck_cpu():
    for args in opcheck_samples("cpu"):
        torch.library.opcheck(torch.ops.skipgan.conv_bn_act_out.default, args)


# ---------------------------------------------------------------------------------------------- bad input


def call(x, w, scale=None, shift=None, stride=(2, 2), padding=(1, 1), transposed=False, act=1, out=None, act2=0,
         out2=None):
    torch.ops.skipgan.conv_bn_act_out(x, w, scale, shift, list(stride), list(padding), transposed, act, 0.2, out,
                                      act2, out2)


def test_rejects_bad_input():
    x, w, s, b = make(2, 3, 5, 8, 8)
    out = torch.empty(2, 5, 4, 4)
    with pytest.raises(RuntimeError, match=r"x: expected a 4-D tensor, got 3-D"):
        call(x[0], w, out=out)
    with pytest.raises(RuntimeError, match=r"x: expected dtype float32, float16 or bfloat16, got Double"):
        call(x.double(), w.double(), out=out.double())
    with pytest.raises(RuntimeError, match=r"weight: expected dtype Float \(the dtype of x\), got BFloat16"):
        call(x, w.bfloat16(), out=out)
    with pytest.raises(RuntimeError, match=r"weight: expected a 4-D tensor"):
        call(x, w[0], out=out)
    with pytest.raises(RuntimeError, match=r"weight: expected size\(1\) == 2 \(the channels of x"):
        call(x[:, :2], w, out=out)
    with pytest.raises(RuntimeError, match=r"weight: expected size\(0\) == 3"):
        call(x, w, transposed=True, out=out)
    with pytest.raises(RuntimeError, match=r"scale: expected shape \[5\] \(one value per output channel\), got \[4\]"):
        call(x, w, scale=s[:4], out=out)
    with pytest.raises(RuntimeError, match=r"shift: expected dtype Float, got Double"):
        call(x, w, shift=b.double(), out=out)
    with pytest.raises(RuntimeError, match=r"stride: expected two values >= 1"):
        call(x, w, stride=(0, 2), out=out)
    with pytest.raises(RuntimeError, match=r"padding: expected two values >= 0"):
        call(x, w, padding=(-1, 1), out=out)
    with pytest.raises(RuntimeError, match=r"act: expected an activation code 0..4"):
        call(x, w, act=7, out=out)
    with pytest.raises(RuntimeError, match=r"act2: expected an activation code 0..4"):
        call(x, w, act2=-1, out=out)
    with pytest.raises(RuntimeError, match=r"x: spatial size \[2, 2\]"):
        call(x[:, :, :2, :2], w, padding=(0, 0), out=out)


def test_rejects_bad_outputs():
    x, w, s, b = make(2, 3, 5, 8, 8)
    with pytest.raises(RuntimeError, match=r"out: expected shape \[2, 5, 4, 4\], got \[2, 5, 4, 3\]"):
        call(x, w, out=torch.empty(2, 5, 4, 3))
    with pytest.raises(RuntimeError, match=r"out: expected dtype Float \(the dtype of x\), got Half"):
        call(x, w, out=torch.empty(2, 5, 4, 4, dtype=torch.half))
    with pytest.raises(RuntimeError, match=r"out: expected a 4-D tensor"):
        call(x, w, out=torch.empty(2, 80))
    buf = torch.empty(2, 12, 4, 4)
    with pytest.raises(RuntimeError, match=r"out2: expected shape \[2, 5, 4, 4\] \(the shape of out\), got \[2, 4, 4, 4\]"):
        call(x, w, out=buf[:, :5], act2=1, out2=buf[:, 5:9])
    flat = torch.empty(2 * 160)
    # (overlap is detected where ATen can tell cheaply: contiguous views; strided slices are not analysed)
    with pytest.raises(RuntimeError, match=r"out2: expected memory disjoint from out"):
        call(x, w, out=flat[:160].view(2, 5, 4, 4), act2=1, out2=flat[80:240].view(2, 5, 4, 4))
    with pytest.raises(RuntimeError, match=r"out2: expected dtype Float"):
        call(x, w, out=buf[:, :5], act2=1, out2=torch.empty(2, 5, 4, 4, dtype=torch.bfloat16))
    xt, wt, _, _ = make(2, 3, 5, 4, 4, transposed=True)
    with pytest.raises(RuntimeError, match=r"out: expected shape \[2, 5, 8\.\.9, 8\.\.9\], got \[2, 5, 10, 8\]"):
        call(xt, wt, transposed=True, padding=(1, 1), stride=(2, 2), out=torch.empty(2, 5, 10, 8))
    with pytest.raises(RuntimeError, match=r"out: expected .*internal overlap|unsupported operation"):
        call(x, w, out=torch.empty(1, 5, 4, 4).expand(2, 5, 4, 4))


# ---------------------------------------------------------------------------------------------- autocast, TF32


@pytest.fixture
def cuda_like_autocast():
    """CPU autocast with CUDA's rule for convolutions: under AutocastCPU, aten::convolution and aten::_convolution
    run in bf16 (CUDA's autocast lists both; the CPU's lists neither, so the hazard is otherwise CUDA's alone).
    Yields the names of the calls it cast."""
    cast = []
    lib = torch.library.Library("aten", "IMPL")

    def kernel(name):
        op = getattr(torch.ops.aten, name).default

        def run(*args):
            cast.append(name)
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)):
                return op(*(a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                            for a in args))
        return run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        for name in ("convolution", "_convolution"):
            lib.impl(name, kernel(name), "AutocastCPU")
    try:
        yield cast
    finally:
        lib._destroy()


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_autocast_region_does_not_reach_the_convolution(cuda_like_autocast, transposed):
    """The op computes in x's dtype inside an autocast region that casts convolutions (as CUDA's does): the guard
    keeps autocast away from its inner convolution. Without it the epilogue read a bf16 result as fp32."""
    x, w, s, b = make(2, 3, 5, 9, 7, transposed=transposed)
    want = ops.conv_bn_act_reference(x, w, s, b, stride=2, padding=1, transposed=transposed, act="leaky_relu")
    got = torch.empty_like(want)
    with torch.autocast("cpu", torch.bfloat16):
        probe = torch.ops.aten.convolution(x, w, None, [2, 2], [1, 1], [1, 1], transposed, [0, 0], 1)
        assert probe.dtype == torch.bfloat16  # the CUDA-like rule is in force
        call(x, w, s, b, transposed=transposed, act=ops.ACTIVATIONS["leaky_relu"], out=got)
    assert cuda_like_autocast == ["convolution"]  # the op's own convolution was never cast
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_tf32_is_the_ops_argument_not_a_global_flag():
    """fp32 means fp32: TF32 is the op's argument (default False), not torch.backends.cudnn.allow_tf32; on the CPU it
    changes nothing (the CUDA test below checks the GPU)."""
    arg = next(a for a in torch.ops.skipgan.conv_bn_act_out.default._schema.arguments if a.name == "tf32")
    assert arg.default_value is False
    x, w, s, b = make(2, 3, 5, 9, 7)
    plain = ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="relu")
    assert torch.equal(plain, ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="relu", tf32=True))
    torch.testing.assert_close(plain, ops.conv_bn_act_reference(x, w, s, b, stride=2, padding=1, act="relu"),
                               rtol=1e-5, atol=1e-6)


@pytest.fixture
def grid_cap():
    """Set the CUDA kernels' grid cap (the test hook skipgan::_set_cuda_grid_cap); restored to none after."""
    caps = []

    def set_cap(n):
        caps.append(torch.ops.skipgan._set_cuda_grid_cap(n))
    yield set_cap
    torch.ops.skipgan._set_cuda_grid_cap(0)


def test_grid_cap_hook(grid_cap):
    """The hook that lets the CUDA tests run the grid-stride loops (the kernels' behaviour is checked on a GPU)."""
    assert torch.ops.skipgan._set_cuda_grid_cap(3) == 0
    assert torch.ops.skipgan._set_cuda_grid_cap(0) == 3
    with pytest.raises(RuntimeError, match=r"_set_cuda_grid_cap: cap: expected 0\.\."):
        torch.ops.skipgan._set_cuda_grid_cap(-1)


# ---------------------------------------------------------------------------------------------- CUDA


@CUDA
def test_opcheck_cuda():
    for args in opcheck_samples("cuda"):
        torch.library.opcheck(torch.ops.skipgan.conv_bn_act_out.default, args)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
@pytest.mark.parametrize("fmt", ["nchw", "channels_last"])
def test_cuda_matches_reference(dtype, transposed, fmt, monkeypatch):
    # compare fp32 against an fp32 reference; monkeypatch restores the global flag for the tests that follow
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    mf = torch.contiguous_format if fmt == "nchw" else torch.channels_last
    x, w, s, b = make(2, 3, 5, 9, 7, transposed=transposed, dtype=dtype, device="cuda")
    x = x.contiguous(memory_format=mf)
    for act in ACTS:
        run_and_compare(x, w, s, b, stride=2, padding=1, transposed=transposed, act=act)
    op = 1 if transposed else 0
    n, co, ho, wo = ops._conv_out_shape(x, w, 2, 1, transposed, op)
    buf = torch.full((n, co + 4, ho, wo), 7.0, dtype=dtype, device="cuda").contiguous(memory_format=mf)
    buf2 = torch.full((n, co + 1, ho, wo), 7.0, dtype=dtype, device="cuda").contiguous(memory_format=mf)
    run_and_compare(x, w, s, b, stride=2, padding=1, transposed=transposed, act="leaky_relu", act2="relu",
                    out=buf[:, 2:2 + co], out2=buf2[:, 1:], output_padding=op)
    assert torch.all(buf[:, :2] == 7) and torch.all(buf[:, 2 + co:] == 7) and torch.all(buf2[:, :1] == 7)


@CUDA
def test_cuda_rejects_mixed_devices():
    x, w, s, b = make(2, 3, 5, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"weight: expected device cuda:0 \(the device of x\), got cpu"):
        call(x, w.cpu(), out=torch.empty(2, 5, 4, 4, device="cuda"))
    with pytest.raises(RuntimeError, match=r"out: expected device cuda:0 \(the device of x\), got cpu"):
        call(x, w, out=torch.empty(2, 5, 4, 4))
    with pytest.raises(RuntimeError, match=r"scale: expected device cuda:0"):
        call(x, w, scale=s.cpu(), out=torch.empty(2, 5, 4, 4, device="cuda"))


@CUDA
def test_cuda_graph_capture():
    """Both ops inside one captured CUDA graph (the engine replays one per batch size): no sync, no host work."""
    x, w, s, b = make(2, 3, 5, 8, 8, device="cuda")
    x_hat = torch.rand_like(x)
    f, f_hat = torch.randn(2, 7, device="cuda"), torch.randn(2, 7, device="cuda")
    out, buf = torch.empty(2, 5, 4, 4, device="cuda"), torch.zeros(2, 10, 4, 4, device="cuda")
    scores, maps = torch.empty(2, device="cuda"), torch.empty(2, 8, 8, device="cuda")

    def body():
        torch.ops.skipgan.conv_bn_act_out(x, w, s, b, [2, 2], [1, 1], False, ops.ACTIVATIONS["leaky_relu"], 0.2,
                                          out, ops.ACTIVATIONS["relu"], buf[:, 5:])
        torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, 0.9, scores, maps)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream (cuDNN plans, allocator)
        body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    ref = ops.conv_bn_act_reference(x, w, s, b, stride=2, padding=1, act="leaky_relu", act2="relu")
    torch.testing.assert_close(out, ref[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(buf[:, 5:], ref[1], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(scores, combine_scores(x, x_hat, f, f_hat, 0.9)[0])
    torch.testing.assert_close(maps, error_map(x, x_hat))


@CUDA
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_cuda_fp32_is_true_fp32_whatever_the_global_tf32_flag(transposed):
    """The cuda fixture pins torch.backends.cudnn.allow_tf32 = True (PyTorch's default); the op's fp32 is still fp32
    (the reference runs with TF32 off), and tf32=True is the explicit opt-in. Sizes large enough for tensor-core
    algorithms, where TF32 (10-bit mantissas) errs by ~1e-3 over 1024-term sums."""
    assert torch.backends.cudnn.allow_tf32
    x, w, s, b = make(8, 64, 64, 32, 32, transposed=transposed, device="cuda")
    kw = dict(stride=2, padding=1, transposed=transposed, output_padding=1 if transposed else 0, act="none")
    want = ops.conv_bn_act_reference(x, w, s, b, **kw)
    out = torch.empty_like(want)
    del kw["output_padding"]
    torch.testing.assert_close(ops.conv_bn_act(x, w, s, b, out=out, **kw), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ops.conv_bn_act(x, w, s, b, out=torch.empty_like(want), tf32=True, **kw), want,
                               rtol=1e-2, atol=1e-2)


@CUDA
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_region_does_not_reach_the_convolution(dtype):
    """Under CUDA autocast (which casts convolutions) the op still computes in x's dtype: fp32 in, fp32 out, the
    same numbers as outside the region."""
    x, w, s, b = make(2, 3, 5, 9, 7, device="cuda")
    want = ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="leaky_relu")
    with torch.autocast("cuda", dtype):
        got = ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="leaky_relu")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@CUDA
@pytest.mark.parametrize("cap", [1, 3])
def test_cuda_epilogue_grid_stride_loop(grid_cap, cap):
    """More elements than a capped grid covers: the epilogue's grid-stride loop gives what one pass gives."""
    x, w, s, b = make(4, 3, 5, 32, 32, device="cuda")  # 4 x 5 x 16 x 16 outputs: 20 blocks of 256 uncapped
    buf = torch.zeros(4, 12, 16, 16, device="cuda")
    want = ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="leaky_relu", act2="relu")
    grid_cap(cap)
    got = ops.conv_bn_act(x, w, s, b, stride=2, padding=1, act="leaky_relu", act2="relu", out=buf[:, 1:6],
                          out2=buf[:, 6:11])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.all(buf[:, 0] == 0) and torch.all(buf[:, 11] == 0)
