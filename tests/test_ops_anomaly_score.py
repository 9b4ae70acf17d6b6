"""skipgan::anomaly_score / anomaly_score_out against the pure-PyTorch reference in skipgan.ops."""

import pytest
import torch

from skipgan import ops

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
LAM = 0.9


def make(b, c, h, w, feat=(7,), dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    x_hat = (x + 0.1 * torch.randn(b, c, h, w, generator=g)).clamp(0, 1)
    f = torch.randn(b, *feat, generator=g)
    f_hat = f + 0.3 * torch.randn(b, *feat, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (x, x_hat, f, f_hat)]


def tol(dtype):
    # The kernel accumulates in fp32 from the same rounded inputs as the reference: only summation order
    # differs, whatever the input dtype.
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-4, atol=1e-6)


def check(x, x_hat, f, f_hat, lam=LAM):
    ref_s, ref_map = ops.anomaly_score_reference(x, x_hat, f, f_hat, lam, error_map=True)
    s = ops.anomaly_score(x, x_hat, f, f_hat, lam)
    s2, m = ops.anomaly_score(x, x_hat, f, f_hat, lam, error_map=True)
    assert s.dtype == torch.float32 and s.shape == (x.shape[0],)
    assert m.dtype == torch.float32 and m.shape == (x.shape[0], x.shape[2], x.shape[3])
    torch.testing.assert_close(s, ref_s, **tol(x.dtype))
    torch.testing.assert_close(m, ref_map, **tol(x.dtype))
    # The same reduction runs with or without a map: identical scores, not just close ones.
    assert torch.equal(s, s2)


# ---------------------------------------------------------------------------------------------- numerics

SHAPES = [
    (1, 3, 7, 5),  # batch 1, odd spatial size, fewer elements than one vector
    (3, 1, 33, 17),  # one channel, odd sizes
    (2, 3, 32, 32),
    (2, 5, 100, 50),  # 5000 pixels: two image chunks, odd channel count
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype):
    check(*make(*shape, dtype=dtype))


@pytest.mark.parametrize("feat", [(1,), (3, 5, 5), (20000,)], ids=["1", "3x5x5", "20000"])
def test_feature_shapes(feat):
    # (20000,) spans two feature chunks; (1,) a single element per sample.
    check(*make(2, 3, 8, 8, feat=feat))


def test_channels_last():
    x, x_hat, f, f_hat = make(2, 3, 17, 9)
    cl = torch.channels_last
    check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat)
    # 5000 pixels x 5 channels: several scratch blocks and two chunks on the interleaved path.
    x, x_hat, f, f_hat = make(2, 5, 100, 50)
    check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat)


def test_mixed_and_noncontiguous_layouts():
    x, x_hat, f, f_hat = make(2, 3, 16, 12)
    check(x, x_hat.contiguous(memory_format=torch.channels_last), f, f_hat)  # mixed layouts: copied
    big = torch.rand(2, 3, 32, 24)
    check(big[:, :, ::2, ::2], x_hat, f, f_hat)  # strided view
    check(x.transpose(2, 3), x_hat.transpose(2, 3), f, f_hat)
    fb = torch.randn(2, 7, 4)
    check(x, x_hat, fb[:, :, 0], fb[:, :, 1])  # non-contiguous features
    check(x, x_hat, f.t().contiguous().t(), f_hat)  # features with different strides


def test_halves_of_one_buffer():
    # The engine's discriminator buffer holds [x; x_hat]: both inputs are views with an offset.
    x, x_hat, f, f_hat = make(3, 3, 8, 8)
    buf = torch.cat([x, x_hat])
    check(buf[:3], buf[3:], f, f_hat)
    fbuf = torch.cat([f, f_hat])
    check(buf[:3], buf[3:], fbuf[:3], fbuf[3:])


def test_empty_batch():
    x, x_hat, f, f_hat = make(0, 3, 4, 4)
    assert ops.anomaly_score(x, x_hat, f, f_hat).shape == (0,)


def test_lam_extremes():
    x, x_hat, f, f_hat = make(2, 3, 8, 8)
    for lam in (0.0, 1.0, 0.25):
        check(x, x_hat, f, f_hat, lam)


def test_out_variant_writes_into_views():
    x, x_hat, f, f_hat = make(4, 3, 8, 8)
    scores = torch.full((2, 4), -1.0)
    maps = torch.zeros(4, 8, 8)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, scores[1], maps)
    ref_s, ref_m = ops.anomaly_score_reference(x, x_hat, f, f_hat, LAM, error_map=True)
    torch.testing.assert_close(scores[1], ref_s)
    assert torch.all(scores[0] == -1)
    torch.testing.assert_close(maps, ref_m)
    col = torch.zeros(4, 2)  # strided scores
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, col[:, 1])
    torch.testing.assert_close(col[:, 1], ref_s)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_deterministic_for_any_thread_count(layout):
    x, x_hat, f, f_hat = make(5, 3, 96, 80, feat=(40000,))  # several chunks of each kind per sample
    if layout == "channels_last":
        x, x_hat = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_hat))
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(ops.anomaly_score(x, x_hat, f, f_hat, error_map=True))
    finally:
        torch.set_num_threads(before)
    for s, m in results[1:]:
        assert torch.equal(s, results[0][0]) and torch.equal(m, results[0][1])


# ---------------------------------------------------------------------------------------------- opcheck


