"""skipgan::anomaly_score / anomaly_score_out against the ONE score definition, skipgan.scoring.combine_scores
(and skipgan.scoring.error_map for the map)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from skipgan import ops
from skipgan.scoring import combine_scores, error_map

CUDA = pytest.mark.cuda  # conftest.py: skipped without a GPU; benchmarks/gpu_check.sh fails on such a skip
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


def check(x, x_hat, f, f_hat, lam=LAM, margin=0):
    ref_s, ref_pixel, ref_feature = combine_scores(x, x_hat, f, f_hat, lam, margin)
    ref_map = error_map(x, x_hat)
    s = ops.anomaly_score(x, x_hat, f, f_hat, lam, margin=margin)
    s2, m = ops.anomaly_score(x, x_hat, f, f_hat, lam, margin=margin, error_map=True)
    s3, parts = ops.anomaly_score(x, x_hat, f, f_hat, lam, margin=margin, parts=True)
    s4, m4, parts4 = ops.anomaly_score(x, x_hat, f, f_hat, lam, margin=margin, error_map=True, parts=True)
    assert s.dtype == torch.float32 and s.shape == (x.shape[0],)
    assert m.dtype == torch.float32 and m.shape == (x.shape[0], x.shape[2], x.shape[3])  # full size, margin or not
    assert parts.dtype == torch.float32 and parts.shape == (x.shape[0], 2) and parts.is_contiguous()
    torch.testing.assert_close(s, ref_s, **tol(x.dtype))
    torch.testing.assert_close(m, ref_map, **tol(x.dtype))
    torch.testing.assert_close(parts[:, 0], ref_pixel, **tol(x.dtype))
    torch.testing.assert_close(parts[:, 1], ref_feature, **tol(x.dtype))
    # The same reduction runs with or without a map or parts: identical results, not just close ones.
    for other in (s2, s3, s4):
        assert torch.equal(s, other)
    assert torch.equal(m, m4) and torch.equal(parts, parts4)


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
    for lam in (0.0, 1.0):
        check(x, x_hat, f, f_hat, lam, margin=2)


def test_out_variant_writes_into_views():
    x, x_hat, f, f_hat = make(4, 3, 8, 8)
    scores = torch.full((2, 4), -1.0)
    maps = torch.zeros(4, 8, 8)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, scores[1], maps)
    ref_s = combine_scores(x, x_hat, f, f_hat, LAM)[0]
    torch.testing.assert_close(scores[1], ref_s)
    assert torch.all(scores[0] == -1)
    torch.testing.assert_close(maps, error_map(x, x_hat))
    col = torch.zeros(4, 2)  # strided scores
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, col[:, 1])
    torch.testing.assert_close(col[:, 1], ref_s)
    # margin and parts by keyword, error_map left out
    parts = torch.full((4, 2), -1.0)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, col[:, 0], margin=1, parts=parts)
    ref_s, ref_pixel, ref_feature = combine_scores(x, x_hat, f, f_hat, LAM, 1)
    torch.testing.assert_close(col[:, 0], ref_s)
    torch.testing.assert_close(parts, torch.stack([ref_pixel, ref_feature], 1))


@pytest.mark.parametrize("margin", [0, 3])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_deterministic_for_any_thread_count(layout, margin):
    x, x_hat, f, f_hat = make(5, 3, 96, 80, feat=(40000,))  # several chunks of each kind per sample
    if layout == "channels_last":
        x, x_hat = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_hat))
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(ops.anomaly_score(x, x_hat, f, f_hat, margin=margin, error_map=True, parts=True))
    finally:
        torch.set_num_threads(before)
    for got in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(got, results[0]))


# ---------------------------------------------------------------------------------------------- margin

MARGIN_SHAPES = [
    (1, 3, 7, 9),  # batch 1, odd sizes: margin 3 leaves a 1 x 3 interior
    (2, 1, 16, 12),
    (3, 2, 33, 17),
    (2, 3, 70, 61),  # 4270 pixels: the chunk boundary falls inside an interior row
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("margin", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", MARGIN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_margin_matches_combine_scores(shape, margin, dtype):
    check(*make(*shape, dtype=dtype), margin=margin)


@pytest.mark.parametrize("margin", [1, 2, 3])
def test_margin_channels_last(margin):
    cl = torch.channels_last
    for shape in [(1, 3, 7, 9), (2, 1, 17, 9), (2, 2, 17, 9), (2, 5, 100, 50)]:  # last: several blocks and chunks
        x, x_hat, f, f_hat = make(*shape)
        check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat, margin=margin)
        x, x_hat = x.bfloat16(), x_hat.bfloat16()
        check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat, margin=margin)


@pytest.mark.parametrize("margin", [1, 2])
def test_margin_noncontiguous_layouts(margin):
    x, x_hat, f, f_hat = make(2, 3, 16, 12)
    check(x, x_hat.contiguous(memory_format=torch.channels_last), f, f_hat, margin=margin)  # mixed: copied
    big = torch.rand(2, 3, 32, 24)
    check(big[:, :, ::2, ::2], x_hat, f, f_hat, margin=margin)  # strided view
    check(x.transpose(2, 3), x_hat.transpose(2, 3), f, f_hat, margin=margin)  # H and W swapped
    buf = torch.cat([x, x_hat])
    check(buf[:2], buf[2:], f, f_hat, margin=margin)  # halves of one buffer


def test_margin_edge_chunks():
    # Row 0 alone fills the first 4096-pixel chunk: a chunk without any interior pixel.
    check(*make(1, 1, 3, 5000, feat=(3,)), margin=1)
    # More channels than a chunk has pixels, interleaved: one pixel per scratch block.
    x, x_hat, f, f_hat = make(1, 5000, 3, 3, feat=(3,))
    cl = torch.channels_last
    check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat, margin=1)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_margin_equals_interior_and_keeps_full_map(layout):
    x, x_hat, f, f_hat = make(2, 3, 70, 61)
    if layout == "channels_last":
        x, x_hat = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_hat))
    s, m, parts = ops.anomaly_score(x, x_hat, f, f_hat, margin=2, error_map=True, parts=True)
    inner = (slice(None), slice(None), slice(2, 68), slice(2, 59))
    s0, parts0 = ops.anomaly_score(x[inner], x_hat[inner], f, f_hat, parts=True)
    torch.testing.assert_close(s, s0, **tol(x.dtype))
    torch.testing.assert_close(parts, parts0, **tol(x.dtype))
    # The map is the same full-size map as without a margin: the margin only concerns R.
    _, m_full = ops.anomaly_score(x, x_hat, f, f_hat, error_map=True)
    assert torch.equal(m, m_full)


def test_wrapper_returns_what_was_asked():
    x, x_hat, f, f_hat = make(2, 3, 8, 8)
    assert isinstance(ops.anomaly_score(x, x_hat, f, f_hat, margin=1), torch.Tensor)
    got = ops.anomaly_score(x, x_hat, f, f_hat, margin=1, parts=True)
    assert len(got) == 2 and got[1].shape == (2, 2)
    got = ops.anomaly_score(x, x_hat, f, f_hat, error_map=True, parts=True)
    assert len(got) == 3 and got[1].shape == (2, 8, 8) and got[2].shape == (2, 2)
    out, parts_out = torch.empty(2), torch.empty(2, 2)
    s, p = ops.anomaly_score(x, x_hat, f, f_hat, margin=1, parts=True, out=out, parts_out=parts_out)
    assert s is out and p is parts_out


# ---------------------------------------------------------------------------------------------- opcheck


def opcheck_samples(device):
    x, x_hat, f, f_hat = make(2, 3, 9, 7, feat=(4, 3), device=device)
    yield "anomaly_score", (x, x_hat, f, f_hat, LAM)
    xc, xhc = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_hat))
    yield "anomaly_score", (xc, xhc, f, f_hat, 0.5)
    scores = torch.empty(2, device=device)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, None)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, torch.empty(2, 9, 7, device=device))
    yield "anomaly_score", (x, x_hat, f, f_hat, LAM, 2)
    yield "anomaly_score", (xc, xhc, f, f_hat, 0.5, 3)
    parts = torch.empty(2, 2, device=device)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, torch.empty(2, 9, 7, device=device), 2, parts)
    yield "anomaly_score_out", (xc, xhc, f, f_hat, LAM, scores, None, 1, parts)
    yield "anomaly_score_out", (x, x_hat, f, f_hat, LAM, scores, None, 0, parts)


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
    with pytest.raises(RuntimeError, match=r"skipgan::anomaly_score_out: parts: expected shape \[2, 2\], got \[2, 3\]"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), parts=torch.empty(2, 3))
    with pytest.raises(RuntimeError, match=r"parts: expected shape \[2, 2\], got \[2\]"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), None, 1, torch.empty(2))
    with pytest.raises(RuntimeError, match=r"parts: expected dtype Float, got Half"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), parts=torch.empty(2, 2, dtype=torch.half))
    with pytest.raises(RuntimeError, match=r"parts: expected a contiguous tensor"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), parts=torch.empty(2, 4)[:, ::2])
    with pytest.raises(RuntimeError, match=r"parts: expected a contiguous tensor"):
        out(x, x_hat, f, f_hat, LAM, torch.empty(2), parts=torch.empty(2, 2).t())


@pytest.mark.parametrize("margin", [-1, 4, 10])
def test_rejects_bad_margin(margin):
    x, x_hat, f, f_hat = make(2, 3, 8, 8)
    msg = (r"skipgan::anomaly_score: margin: expected 0 <= margin and 2 \* margin < H and 2 \* margin < W "
           rf"\(H = 8, W = 8\), got {margin}")
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, LAM, margin)
    with pytest.raises(RuntimeError, match=msg.replace("anomaly_score:", "anomaly_score_out:")):
        torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, torch.empty(2), margin=margin)
    with pytest.raises(RuntimeError, match=msg):
        ops.anomaly_score(x, x_hat, f, f_hat, margin=margin)


def test_rejects_margin_too_big_for_one_side():
    x, x_hat, f, f_hat = make(2, 3, 5, 12)  # margin 2 fits both sides, 3 only the width
    check(x, x_hat, f, f_hat, margin=2)
    with pytest.raises(RuntimeError, match=r"margin: expected .*\(H = 5, W = 12\), got 3"):
        ops.anomaly_score(x, x_hat, f, f_hat, margin=3)
    with pytest.raises(RuntimeError, match=r"margin: expected .*\(H = 12, W = 5\), got 3"):
        ops.anomaly_score(x.transpose(2, 3), x_hat.transpose(2, 3), f, f_hat, margin=3)


# ---------------------------------------------------------------------------------------------- CUDA order, on the CPU


def test_cuda_score_order_does_not_depend_on_alignment(tmp_path):
    """The CUDA kernel's per-thread sums (csrc/cuda/score_sums.h, host-compilable) run on the CPU for every thread
    of a block with the samples at every offset inside 16 bytes (a sample's place in the batch decides its
    alignment): partial sums, the block's total and the map are identical bit for bit (tests/cpp/score_sums_host.cpp,
    with a control showing that the order before the fix gave other totals on the same data)."""
    root = Path(__file__).resolve().parents[1]
    source = root / "tests" / "cpp" / "score_sums_host.cpp"
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None or not (root / "csrc" / "cuda" / "score_sums.h").exists():
        pytest.skip("needs a C++ compiler and the source tree")
    exe = tmp_path / "score_sums_host"
    build = subprocess.run([cxx, "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", f"-I{root / 'csrc'}",
                            str(source), "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout


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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("margin", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", MARGIN_SHAPES + [(3, 3, 256, 256), (130, 3, 32, 32)],
                         ids=lambda s: "x".join(map(str, s)))
def test_cuda_margin_matches_combine_scores(shape, margin, dtype):
    x, x_hat, f, f_hat = make(*shape, dtype=dtype, device="cuda")
    check(x, x_hat, f, f_hat, margin=margin)
    cl = torch.channels_last
    check(x.contiguous(memory_format=cl), x_hat.contiguous(memory_format=cl), f, f_hat, margin=margin)
    check(x.transpose(2, 3), x_hat.transpose(2, 3), f, f_hat, margin=margin)


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
@pytest.mark.parametrize("margin", [0, 2])
def test_cuda_deterministic_and_no_sync_needed(margin):
    x, x_hat, f, f_hat = make(8, 3, 64, 64, feat=(5000,), device="cuda")
    first = ops.anomaly_score(x, x_hat, f, f_hat, margin=margin, error_map=True, parts=True)
    for _ in range(3):
        again = ops.anomaly_score(x, x_hat, f, f_hat, margin=margin, error_map=True, parts=True)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


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
    with pytest.raises(RuntimeError, match=r"parts: expected device cuda:0 \(the device of x\), got cpu"):
        torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, LAM, torch.empty(2, device="cuda"),
                                            parts=torch.empty(2, 2))


@CUDA
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_score_does_not_depend_on_batch_position(dtype):
    """Odd feature and image sizes put consecutive samples at different 16-byte offsets: each sample's score, R and
    L in the batch equal those of the same sample scored alone (at an aligned address), bit for bit."""
    x, x_hat, f, f_hat = make(9, 3, 15, 17, feat=(1001,), dtype=dtype, device="cuda")
    batch = ops.anomaly_score(x, x_hat, f, f_hat, parts=True)
    for i in range(x.shape[0]):
        alone = ops.anomaly_score(*(t[i:i + 1].clone() for t in (x, x_hat, f, f_hat)), parts=True)
        assert torch.equal(alone[0], batch[0][i:i + 1]) and torch.equal(alone[1], batch[1][i:i + 1]), i


@CUDA
@pytest.mark.parametrize("cap", [1, 2])
def test_cuda_grid_stride_loop_over_the_batch(cap):
    """A batch larger than a capped grid: each block loops over several samples; scores, maps and parts are
    those of one block per sample."""
    x, x_hat, f, f_hat = make(7, 3, 20, 24, feat=(33,), device="cuda")
    want = ops.anomaly_score(x, x_hat, f, f_hat, margin=1, error_map=True, parts=True)
    assert torch.ops.skipgan._set_cuda_grid_cap(cap) == 0
    try:
        got = ops.anomaly_score(x, x_hat, f, f_hat, margin=1, error_map=True, parts=True)
    finally:
        torch.ops.skipgan._set_cuda_grid_cap(0)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
