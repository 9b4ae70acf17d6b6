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
- `PixelConv` / `PixelConvT`: on the other small maps (the 4x4 -> 2x2 conv, the 2x2 -> 4x4 transposed conv) the
  zero border is still 44 % of the taps. These run one GEMM per output pixel (conv) or per input pixel and
  kernel row (transposed conv) over exactly the taps that touch the image; the fold op never reads the
  skipped taps, so they need no zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops  # noqa: F401  (importing it loads the op library)
from .fold import FoldedConv


# The CPU libraries a layer's matrix product can run on (the plan picks one per layer, engine/plan.py):
# "onednn": oneDNN's prepacked (blocked) weight through torch.ops.mkldnn; "mkl": MKL's packed fp32 weight;
# "mm": torch.mm on the plain weight (whatever ATen dispatches to). Which is fastest depends on the CPU: MKL's
# packed fp32 product ran these shapes at 0.4-0.6x oneDNN's on an AMD Zen 4/5 but was chosen on an AMX Xeon.
# "u8s8": oneDNN's u8 x s8 product, the only kernel of an int8 model's quantised layers (engine/int8_layers.py).
KERNELS = ("onednn", "mkl", "mm", "u8s8")


def default_kernel(dtype: torch.dtype, device, int8: bool = False) -> str:
    """The fixed plan's library for a matrix product (what the engine used before plans were measured). int8: of a
    quantised layer (dtype is then its activations')."""
    if int8:
        return "u8s8"
    if torch.device(device).type != "cpu":
        return "mm"
    if dtype == torch.bfloat16 and torch.backends.mkldnn.is_available():
        return "onednn"
    if dtype == torch.float32 and torch.backends.mkl.is_available():
        return "mkl"
    return "mm"


def available_kernels(dtype: torch.dtype, device, int8: bool = False) -> tuple[str, ...]:
    """The libraries that can run a product of this dtype on this device (the tuner's candidates); int8: of a
    quantised layer."""
    if int8:
        return ("u8s8",)
    if torch.device(device).type != "cpu":
        return ("mm",)
    out = []
    if dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        out.append("onednn")
    if dtype == torch.float32 and torch.backends.mkl.is_available():
        return (*out, "mkl")  # fp32 torch.mm is MKL's unpacked product: never faster than its packed one
    return (*out, "mm")


