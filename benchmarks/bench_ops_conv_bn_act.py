"""skipgan::conv_bn_act_out against eager conv -> BN -> activation -> cat on the generator's layer shapes.

UNet generator, ngf 64, batch 64 (isize 32 and 64). Per layer the outputs are those the engine needs:

- encoder level: LeakyReLU(y) for the next conv and ReLU(y) in the left half of the decoder's concat buffer,
  y = BN(conv(x)). eager: conv, BN, leaky_relu, relu, torch.cat with the decoder half.
- decoder level: ReLU(BN(convT(x))) in the right half of the next concat buffer. eager: convT, BN, relu, cat.
- last layer: tanh(convT(x) + bias) in the second half of the discriminator's [x; x_hat] buffer.
  eager: convT(+bias), tanh, cat with x.

`native` writes its outputs straight into preallocated buffers (no cat, no separate BN / activation pass);
both run NCHW and channels_last. The conv itself (oneDNN) dominates, so the gain is the epilogue's share.

    pytest benchmarks/bench_ops_conv_bn_act.py --benchmark-columns=median,iqr,rounds
"""

import pytest
import torch
import torch.nn.functional as F

from skipgan import ops

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCH = 64
RELU, LEAKY, TANH = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh"))

# name, kind (enc / dec / last), c_in, c_out, input size; all kernel 4, stride 2, padding 1
LAYERS = [
    ("isize32 enc 64->128 16->8", "enc", 64, 128, 16),
    ("isize32 enc 256->512 4->2", "enc", 256, 512, 4),
    ("isize32 dec convT 1024->256 2->4", "dec", 1024, 256, 2),
    ("isize32 last convT 128->3 16->32", "last", 128, 3, 16),
    ("isize64 enc 64->128 32->16", "enc", 64, 128, 32),
    ("isize64 dec convT 256->64 16->32", "dec", 256, 64, 16),
    ("isize64 last convT 128->3 32->64", "last", 128, 3, 32),
]
BF16_LAYERS = {"isize32 enc 64->128 16->8", "isize32 dec convT 1024->256 2->4"}


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class Layer:
    """Weights, folded BN and preallocated buffers for one layer in one memory format and dtype."""

    def __init__(self, kind, c_in, c_out, size, dtype, fmt):
        g = torch.Generator().manual_seed(0)
        self.kind, self.c_out = kind, c_out
        self.transposed = kind != "enc"
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        out_size = size * 2 if self.transposed else size // 2
        to = dict(device=DEVICE, dtype=dtype)
        self.x = torch.randn(BATCH, c_in, size, size, generator=g).to(**to).contiguous(memory_format=mf)
        if self.transposed:
            conv = torch.nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=kind == "last")
        else:
            conv = torch.nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)
        self.conv = conv.to(**to).to(memory_format=mf).eval()
        self.bn = torch.nn.BatchNorm2d(c_out).to(**to).eval()
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            scale = (self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)).float()
            self.scale = None if kind == "last" else scale
            self.shift = (conv.bias.float() if kind == "last"
                          else (self.bn.bias - self.bn.running_mean * scale).float())
        # the other half of the concat buffer / discriminator buffer, produced elsewhere in the pipeline
        self.other = torch.randn(BATCH, c_out, out_size, out_size, generator=g).to(**to).contiguous(memory_format=mf)
        self.nxt = torch.empty_like(self.other)
        self.buf = torch.empty(BATCH, 2 * c_out, out_size, out_size, **to).contiguous(memory_format=mf)
        self.weight = self.conv.weight.detach()

    def eager(self):
        with torch.no_grad():
            if self.kind == "enc":
                a = F.leaky_relu(self.bn(self.conv(self.x)), 0.2)
                return a, torch.cat([F.relu(a), self.other], 1)
            if self.kind == "dec":
                return torch.cat([self.other, F.relu(self.bn(self.conv(self.x)))], 1)
            return torch.cat([self.other, torch.tanh(self.conv(self.x))], 1)

    def native(self):
        op = torch.ops.skipgan.conv_bn_act_out
        c = self.c_out
        if self.kind == "enc":
            op(self.x, self.weight, self.scale, self.shift, [2, 2], [1, 1], False, LEAKY, 0.2, self.nxt, RELU,
               self.buf[:, :c])
        elif self.kind == "dec":
            op(self.x, self.weight, self.scale, self.shift, [2, 2], [1, 1], True, RELU, 0.0, self.buf[:, c:])
        else:
            op(self.x, self.weight, None, self.shift, [2, 2], [1, 1], True, TANH, 0.0, self.buf[:, c:])


PARAMS = [(layer, dtype, fmt, impl)
          for layer in LAYERS
          for dtype in ([torch.float32, torch.bfloat16] if layer[0] in BF16_LAYERS else [torch.float32])
          for fmt in ("nchw", "channels_last")
          for impl in ("native", "eager")]


@pytest.mark.parametrize("layer,dtype,fmt,impl", PARAMS,
                         ids=[f"{l[0]}-{str(d).removeprefix('torch.')}-{f}-{i}" for l, d, f, i in PARAMS])
def test_conv_bn_act(benchmark, layer, dtype, fmt, impl):
    name, kind, c_in, c_out, size = layer
    lyr = Layer(kind, c_in, c_out, size, dtype, fmt)
    case = f"conv_bn_act {name} batch {BATCH} {str(dtype).removeprefix('torch.')} {fmt} {DEVICE}"
    # within a case, `eager` is the reference of the ratio table (benchmarks/conftest.py)
    benchmark.extra_info.update(case=case, impl=impl, images=BATCH, device=DEVICE)
    benchmark.group = case
    if impl == "native":  # correctness guard: the benchmarked call computes what eager computes
        lyr.native()
        want = lyr.eager()
        got = lyr.buf
        tol = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 else dict(rtol=5e-2, atol=5e-2)
        torch.testing.assert_close(got[:, :c_out] if kind == "enc" else got[:, c_out:],
                                   want[1][:, :c_out] if kind == "enc" else want[:, c_out:], **tol)
    fn = lyr.native if impl == "native" else lyr.eager

    def call():
        fn()
        sync()

    call()
    benchmark.pedantic(call, rounds=10, iterations=1, warmup_rounds=2)