def opcheck_samples(device):
    x, x_hat, f, f_hat = make(2, 3, 9, 7, feat=(4, 3), device=device)
    yield "anomaly_score", (x, x_hat, f, f_hat, LAM)
    xc, xhc = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_hat))
    yield "anomaly_score", (xc, xhc, f, f_hat, 0.5)
    scores = torch.empty(2, device=device)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, None)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, torch.empty(2, 9, 7, device=device))


def test_opcheck_cpu():
    for name, args in opcheck_samples("cpu"):
        torch.library.opcheck(getattr(torch.ops.skipgan, name).default, args)


# ---------------------------------------------------------------------------------------------- bad input


def bad(match, *args):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.skipgan.anomaly_score(*args, LAM)


def test_rejects_bad_input():
    x, x_hat, f, f_hat = make(2, 3, 8, 8)
    bad(r"x: expected a 4-D tensor", x[0], x_hat[0], f, f_hat)
    bad(r"x_hat: expected shape \[2, 3, 8, 8\] \(the shape of x\), got \[2, 3, 8, 7\]", x, x_hat[..., :7], f, f_hat)
    bad(r"x_hat: expected dtype Float \(the dtype of x\)", x, x_hat.bfloat16(), f, f_hat)
    bad(r"x: expected dtype float32, float16 or bfloat16, got Double", x.double(), x_hat.double(), f, f_hat)
    bad(r"x: expected dtype float32, float16 or bfloat16, got Long", x.long(), x_hat.long(), f, f_hat)
    bad(r"f: expected shape \[2, \.\.\.\]", x, x_hat, f[:1], f_hat[:1])
    bad(r"f_hat: expected shape \[2, 7\] \(the shape of f\)", x, x_hat, f, f_hat[:, :6])
    bad(r"f_hat: expected dtype Float \(the dtype of f\)", x, x_hat, f, f_hat.half())
    bad(r"f: expected a non-empty feature", x, x_hat, f[:, :0], f_hat[:, :0])
    bad(r"x: expected a non-empty image", x[:, :0], x_hat[:, :0], f, f_hat)


def test_rejects_bad_outputs():
    x, x_hat, f, f_hat = make(2, 3, 8, 8)
    out = torch.ops.skipgan.anomaly_score_out
    with pytest.raises(RuntimeError, match=r"scores: expected shape \[2\], got \[3\]"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(3))
    with pytest.raises(RuntimeError, match=r"scores: expected dtype Float, got BFloat16"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match=r"error_map: expected shape \[2, 8, 8\], got \[2, 8, 7\]"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), torch.empty(2, 8, 7))
    with pytest.raises(RuntimeError, match=r"error_map: expected a contiguous tensor"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), torch.empty(2, 8, 16)[..., ::2])
    with pytest.raises(RuntimeError, match=r"error_map: expected dtype Float"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), torch.empty(2, 8, 8, dtype=torch.half))


# ---------------------------------------------------------------------------------------------- CUDA


@CUDA
def test_opcheck_cuda():
    for name, args in opcheck_samples("cuda"):
        torch.library.opcheck(getattr(torch.ops.skipgan, name).default, args)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES + [(3, 3, 256, 256), (130, 3, 32, 32)], ids=lambda s: "x".join(map(str, s)))
def test_cuda_matches_reference(shape, dtype):
    check(*make(*shape, dtype=dtype, device="cuda"))


@CUDA
def test_cuda_layouts_and_misaligned_pointers():
    x, x_hat, f, f_hat = make(3, 3, 16, 16, feat=(1001,), device="cuda")
    cl = torch.channels_last
    check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat)
    check(x[..., 1:], x_hat[..., 1:], f[:, 1:], f_hat[:, 1:])  # odd offsets: scalar fall-back
    flat = torch.rand(2 * 3 * 16 * 16 + 1, device="cuda")
    xm = flat[1:].view(2, 3, 16, 16)  # base pointer 4 bytes past 16-byte alignment
    check(xm, x_hat[:2], f[:2, 1:], f_hat[:2, :-1])  # features misaligned differently
    buf = torch.cat([x, x_hat])
    check(buf[:3], buf[3:], f, f_hat)


@CUDA
def test_cuda_deterministic_and_no_sync_needed():
    x, x_hat, f, f_hat = make(8, 3, 64, 64, feat=(5000,), device="cuda")
    first = ops.anomaly_score(x, x_hat, f, f_hat, error_map=True)
    for _ in range(3):
        again = ops.anomaly_score(x, x_hat, f, f_hat, error_map=True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@CUDA
def test_cuda_rejects_mixed_devices():
    x, x_hat, f, f_hat = make(2, 3, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"x_hat: expected device cuda:0 \(the device of x\), got cpu"):
        torch.ops.skipgan.anomaly_score(x, x_hat.cpu(), f, f_hat, LAM)
    with pytest.raises(RuntimeError, match=r"f: expected device cuda:0 \(the device of x\), got cpu"):
        torch.ops.skipgan.anomaly_score(x, x_hat, f.cpu(), f_hat, LAM)
    with pytest.raises(RuntimeError, match=r"scores: expected device cpu \(the device of x\), got cuda:0"):
        torch.ops.skipgan.anomaly_score_out(x.cpu(), x_hat.cpu(), f.cpu(), f_hat.cpu(), LAM,
                                            torch.empty(2, device="cuda"))