class Gemm:
    """x [M, K] @ W [K, N], with W prepared once for the library `kernel` (KERNELS; None: default_kernel).

    Packed weights keep the libraries from reordering W on every call (that reorder dominated skinny products:
    [8, 1024] @ [1024, 768] took 191 µs through torch.mm, 86 µs packed). MKL's packed weight serves the layer's
    full-tile M (`rows`); a smaller M (a last partial batch) falls back to torch.mm.
    """

    def __init__(self, weight: torch.Tensor, rows: int, dtype: torch.dtype, device, kernel: str | None = None):
        self.weight = weight.to(device, dtype).contiguous()  # [K, N]
        self.rows, self.packed, self.mkl = rows, None, None
        self.kernel = kernel or default_kernel(dtype, device)
        if self.kernel not in available_kernels(dtype, device):  # (u8s8 is int8_layers.QGemm's)
            raise ValueError(f"kernel={self.kernel!r}: not available for {dtype} on {device} "
                             f"(available: {', '.join(available_kernels(dtype, device))})")
        if self.kernel == "onednn":
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.t().contiguous(), rows)
        elif self.kernel == "mkl":
            self.wt = self.weight.t().contiguous()
            self.mkl = torch.ops.mkl._mkl_reorder_linear_weight(self.wt, rows)

    @property
    def k(self) -> int:
        return self.weight.shape[0]

    @property
    def n(self) -> int:
        return self.weight.shape[1]

    def __call__(self, x: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """x @ W: the packed kernels return a new tensor; the plain product is written into `scratch` (a
        preallocated [M, N] view) when one is given. Use the returned tensor either way."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        if self.mkl is not None and x.shape[0] == self.rows:
            return torch.ops.mkl._mkl_linear(x, self.mkl, self.wt, None, self.rows)
        return torch.mm(x, self.weight, out=scratch) if scratch is not None else torch.mm(x, self.weight)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """x @ W written into `out` (any row stride): a copy only where a packed kernel produced it elsewhere."""
        y = self(x, out)
        if y.data_ptr() != out.data_ptr():
            out.copy_(y)


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


def im2col_matrix(layer: FoldedConv) -> torch.Tensor:
    """A conv's weight as [k·k·C_in, C_out], rows ordered (ky, kx, c_in): the order of gathered NHWC windows."""
    return layer.weight.permute(2, 3, 1, 0).reshape(-1, layer.c_out)


def col2im_matrix(layer: FoldedConv) -> torch.Tensor:
    """A transposed conv's weight as [C_in, k·k·C_out], columns ordered (ky, kx, c_out): what the fold op reads."""
    return layer.weight.permute(0, 2, 3, 1).reshape(layer.c_in, -1)


def dense_matrix(layer: FoldedConv, size: int) -> torch.Tensor:
    """The whole layer on a size×size NHWC input as one [size²·C_in, out²·C_out] matrix (NHWC in and out).

    Block (input pixel, output pixel) is the [C_in, C_out] weight of the tap that joins them, if any: every entry
    is a single weight (no sums), so the matrix is exact. Placed tap by tap (out²·k² or size²·k² block copies): the
    layer's response to the unit basis, which defines it, costs a size²·C_in-image convolution (a second at
    isize 32)."""
    w, s, p = layer.weight, layer.stride, layer.padding
    out = layer.out_size(size)
    m = torch.zeros(size, size, layer.c_in, out, out, layer.c_out, dtype=w.dtype)
    # conv: output o reads input o·s − p + k; transposed: input i writes output i·s − p + k (_valid: the taps that
    # land inside the image)
    outer, inner = (size, out) if layer.transposed else (out, size)
    for a in range(outer):
        ky0, ky1 = _valid(a, layer, inner)
        for b in range(outer):
            kx0, kx1 = _valid(b, layer, inner)
            for ky in range(ky0, ky1):
                for kx in range(kx0, kx1):
                    y, x = a * s - p + ky, b * s - p + kx
                    if layer.transposed:  # weight [C_in, C_out, k, k]
                        m[a, b, :, y, x, :] = w[:, :, ky, kx]
                    else:  # weight [C_out, C_in, k, k]
                        m[y, x, :, a, b, :] = w[:, :, ky, kx].T
    return m.reshape(size * size * layer.c_in, -1)


class Im2colConv:
    """Conv2d on a zero-bordered NHWC input buffer [N, H+2p, W+2p, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        assert not layer.transposed
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.gemm = Gemm(im2col_matrix(layer), batch * self.out * self.out, dtype, device, kernel)
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        """(cols, y) elements needed for a batch of n."""
        rows = n * self.out * self.out
        return rows * self.gemm.k, rows * self.c_out

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        n, o, k = src.shape[0], self.out, self.k
        sn, sh, sw, _ = src.stride()
        windows = src.as_strided((n, o, o, k, k, self.c_in), (sn, self.s * sh, self.s * sw, sh, sw, 1))
        rows = n * o * o
        c = cols[: rows * self.gemm.k].view(rows, -1)
        c.view(n, o, o, k, k, self.c_in).copy_(windows)
        yy = self.gemm(c, y[: rows * self.c_out].view(rows, self.c_out))
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


class Col2imConvT:
    """ConvTranspose2d on a dense NHWC input [N, H, W, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        assert layer.transposed
        self.k, self.s, self.p = layer.kernel, layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.gemm = Gemm(col2im_matrix(layer), batch * size * size, dtype, device, kernel)
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        return n * self.size * self.size * self.k * self.k * self.c_out, 0

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None,
                 probe_weight: torch.Tensor | None = None) -> None:
        n, h, k = src.shape[0], self.size, self.k
        rows = n * h * h
        c = self.gemm(src.reshape(rows, self.c_in), cols[: rows * self.gemm.n].view(rows, -1))
        self.fold(c.view(n, h, h, k, k, self.c_out), act, slope, out, act2, out2, probe_weight)

    def fold(self, c6, act, slope, out, act2, out2, probe_weight) -> None:
        k = self.k
        torch.ops.skipgan.col2im_bias_act_out(c6, [k, k], [self.s, self.s], [self.p, self.p], None, self.shift, act,
                                              slope, out, act2, out2, probe_weight)


class DenseConv:
    """Any conv or transposed conv on a tiny map, as one matrix: dense NHWC input [N, H, W, C_in]."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.gemm = Gemm(dense_matrix(layer, size), batch, dtype, device, kernel)
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        return 0, n * self.gemm.n

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        n, o = src.shape[0], self.out
        yy = self.gemm(src.reshape(n, -1), y[: n * self.gemm.n].view(n, -1))
        torch.ops.skipgan.bias_act_out(nchw(yy.view(n, o, o, self.c_out)), None, self.shift, act, slope, out,
                                       act2, out2)


def _valid(pos: int, layer: FoldedConv, extent: int) -> tuple[int, int]:
    """Kernel taps [k0, k1) of a conv output at `pos` (or a transposed-conv input at `pos`) that touch the image.

    conv: tap k reads input pos·s − p + k, which must lie in [0, extent) (extent = input size);
    transposed: tap k writes output pos·s − p + k, which must lie in [0, extent) (extent = output size).
    """
    first = pos * layer.stride - layer.padding
    return max(0, -first), min(layer.kernel, extent - first)


def pixel_macs_saved(layer: FoldedConv, size: int) -> float:
    """Fraction of the tap form's multiply-adds that only ever meet the zero border."""
    k, out = layer.kernel, layer.out_size(size)
    n, extent = (size, out) if layer.transposed else (out, size)
    useful = sum(k1 - k0 for k0, k1 in (_valid(i, layer, extent) for i in range(n)))
    return 1.0 - (useful / (n * k)) ** 2


# Per-pixel GEMMs cost a call each and are skinny: worth it only on tiny maps where the border wastes a lot,
# and only for batches of at least PIXEL_MIN_BATCH (generator) images; smaller batches run the tap form.
PIXEL_MAX_CALLS, PIXEL_MIN_SAVED, PIXEL_MIN_BATCH = 16, 0.3, 64


class PixelConv:
    """Conv2d on a tiny output map: one GEMM per output pixel over the taps inside the image (dense NHWC input)."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        assert not layer.transposed
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        self.min_batch = min(PIXEL_MIN_BATCH, batch)  # smaller batches than it was built for: the tap form
        self.pixels = []  # (oy, ox, input rows, input cols, Gemm over [taps·C_in, C_out])
        first = lambda o: o * layer.stride - layer.padding  # noqa: E731
        for oy in range(self.out):
            ky0, ky1 = _valid(oy, layer, size)
            for ox in range(self.out):
                kx0, kx1 = _valid(ox, layer, size)
                w = layer.weight[:, :, ky0:ky1, kx0:kx1].permute(2, 3, 1, 0).reshape(-1, self.c_out)
                self.pixels.append((oy, ox, slice(first(oy) + ky0, first(oy) + ky1),
                                    slice(first(ox) + kx0, first(ox) + kx1), Gemm(w, batch, dtype, device, kernel)))
        # small batches: the whole layer as one product over a zero-bordered copy of the input
        self.taps = Im2colConv(layer, size, batch, dtype, device, kernel)
        self.pad = torch.zeros(batch, size + 2 * layer.padding, size + 2 * layer.padding, self.c_in, device=device,
                               dtype=dtype)
        self.shift = self.taps.shift

    def scratch(self, n: int) -> tuple[int, int]:
        c, y = self.taps.scratch(n)
        return max(c, n * max(p[-1].k for p in self.pixels)), y

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        n, o = src.shape[0], self.out
        if n < self.min_batch:
            p = self.taps.p
            padded = self.pad[:n]
            padded[:, p : p + self.size, p : p + self.size, :].copy_(src)
            return self.taps(padded, cols, y, act, slope, out, act2, out2)
        yy = y[: n * o * o * self.c_out].view(n, o, o, self.c_out)
        for oy, ox, rows, cs, gemm in self.pixels:
            window = src[:, rows, cs, :]
            c = cols[: n * gemm.k].view(window.shape)
            c.copy_(window)
            gemm.into(c.view(n, -1), yy[:, oy, ox, :])
        torch.ops.skipgan.bias_act_out(nchw(yy), None, self.shift, act, slope, out, act2, out2)


class PixelConvT(Col2imConvT):
    """ConvTranspose2d on a tiny input map: per input pixel and kernel row, one GEMM over the kernel columns whose
    taps land inside the output; the fold op then sums what landed (it never reads the taps left out)."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        super().__init__(layer, size, batch, dtype, device, kernel)  # the tap form, for small batches
        self.min_batch = min(PIXEL_MIN_BATCH, batch)
        self.taps = []  # (iy, ix, ky, kx0, kx1, Gemm over [C_in, (kx1-kx0)·C_out])
        for iy in range(size):
            ky0, ky1 = _valid(iy, layer, self.out)
            for ix in range(size):
                kx0, kx1 = _valid(ix, layer, self.out)
                for ky in range(ky0, ky1):
                    w = layer.weight[:, :, ky, kx0:kx1].permute(0, 2, 1).reshape(self.c_in, -1)
                    self.taps.append((iy, ix, ky, kx0, kx1, Gemm(w, batch, dtype, device, kernel)))

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None,
                 probe_weight: torch.Tensor | None = None) -> None:
        n, h, k = src.shape[0], self.size, self.k
        if n < self.min_batch:
            return super().__call__(src, cols, y, act, slope, out, act2, out2, probe_weight)
        c6 = cols[: n * h * h * k * k * self.c_out].view(n, h, h, k, k, self.c_out)
        for iy, ix, ky, kx0, kx1, gemm in self.taps:
            gemm.into(src[:, iy, ix, :], c6[:, iy, ix, ky, kx0:kx1, :].flatten(1))
        self.fold(c6, act, slope, out, act2, out2, probe_weight)


