"""The int8 forms of the engine's layers: oneDNN's u8s8 matrix product on a quantised copy of the input.

A quantised layer (fold.Int8Conv) runs as its float twin in layers.py does, with two changes:

- its input buffer (float, as every engine buffer) is first put on the layer's uint8 grid by the native
  skipgan::quantize_u8_out, one pass into the layer's own byte buffer; a zero border becomes the zero point, i.e.
  exactly 0, as the reference's zero padding. The im2col windows are then gathered from the bytes (a quarter of an
  fp32 gather's traffic);
- the product is oneDNN's u8 × s8 matmul (torch.ops.onednn.qlinear_pointwise) on the prepacked int8 matrix:
  integer products summed exactly in int32, rescaled once by x_scale · scale[c] (the weight scale with the folded BN
  scale), written in the engine's float dtype. The shift, the activations and the fold are the float layers'
  native epilogues, unchanged.

So a layer computes the int8 reference (skipgan/quant/int8.py) up to the float rounding of its epilogue. Each
quantised layer has a tap and, on small maps, a dense form; the plan (engine/plan.py) times them on the running
machine as it times the float layers' forms.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import ops  # noqa: F401  (loads the op library)
from .fold import FoldedConv
from .layers import Col2imConvT, col2im_matrix, dense_matrix, im2col_matrix, nchw


def integers_of(layer: FoldedConv) -> FoldedConv:
    """The layer with its int8 integers as an fp32 weight (exact: |q| <= 127), for the matrix builders (here and
    in the TorchScript export's int8 layers, skipgan/export/pipeline.py)."""
    return dataclasses.replace(layer, weight=layer.int8.weight.float(), int8=None)


def int8_matrix(layer: FoldedConv, size: int, dense: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the layer's int8 matrix [N, K], the layout oneDNN's qlinear_prepack takes, and its column scales [N]): the
    matrices of layers.py (dense, else col2im for a transposed conv, else im2col) built from the int8 integers,
    each column scaled by its output channel's scale (dense columns are ordered (oy, ox, c_out), col2im's (ky, kx,
    c_out)). The engine's int8 layers and the TorchScript export's (skipgan/export/pipeline.py) both build from
    this."""
    ints = integers_of(layer)
    if dense:
        matrix, scale = dense_matrix(ints, size), layer.int8.scale.repeat(layer.out_size(size) ** 2)
    elif layer.transposed:
        matrix, scale = col2im_matrix(ints), layer.int8.scale.repeat(layer.kernel ** 2)
    else:
        matrix, scale = im2col_matrix(ints), layer.int8.scale
    return matrix.t().round().to(torch.int8).contiguous(), scale.float().contiguous()


class QGemm:
    """u8 x [M, K] @ s8 W → out_dtype [M, N], scaled by x_scale · col_scale[n] (oneDNN, prepacked); the int8 matrix
    as int8_matrix gives it, [N, K]."""

    def __init__(self, matrix: torch.Tensor, col_scale: torch.Tensor, x_scale: float, x_zero: int, rows: int,
                 out_dtype: torch.dtype):
        n, k = matrix.shape
        self.k, self.n = k, n
        self.packed = torch.ops.onednn.qlinear_prepack(matrix, [rows, k])
        self.col_scale = col_scale
        self.col_zero = torch.zeros(n, dtype=torch.int64)
        self.x_scale, self.x_zero, self.out_dtype = float(x_scale), int(x_zero), out_dtype

    def __call__(self, qx: torch.Tensor) -> torch.Tensor:
        return torch.ops.onednn.qlinear_pointwise(qx, self.x_scale, self.x_zero, self.packed, self.col_scale,
                                                  self.col_zero, None, 1.0, 0, self.out_dtype, "none", [], "")


class _Quantised:
    """The layer's byte buffer for its quantised input, and the pass that fills it."""

    def _init_input(self, layer: FoldedConv, shape: tuple[int, ...], device) -> None:
        self.x_scale, self.x_zero = layer.int8.x_scale, layer.int8.x_zero
        self.qin = torch.empty(shape, dtype=torch.uint8, device=device)
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def quantise(self, src: torch.Tensor) -> torch.Tensor:
        q = self.qin[: src.shape[0]]
        torch.ops.skipgan.quantize_u8_out(src, self.x_scale, self.x_zero, q)
        return q

    def scratch(self, n: int) -> tuple[int, int]:
        return 0, 0  # own buffers; the products return new tensors


