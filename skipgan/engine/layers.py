"""How one folded convolution runs in the engine: as matrix products around the native epilogue ops.

Why GEMMs: at isize 32 most of Skip-GANomaly's layers have tiny feature maps (8x8 down to 1x1) and many
channels; oneDNN's direct convolutions ran them at 60-200 GFLOP/s here, a plain matrix product at ~235 (fp32)
and ~670 (bf16, AMX). Measured on the default model (generator batch 64, 2-core Xeon): 614 generator
passes/s through oneDNN's prepacked convs, 1323 through these GEMMs (benchmarks/RESULTS.md).

Activations are NHWC (channels innermost), so a pixel's channels are one contiguous row of a matrix:

- `Im2colConv` (encoder convs): input is a zero-bordered buffer; the k×k windows are gathered with one strided
  copy into a [pixels, k·k·C_in] matrix, multiplied by the weight [k·k·C_in, C_out], and
  `skipgan::bias_act_out` applies shift + activation(s) writing straight into the consumers' buffers.
- `Col2imConvT` (decoder transposed convs): input [pixels, C_in] times [C_in, k·k·C_out] gives every tap's
  contribution; `skipgan::col2im_bias_act_out` folds them (sums the taps landing on each output pixel) and
  applies shift + activation in the same pass; the last layer also averages the scoring probes there.
- `DenseConv`: when the input or output map is tiny (the 2x2 -> 1x1 innermost conv, its 1x1 -> 2x2 transposed
  twin, the discriminator's 4x4 -> 1x1 feature conv), the whole layer is one linear map from the flattened input
  to the flattened output. Built once by applying the conv to the unit basis, it skips the padding taps that
  im2col would multiply by zero (4x fewer MACs on the 1x1 layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops
from .fold import FoldedConv


def nchw(t: torch.Tensor) -> torch.Tensor:
    """An NHWC buffer seen as the NCHW tensor the ops expect (a view: channels_last strides)."""
    return t.permute(0, 3, 1, 2)


def dense_ok(layer: FoldedConv, size: int) -> bool:
    """Run as one linear map when that costs no more multiply-adds than the convolution's taps."""
    # dense: in²·C_in·out²·C_out MACs; im2col: out²·C_out·C_in·k²; col2im: in²·C_in·k²·C_out. On a tie the
    # tap form wins (k² / stride² times less weight memory), except for a 1x1 output, where im2col of a
    # padding-free conv is the input itself.
    out, taps = layer.out_size(size), layer.kernel * layer.kernel
    if layer.transposed:
        return out * out < taps
    return size * size < taps or (out == 1 and layer.padding == 0)


class Im2colConv:
    """Conv2d on a zero-bordered NHWC input buffer [N, H+2p, W+2p, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, dtype: torch.dtype, device):
        assert not layer.transposed
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        # rows ordered (ky, kx, c_in): the order of the gathered windows
        self.weight = layer.weight.permute(2, 3, 1, 0).reshape(-1, self.c_out).to(device, dtype).contiguous()
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        """(cols, y) elements needed for a batch of n."""
        rows = n * self.out * self.out
        return rows * self.weight.shape[0], rows * self.c_out

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        n, o, k = src.shape[0], self.out, self.k
        sn, sh, sw, _ = src.stride()
        windows = src.as_strided((n, o, o, k, k, self.c_in), (sn, self.s * sh, self.s * sw, sh, sw, 1))
        rows = n * o * o
        c = cols[: rows * self.weight.shape[0]].view(rows, -1)
        c.view(n, o, o, k, k, self.c_in).copy_(windows)
        yy = y[: rows * self.c_out].view(rows, self.c_out)
        torch.mm(c, self.weight, out=yy)
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


class Col2imConvT:
    """ConvTranspose2d on a dense NHWC input [N, H, W, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, dtype: torch.dtype, device):
        assert layer.transposed
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        # columns ordered (ky, kx, c_out): the cols layout the fold op reads
        self.weight = layer.weight.permute(0, 2, 3, 1).reshape(self.c_in, -1).to(device, dtype).contiguous()
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        return n * self.size * self.size * self.weight.shape[1], 0

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None,
                 probe_weight: torch.Tensor | None = None) -> None:
        n, h = src.shape[0], self.size
        rows = n * h * h
        c = cols[: rows * self.weight.shape[1]].view(rows, -1)
        torch.mm(src.reshape(rows, self.c_in), self.weight, out=c)
        torch.ops.skipgan.col2im_bias_act_out(c.view(n, h, h, self.k, self.k, self.c_out), [self.k, self.k],
                                              [self.s, self.s], [self.p, self.p], None, self.shift, act, slope,
                                              out, act2, out2, probe_weight)


class DenseConv:
    """Any conv or transposed conv on a tiny map, as one matrix: dense NHWC input [N, H, W, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, dtype: torch.dtype, device):
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        d = size * size * self.c_in
        # Row r of the matrix is the layer's response to the r-th unit input (NHWC order); every entry is a
        # single weight (no sums), so the matrix is exact.
        basis = torch.eye(d, dtype=torch.float32).view(d, size, size, self.c_in).permute(0, 3, 1, 2)
        conv = F.conv_transpose2d if layer.transposed else F.conv2d
        resp = conv(basis, layer.weight, stride=layer.stride, padding=layer.padding)
        self.weight = resp.permute(0, 2, 3, 1).reshape(d, -1).to(device, dtype).contiguous()
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        return 0, n * self.weight.shape[1]

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        n, o = src.shape[0], self.out
        yy = y[: n * self.weight.shape[1]].view(n, -1)
        torch.mm(src.reshape(n, -1), self.weight, out=yy)
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


def make_layer(layer: FoldedConv, size: int, dtype: torch.dtype, device):
    if dense_ok(layer, size):
        return DenseConv(layer, size, dtype, device)
    return Col2imConvT(layer, size, dtype, device) if layer.transposed else Im2colConv(layer, size, dtype, device)


def needs_border(layer) -> int:
    """Zero border an input buffer of this layer must carry (im2col reads the padding from memory)."""
    return layer.p if isinstance(layer, Im2colConv) else 0


__all__ = ["Col2imConvT", "DenseConv", "Im2colConv", "make_layer", "nchw", "needs_border", "ops"]