class DirectConv:
    """The layer as oneDNN's own (direct) convolution on its prepacked weight, then the native epilogue.

    No im2col copy and no fold pass: on large maps (isize 128: 64x64 and 32x32) the tap forms' gathering of every
    stride-2 window (4x the input) and folding of 16 taps per output pixel is memory traffic that a direct
    convolution does not make. It wins on most large maps and loses on some small ones, so the plan measures it per
    layer (the timings are stored with the cached plan). Convs read the zero-bordered input buffer with padding 0
    (the border is already there); transposed convs read the dense input. oneDNN only (form_kernels), CPU, fp32
    and bf16; the last generator layer (its fold mixes the probes) keeps the tap form."""

    def __init__(self, layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, kernel: str | None = None):
        if (kernel or "onednn") not in form_kernels("conv", dtype, device):
            raise ValueError(f"form 'conv' runs on oneDNN only (kernel {kernel!r}, {dtype} on {device})")
        self.kernel, self.transposed = "onednn", layer.transposed
        self.s, self.p = layer.stride, layer.padding
        self.c_in, self.c_out, self.size, self.out = layer.c_in, layer.c_out, size, layer.out_size(size)
        w = layer.weight.to(device, dtype).contiguous()
        s, p = [self.s] * 2, [self.p] * 2
        if self.transposed:
            self.weight = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                w, p, [0, 0], s, [1, 1], 1, [batch, self.c_in, size, size])
        else:  # on the bordered buffer, so padding 0
            self.weight = torch.ops.mkldnn._reorder_convolution_weight(
                w, [0, 0], s, [1, 1], 1, [batch, self.c_in, size + 2 * self.p, size + 2 * self.p])
        self.shift = None if layer.shift is None else layer.shift.to(device)

    def scratch(self, n: int) -> tuple[int, int]:
        return 0, 0

    def __call__(self, src: torch.Tensor, cols: torch.Tensor, y: torch.Tensor, act: int, slope: float,
                 out: torch.Tensor, act2: int = 0, out2: torch.Tensor | None = None) -> None:
        x, s = nchw(src), [self.s, self.s]
        if self.transposed:
            yy = torch.ops.mkldnn._convolution_transpose_pointwise(x, self.weight, None, [self.p, self.p], [0, 0], s,
                                                                   [1, 1], 1, "none", [], "")
        else:
            yy = torch.ops.mkldnn._convolution_pointwise(x, self.weight, None, [0, 0], s, [1, 1], 1, "none", [], "")
        torch.ops.skipgan.bias_act_out(yy, None, self.shift, act, slope, out, act2, out2)