class QIm2colConv(_Quantised):
    """Conv2d on a zero-bordered NHWC input buffer [N, H+2p, W+2p, C_in]."""

    bordered_input = True  # layers.needs_border: the buffer it reads carries the padding

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device):
        assert not layer.transposed and layer.int8 is not None
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        rows = batch * self.out * self.out
        self.gemm = QGemm(*int8_matrix(layer, size, False), layer.int8.x_scale, layer.int8.x_zero, rows, dtype)
        self._init_input(layer, (batch, size + 2 * self.p, size + 2 * self.p, self.c_in), device)
        self.cols = torch.empty(rows, self.gemm.k, dtype=torch.uint8, device=device)

    def __call__(self, src, cols, y, act, slope, out, act2=0, out2=None) -> None:
        n, o, k = src.shape[0], self.out, self.k
        q = self.quantise(src)
        sn, sh, sw, _ = q.stride()
        windows = q.as_strided((n, o, o, k, k, self.c_in), (sn, self.s * sh, self.s * sw, sh, sw, 1))
        rows = n * o * o
        c = self.cols[:rows]
        c.view(n, o, o, k, k, self.c_in).copy_(windows)
        yy = self.gemm(c)
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


class QCol2imConvT(_Quantised, Col2imConvT):
    """ConvTranspose2d on a dense NHWC input [N, H, W, C_in]: the u8s8 product of every tap, then the native fold
    (which also mixes the scoring probes on the last generator layer)."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device):
        assert layer.transposed and layer.int8 is not None
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.gemm = QGemm(*int8_matrix(layer, size, False), layer.int8.x_scale, layer.int8.x_zero,
                          batch * size * size, dtype)
        self._init_input(layer, (batch, size, size, self.c_in), device)

    def __call__(self, src, cols, y, act, slope, out, act2=0, out2=None, probe_weight=None) -> None:
        n, h, k = src.shape[0], self.size, self.k
        c = self.gemm(self.quantise(src).view(n * h * h, self.c_in))
        self.fold(c.view(n, h, h, k, k, self.c_out), act, slope, out, act2, out2, probe_weight)


class QDenseConv(_Quantised):
    """Any conv or transposed conv on a tiny map as one u8s8 product: dense NHWC input [N, H, W, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device):
        assert layer.int8 is not None
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.gemm = QGemm(*int8_matrix(layer, size, True), layer.int8.x_scale, layer.int8.x_zero, batch, dtype)
        self._init_input(layer, (batch, size, size, self.c_in), device)

    def __call__(self, src, cols, y, act, slope, out, act2=0, out2=None) -> None:
        n, o = src.shape[0], self.out
        yy = self.gemm(self.quantise(src).view(n, -1))
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


def make_int8_layer(layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, form: str = "taps"):
    """The quantised layer in `form`: "dense" (one product over the whole tiny map) or "taps" (im2col / col2im).
    Which one a layer takes is the plan's (engine/plan.py: measured, or layers.fixed_form)."""
    if form == "dense":
        return QDenseConv(layer, size, batch, dtype, device)
    if form != "taps":
        raise ValueError(f"form={form!r}: a quantised layer runs as 'taps' or 'dense'")
    cls = QCol2imConvT if layer.transposed else QIm2colConv
    return cls(layer, size, batch, dtype, device)


__all__ = ["QCol2imConvT", "QDenseConv", "QGemm", "QIm2colConv", "int8_matrix", "integers_of", "make_int8_layer"]
