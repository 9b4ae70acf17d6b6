"""skipgan::anomaly_score against the eager composition and the machine's read bandwidth.

Per case (batch x C x H x W, dtype): `native` (the op), `eager` (skipgan.scoring.combine_scores, the
one score definition: the composition a model runs), and `read_bw` (x.sum() and x.amax() over an fp32 buffer with the same byte
count as all inputs together: what one pass over that much memory costs here, measured in the same run; the
faster one counts). For the small cases that buffer fits in cache, so "% of read bw" compares cache speeds. The bytes of a
case are the bytes of x, x_hat, f and f_hat (each read once by the op).

    pytest benchmarks/bench_ops_anomaly_score.py --benchmark-columns=median,iqr,rounds
"""

import pytest
import torch

from skipgan import ops
from skipgan.scoring import combine_scores

# (B, C, H, W): the first is a CIFAR-sized batch, the last the large 256 x 256 RGB case.
SIZES = [(64, 3, 32, 32), (64, 3, 64, 64), (64, 3, 256, 256), (256, 3, 256, 256)]
LAM = 0.9
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def feat_shape(b, h):
    # the discriminator's last feature map: 256 channels at 4x4 for isize 32, wider for bigger images
    return (b, 256 if h <= 32 else 512, 4, 4)


_CACHE = {}


def data(size, dtype):
    key = (size, dtype)
    if key not in _CACHE:
        _CACHE.clear()  # the large case is 0.8 GB: keep one case alive at a time
        g = torch.Generator().manual_seed(0)
        b, c, h, w = size
        x = torch.rand(size, generator=g)
        x_hat = (x + 0.05 * torch.randn(size, generator=g))
        f = torch.randn(feat_shape(b, h), generator=g)
        f_hat = f + 0.1 * torch.randn(f.shape, generator=g)
        _CACHE[key] = [t.to(DEVICE, dtype) for t in (x, x_hat, f, f_hat)]
    return _CACHE[key]


def nbytes(ts):
    return sum(t.numel() * t.element_size() for t in ts)


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def run(benchmark, case, impl, fn, ts, images):
    benchmark.extra_info.update(case=case, impl=impl, bytes=nbytes(ts), images=images, device=DEVICE)
    benchmark.group = case

    def call():
        fn()
        sync()

    call()  # warm-up (first touch, allocator, lazy init)
    benchmark.pedantic(call, rounds=7 if ts[0].numel() > 10**7 else 30, iterations=1, warmup_rounds=1)


def case_name(size, dtype):
    return f"anomaly_score {'x'.join(map(str, size))} {str(dtype).removeprefix('torch.')} {DEVICE}"


DTYPES = [torch.float32, torch.bfloat16] + ([torch.float16] if DEVICE == "cuda" else [])
# One parameter list, ordered so that the impls of a case run back to back on the same tensors.
PARAMS = [(size, dtype, impl) for size in SIZES for dtype in DTYPES
          for impl in ("native", "eager", "read_bw_sum", "read_bw_amax")]


@pytest.mark.parametrize("size,dtype,impl", PARAMS,
                         ids=["-".join(("x".join(map(str, s)), str(d).removeprefix("torch."), i)) for s, d, i in PARAMS])
def test_anomaly_score(benchmark, size, dtype, impl):
    ts = data(size, dtype)
    case = case_name(size, dtype)
    if impl == "native":
        run(benchmark, case, "native", lambda: torch.ops.skipgan.anomaly_score(*ts, LAM), ts, size[0])
    elif impl == "eager":
        run(benchmark, case, "eager", lambda: combine_scores(*ts, LAM)[0], ts, size[0])
    else:
        # The peers: one fp32 read pass over as many bytes as the op's inputs (x.sum(), x.amax()); the table
        # takes the faster of the two as the machine's read bandwidth.
        buf = torch.rand(nbytes(ts) // 4, device=DEVICE)
        fn = buf.sum if impl == "read_bw_sum" else buf.amax
        run(benchmark, case, "read_bw (x.sum)" if impl == "read_bw_sum" else "read_bw (x.amax)", fn, [buf], size[0])
        del benchmark.extra_info["images"]