FORMS = ("taps", "dense", "pixel", "conv")
# A dense matrix is a candidate while it costs at most this many times the tap form's multiply-adds (measurement
# decides between them) and holds at most DENSE_MAX_BYTES of weights.
DENSE_MAX_MACS, DENSE_MAX_BYTES = 2.0, 64 * 2**20


def _macs(layer: FoldedConv, size: int) -> tuple[int, int]:
    """(dense, taps) multiply-adds of one image through the layer."""
    out, taps = layer.out_size(size), layer.kernel * layer.kernel
    dense = size * size * layer.c_in * out * out * layer.c_out
    return dense, (size * size if layer.transposed else out * out) * taps * layer.c_in * layer.c_out


def _pixel_ok(layer: FoldedConv, size: int) -> bool:
    out = layer.out_size(size)
    calls = size * size * layer.kernel if layer.transposed else out * out
    return calls <= PIXEL_MAX_CALLS and pixel_macs_saved(layer, size) >= PIXEL_MIN_SAVED


def candidate_forms(layer: FoldedConv, size: int, fold: bool = False) -> tuple[str, ...]:
    """The forms that can run this layer (the tuner times each; form_kernels says on which libraries); fold: the
    layer must end in the fold op (the last generator layer, which mixes the probes there), so no dense or conv
    form. A quantised layer (layer.int8) has the int8 forms of engine/int8_layers.py: taps and dense."""
    forms = ["taps"]
    dense, taps = _macs(layer, size)
    if not fold and (dense_ok(layer, size) or (dense <= DENSE_MAX_MACS * taps and dense * 4 <= DENSE_MAX_BYTES)):
        forms.append("dense")
    if layer.int8 is not None:
        return tuple(forms)
    if _pixel_ok(layer, size):
        forms.append("pixel")
    if not fold:
        forms.append("conv")
    return tuple(forms)


def form_kernels(form: str, dtype: torch.dtype, device, int8: bool = False) -> tuple[str, ...]:
    """The libraries a form's products can run on here: the direct convolution is oneDNN's own; the GEMM forms
    take any available_kernels (int8: a quantised layer's, u8s8)."""
    kernels = available_kernels(dtype, device, int8)
    if form == "conv":
        return ("onednn",) if "onednn" in kernels else ()
    return kernels


def fixed_form(layer: FoldedConv, size: int, batch: int, fold: bool = False) -> str:
    """The fixed plan's form: fewest multiply-adds, per-pixel products only for large batches (module docstring;
    a quantised layer has no per-pixel form)."""
    if not fold and dense_ok(layer, size):
        return "dense"
    pixel = layer.int8 is None and _pixel_ok(layer, size) and batch >= PIXEL_MIN_BATCH
    return "pixel" if pixel else "taps"


def make_layer(layer: FoldedConv, size: int, batch: int, dtype: torch.dtype, device, form: str | None = None,
               kernel: str | None = None, fold: bool = False):
    """This layer on batches of up to `batch` size x size inputs, in `form` (FORMS; None: fixed_form) with its
    products on `kernel` (KERNELS; None: default_kernel). A quantised layer (layer.int8) is built in its int8 form
    (engine/int8_layers.py); `dtype` is then its activations'."""
    form = form or fixed_form(layer, size, batch, fold)
    if form not in candidate_forms(layer, size, fold):
        raise ValueError(f"form={form!r}: not a form of this layer (candidates: "
                         f"{', '.join(candidate_forms(layer, size, fold))})")
    if layer.int8 is not None:
        if kernel not in (None, "u8s8"):
            raise ValueError(f"kernel={kernel!r}: a quantised layer runs on u8s8 only")
        from .int8_layers import make_int8_layer  # (int8_layers builds on this module)

        return make_int8_layer(layer, size, batch, dtype, device, form)
    if form == "dense":
        return DenseConv(layer, size, batch, dtype, device, kernel)
    if form == "conv":
        return DirectConv(layer, size, batch, dtype, device, kernel)
    if form == "pixel":
        cls = PixelConvT if layer.transposed else PixelConv
    else:
        cls = Col2imConvT if layer.transposed else Im2colConv
    return cls(layer, size, batch, dtype, device, kernel)


def needs_border(layer) -> int:
    """Zero border an input buffer of this layer must carry (im2col and the direct conv read the padding from
    memory; so does an int8 tap form, engine/int8_layers.py, which says so by `bordered_input`)."""
    if isinstance(layer, DirectConv):
        return 0 if layer.transposed else layer.p
    return layer.p if isinstance(layer, Im2colConv) or getattr(layer, "bordered_input", False) else 0


__all__ = ["FORMS", "KERNELS", "Col2imConvT", "DenseConv", "DirectConv", "Gemm", "Im2colConv", "PixelConv",
           "PixelConvT", "available_kernels", "candidate_forms", "col2im_matrix", "default_kernel", "dense_matrix",
           "dense_ok", "fixed_form", "form_kernels", "im2col_matrix", "make_layer", "nchw", "needs_border"]
