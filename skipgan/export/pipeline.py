"""The engine's screening pipeline as one `nn.Module`: what every export format holds.

    images  [B, C, H, W] uint8 / uint16 (or float in [0, 1]), any H×W, as they come off a decoder
      -> skipgan.preprocess.to_model_input            (resize + normalise + channels: the one definition)
      -> probes (skipgan.model.corruption.probe_inputs / mix_probes) around the folded generator
      -> the folded discriminator once over [x; x̂]
      -> the score (skipgan::anomaly_score, or skipgan.scoring.combine_scores in standard operators)
      -> (scores fp32 [B], normalised fp32 [B], verdicts bool [B])   (skipgan.scoring.verdicts)
         (+ error map fp32 [B, isize, isize])

The layers are the engine's: `skipgan.engine.fold` folds BatchNorm into each convolution once, the probes are
chosen by `select_probes` as the engine chooses them, and each layer runs in one of three forms, picked at build
time (see FoldedLayer):

- GEMM (TorchScript / AOTInductor on CPU): the CPU engine's matrices (skipgan/engine/layers.py: im2col, dense
  and col2im forms) with `skipgan::bias_act_out` / `col2im_bias_act_out` as epilogues, on channels_last memory.
- VENDOR (on CUDA): `skipgan::conv_bn_act_out`, cuDNN convolution + the fused epilogue.
- STANDARD (ONNX, TensorRT): standard operators only — Conv with the BN folded into its bias, LeakyRelu, Relu,
  ConvTranspose, Tanh, the antialiased resize as two MatMuls (skipgan.preprocess: TensorRT's parser refuses an
  antialiased Resize) and the score as Sub/Mul/ReduceMean.

Native forms also score with `skipgan::anomaly_score`, and write the encoder's LeakyReLU and ReLU outputs in one
epilogue pass. Consumers load libskipgan_ops (Python: `import skipgan`; C++: link it). What the engine's runtime
plan adds on top — prepacked weights, preallocated buffers, tiling, CUDA graphs — is not a graph and stays in
skipgan.engine; `tests/test_export.py` checks every format's scores against the engine's.
"""

import dataclasses
from typing import Final, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
# registers the quantized_decomposed ops (an int8 file's layers in standard graphs), here at import: the ONNX
# exporter builds its registry of ops when an export begins, and misses ops registered later
from torch.ao.quantization.fx import _decomposed  # noqa: F401

from .. import ops
from ..anomaly_map import MapSettings
from ..engine.fold import FoldedConv, FoldedNetwork, fold_for_scoring
from ..engine.int8_layers import int8_matrix
from ..engine.layers import col2im_matrix, dense_matrix, dense_ok, im2col_matrix
from ..engine.plan import Plan, network_specs
from ..engine.plan import choose as choose_plan
from ..engine.screener import TILE_PIXELS, generator_rows
from ..model.corruption import mix_probes, probe_inputs
from ..model.layer_names import by_part
from ..model.patch_knn import QUERY_BLOCK, PatchKnn
from ..preprocess import to_model_input
from ..scoring import calibration_values, combine_scores, error_map, verdicts
from .maps import MapHead


class _ActivationCodes(nn.Module):
    """The native ops' activation codes (skipgan.ops.ACTIVATIONS) as TorchScript constants (scripted code cannot
    read module-level globals)."""

    NONE: Final[int]
    RELU: Final[int]
    LEAKY: Final[int]
    TANH: Final[int]

    def __init__(self):
        super().__init__()
        self.NONE, self.RELU, self.LEAKY, self.TANH = (
            ops.ACTIVATIONS[k] for k in ("none", "relu", "leaky_relu", "tanh"))


# How a FoldedLayer runs (chosen once, at build time):
VENDOR = 0    # skipgan::conv_bn_act_out: oneDNN / cuDNN convolution + the fused epilogue (CUDA; AOTInductor)
GEMM = 1      # the CPU engine's form (skipgan/engine/layers.py): one matrix product per layer on channels_last
#               memory (im2col for convs, a dense matrix on tiny maps, GEMM + col2im fold for transposed convs),
#               skipgan::bias_act_out / col2im_bias_act_out as the epilogue
STANDARD = 2  # plain torch.nn.functional ops, for ONNX / TensorRT


class FoldedLayer(_ActivationCodes):
    """One folded conv (BN inside weight and shift) with its activation(s) applied in the same pass."""

    stride: Final[int]
    padding: Final[int]
    kernel: Final[int]
    transposed: Final[bool]
    vendor: Final[bool]
    standard: Final[bool]
    dense: Final[bool]
    onednn: Final[bool]
    direct: Final[bool]
    tf32: Final[bool]
    c_out: Final[int]
    out: Final[int]
    int8: Final[bool]
    x_scale: Final[float]
    x_zero: Final[int]
    axis: Final[int]
    packed: Optional[torch.Tensor]  # an int8 GEMM layer's weight prepacked by oneDNN (prepack(), at load)

    def __init__(self, fc: FoldedConv, size: int, dtype: torch.dtype, mode: int,
                 choice: Optional[tuple[str, str]] = None):
        """size: the input map's side (the pipeline's sizes are fixed by isize). choice: the GEMM form's (form,
        kernel) from the engine's plan (skipgan/engine/plan.py; None: the fixed rules): a "dense" form runs one
        dense matrix, the others the tap matrix (an export has no per-pixel form); kernel "onednn" multiplies
        through oneDNN (its weight stored [N, K], reordered per call: a graph cannot hold a prepacked weight),
        "mkl" / "mm" through torch.mm."""
        super().__init__()
        self.stride, self.padding, self.kernel, self.transposed = fc.stride, fc.padding, fc.kernel, fc.transposed
        self.vendor, self.standard, self.c_out = mode == VENDOR, mode == STANDARD, fc.c_out
        self.out = fc.out_size(size)  # every input is resized to isize first, so each layer's sizes are fixed
        # a quantised layer of an int8 model (fold.Int8Conv; skipgan/quant/int8.py defines what it computes): the
        # engine's int8 form (GEMM) or QDQ operators (STANDARD); the plan's float forms do not apply to it
        q = fc.int8
        self.int8 = q is not None
        assert not (self.int8 and self.vendor), "int8 layers have no CUDA form"
        self.x_scale, self.x_zero = (q.x_scale, q.x_zero) if q is not None else (1.0, 0)
        self.axis = 1 if fc.transposed else 0  # the output channels' dimension of the weight
        if q is not None:
            choice = None
        self.dense = mode == GEMM and (choice[0] == "dense" if choice is not None else dense_ok(fc, size))
        # the plan's direct-convolution form: ATen's convolution on channels_last (oneDNN's, its weight reordered
        # per call: a graph cannot hold a prepacked one), then the same epilogue
        self.direct = mode == GEMM and choice is not None and choice[0] == "conv"
        self.onednn = mode == GEMM and choice is not None and choice[1] == "onednn" and not self.direct
        self.tf32 = False  # VENDOR: cuDNN may use TF32 for fp32 (ScreeningPipeline sets it; default true fp32)
        shift = fc.shift if fc.shift is not None else torch.zeros(fc.c_out)
        # w_scale / w_zero: an int8 layer's per-column (GEMM) or per-channel (STANDARD) weight scales and zero points
        w_scale, w_zero = torch.empty(0), torch.empty(0, dtype=torch.int64)
        if q is not None and mode == GEMM:
            # oneDNN's u8s8 product: the int8 matrix [N, K] (prepacked at load, `packed`: a file cannot hold
            # oneDNN's CPU-specific layout), each column rescaled by x_scale · scale (the weight's with the BN's)
            matrix, w_scale = int8_matrix(fc, size, self.dense)
            self.register_buffer("weight", matrix)
            w_zero = torch.zeros(w_scale.shape[0], dtype=torch.int64)
        elif q is not None:
            # QDQ: the int8 weight itself, its per-channel scales positive (DequantizeLinear's); a negative folded
            # BN scale moves into the integers (exact: the grid is symmetric)
            sign = torch.where(q.scale < 0, -1, 1).to(torch.int8)
            per_channel = [1, -1, 1, 1] if fc.transposed else [-1, 1, 1, 1]
            self.register_buffer("weight", (q.weight * sign.view(per_channel)).contiguous())
            w_scale = q.scale.abs()
            w_zero = torch.zeros(w_scale.shape[0], dtype=torch.int64)
        elif self.direct:
            self.register_buffer("weight", fc.weight.to(dtype).contiguous())
        elif mode == GEMM:
            matrix = dense_matrix(fc, size) if self.dense else col2im_matrix(fc) if fc.transposed else im2col_matrix(fc)
            self.register_buffer("weight", (matrix.t() if self.onednn else matrix).to(dtype).contiguous())
        else:  # VENDOR: in the layout its convolution uses (channels_last activations), not reordered per call
            w = fc.weight.to(dtype)
            self.register_buffer("weight", w.contiguous(memory_format=torch.channels_last) if self.vendor else w)
        self.packed = None  # not saved: made on the machine that runs the file (oneDNN's layout is the CPU's)
        self.register_buffer("w_scale", w_scale.float().contiguous())
        self.register_buffer("w_zero", w_zero)
        # the native epilogues add the shift in fp32; a standard Conv's bias has the graph's dtype
        self.register_buffer("shift", shift.to(dtype) if mode == STANDARD else shift.float())

    def _activation(self, y: torch.Tensor, act: int, slope: float) -> torch.Tensor:
        if act == self.RELU:
            return F.relu(y)
        if act == self.LEAKY:
            return F.leaky_relu(y, slope)
        if act == self.TANH:
            return torch.tanh(y)
        return y

    @torch.jit.unused  # standard graphs only (torch.export); TorchScript runs the GEMM form, and its C++ loaders
    def _dequantised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # know no quantized_decomposed op
        """(dq(q(x)) on the input's uint8 grid, dq(W) of the int8 weight): QuantizeLinear/DequantizeLinear pairs and
        a DequantizeLinear of the int8 initializer in ONNX, which ONNX Runtime and OpenVINO run as int8."""
        qd = torch.ops.quantized_decomposed
        u8 = qd.quantize_per_tensor(x, self.x_scale, self.x_zero, 0, 255, torch.uint8)
        x = qd.dequantize_per_tensor(u8, self.x_scale, self.x_zero, 0, 255, torch.uint8)
        w = qd.dequantize_per_channel(self.weight, self.w_scale, self.w_zero, self.axis, -127, 127, torch.int8)
        return x, w

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.int8:
            x, w = self._dequantised(x)
        if self.transposed:
            return F.conv_transpose2d(x, w, self.shift, self.stride, self.padding)
        return F.conv2d(x, w, self.shift, self.stride, self.padding)

    def _empty(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty([x.shape[0], self.c_out, self.out, self.out], dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)

    def _gemm(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's matrix product on x (channels_last [N, C, H, W]): the NCHW-logical view of its NHWC result
        (convs, dense) or the [N, H, W, k, k, C_out] tap contributions (transposed convs, for the fold)."""
        n, o = x.shape[0], self.out
        if self.direct:
            if self.transposed:
                return F.conv_transpose2d(x, self.weight, None, self.stride, self.padding)
            return F.conv2d(x, self.weight, None, self.stride, self.padding)
        xh = x.permute(0, 2, 3, 1)  # NHWC (contiguous for channels_last x)
        if self.int8:  # the input on the layer's uint8 grid (the int8 engine's op); the windows gather bytes
            q = torch.empty(xh.shape, dtype=torch.uint8, device=x.device)
            torch.ops.skipgan.quantize_u8_out(xh, self.x_scale, self.x_zero, q)
            xh = q
        if self.dense:
            y = self._mm(xh.reshape(n, -1), x.dtype)
            return y.view(n, o, o, self.c_out).permute(0, 3, 1, 2)
        if self.transposed:
            h, k = x.shape[2], self.kernel
            y = self._mm(xh.reshape(n * h * h, -1), x.dtype)
            return y.view(n, h, h, k, k, self.c_out)
        p, k, s = self.padding, self.kernel, self.stride
        if p > 0:  # zero padding; on an int8 layer's grid, 0 is the zero point
            xh = F.pad(xh, [0, 0, p, p, p, p], value=float(self.x_zero) if self.int8 else 0.0)
        xh = xh.contiguous()
        c = xh.shape[3]
        sn, sh, sw = xh.stride(0), xh.stride(1), xh.stride(2)
        windows = xh.as_strided([n, o, o, k, k, c], [sn, s * sh, s * sw, sh, sw, 1])
        y = self._mm(windows.reshape(n * o * o, k * k * c), x.dtype)
        return y.view(n, o, o, self.c_out).permute(0, 3, 1, 2)

    @torch.jit.export
    def prepack(self) -> None:
        """An int8 GEMM layer's weight in oneDNN's layout for this CPU, kept (ScreeningPipeline.check_machine)."""
        if self.int8 and not self.standard and self.packed is None:
            self.packed = torch.ops.onednn.qlinear_prepack(self.weight, None)

    def _mm(self, a: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        no_scalars: List[Optional[Union[int, float, complex]]] = []  # the schema's Scalar?[]
        if self.int8:  # integer products summed exactly in int32, rescaled into the activations' float dtype
            packed = self.packed
            if packed is None:  # not prepared at load (check_machine): packed for this call, nothing written
                packed = torch.ops.onednn.qlinear_prepack(self.weight, None)
            return torch.ops.onednn.qlinear_pointwise(a.contiguous(), self.x_scale, self.x_zero, packed, self.w_scale,
                                                      self.w_zero, None, 1.0, 0, out_dtype, "none", no_scalars, "")
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(a.contiguous(), self.weight, None, "none", no_scalars, "")
        return torch.mm(a, self.weight)

    def _native(self, x: torch.Tensor, act: int, slope: float, out: torch.Tensor, act2: int,
                out2: Optional[torch.Tensor]) -> None:
        if self.vendor:
            torch.ops.skipgan.conv_bn_act_out(x, self.weight, None, self.shift, [self.stride, self.stride],
                                              [self.padding, self.padding], self.transposed, act, slope, out, act2,
                                              out2, self.tf32)
        elif self.transposed and not self.dense and not self.direct:
            k, s, p = self.kernel, self.stride, self.padding
            torch.ops.skipgan.col2im_bias_act_out(self._gemm(x), [k, k], [s, s], [p, p], None, self.shift, act,
                                                  slope, out, act2, out2, None)
        else:
            torch.ops.skipgan.bias_act_out(self._gemm(x), None, self.shift, act, slope, out, act2, out2)

    def forward(self, x: torch.Tensor, act: int, slope: float) -> torch.Tensor:
        if self.standard:
            return self._activation(self._conv(x), act, slope)
        out = self._empty(x)
        self._native(x, act, slope, out, 0, None)
        return out

    def leaky_and_relu(self, x: torch.Tensor, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(LeakyReLU(y), ReLU(y)): the encoder's two consumers (next level, decoder skip), one epilogue pass."""
        if self.standard:
            y = self._conv(x)
            return F.leaky_relu(y, slope), F.relu(y)
        out, out2 = self._empty(x), self._empty(x)
        self._native(x, self.LEAKY, slope, out, self.RELU, out2)
        return out, out2


def u8s8_products_exact() -> bool:
    """Whether oneDNN's u8 × s8 products are exact on this CPU, measured: without int8 dot-product instructions
    (AVX512-VNNI, AVX-VNNI, AMX) its kernels sum pairs of products in saturating int16 (vpmaddubsw), and
    255 · 127 · 2 does not fit. Seen on this machine, not assumed from CPU flags: ONEDNN_MAX_CPU_ISA counts too."""
    a = torch.full([8, 256], 255, dtype=torch.uint8)
    w = torch.ops.onednn.qlinear_prepack(torch.full([16, 256], 127, dtype=torch.int8), None)
    no_scalars: List[Optional[Union[int, float, complex]]] = []
    y = torch.ops.onednn.qlinear_pointwise(a, 1.0, 0, w, torch.ones([16]), torch.zeros([16], dtype=torch.int64), None,
                                           1.0, 0, torch.float32, "none", no_scalars, "")
    return bool((y == 255.0 * 127.0 * 256.0).all())  # 8290560 < 2^24: exact in fp32


class ScreeningPipeline(_ActivationCodes):
    """Decoded images in, (scores, normalised scores, verdicts) out; `score_with_map` adds the error map."""

    isize: Final[int]
    nc: Final[int]
    margin: Final[int]
    native: Final[bool]
    tile: Final[int]
    gemm_int8: Final[bool]  # int8 layers in the GEMM form: checked on the running CPU (u8s8_products_exact)
    int8_checked: bool  # check_machine ran: the CPU's u8s8 products are exact and the int8 weights are prepacked

    def __init__(self, net: FoldedNetwork, probes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 calibration: dict, *, dtype: torch.dtype = torch.float32, mode: int = GEMM, tiled: bool = True,
                 plan: Optional[dict[str, tuple[str, str]]] = None, tf32: bool = False, aggregation: str = "mean",
                 map_settings: MapSettings = MapSettings(), knn: Optional[PatchKnn] = None,
                 query_block: int = QUERY_BLOCK):
        """plan: the GEMM form's choice per layer name (enc0.., dec0.., pyr0.., feat; engine/plan.py), None: the
        fixed rules. tf32: the VENDOR form's fp32 convolutions may run on TF32 tensor cores (default: true fp32).
        STANDARD graphs resize by matrix products (skipgan.preprocess: TensorRT's parser refuses antialiased
        Resize). aggregation / map_settings / knn: the image score the graph computes and its map (MapHead, the
        model's own; `calibration` is that aggregation's); query_block: the knn search's (0 for torch.export)."""
        super().__init__()
        native = mode != STANDARD
        self.isize, self.nc, self.margin, self.native = net.isize, net.nc, net.margin, native
        self.lam, self.slope = float(net.lam), float(net.slope)
        self.threshold, self.val_mean, self.val_std = calibration_values(calibration)
        self.compute_dtype = dtype
        S = net.isize
        # generator images per pass on the CPU: the engine's measured pixel budget (activations stay in cache).
        # tiled=False for torch.export, where a branch on the (dynamic) batch size would become a shape guard.
        self.tile = max(1, TILE_PIXELS // (S * S)) if mode == GEMM and tiled else 1 << 30
        pick = (plan or {}).get
        # each layer at its input size under its name, as the engine's plan has them (rows do not matter here)
        enc, dec, pyr, feat = by_part({s.name: FoldedLayer(s.layer, s.size, dtype, mode, pick(s.name))
                                       for s in network_specs(net, 1, 1)})
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.ModuleList(reversed(dec))  # innermost first
        self.pyramid = nn.ModuleList(pyr)
        self.feature = feat
        self.gemm_int8 = mode == GEMM and any(l.int8 for l in [*self.encoder, *self.decoder, *self.pyramid,
                                                               self.feature])
        self.int8_checked = False
        for layer in [*self.encoder, *self.decoder, *self.pyramid, self.feature]:
            layer.tf32 = tf32 and mode == VENDOR
        scale, shift, weight = probes
        self.register_buffer("probe_scale", scale.to(dtype))
        self.register_buffer("probe_shift", shift.to(dtype))
        self.register_buffer("probe_weight", weight.to(dtype))
        self.head = MapHead(aggregation, dataclasses.replace(map_settings, margin=net.margin), S, knn, query_block)

    def generator(self, g: torch.Tensor) -> torch.Tensor:
        """x̂ = tanh(...) of the folded UNet (see skipgan/model/unet.py for the activations' placement)."""
        skips: list[torch.Tensor] = []
        h = g
        n = len(self.encoder)
        for i, layer in enumerate(self.encoder):
            if i < n - 1:
                h, r = layer.leaky_and_relu(h, self.slope)
                skips.append(r)
            else:  # innermost: only the decoder reads it, as ReLU(y)
                h = layer(h, self.RELU, self.slope)
        for i, layer in enumerate(self.decoder):
            if i > 0:
                h = torch.cat([skips[n - 1 - i], h], 1)
            h = layer(h, self.TANH if i == n - 1 else self.RELU, self.slope)
        return h

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's features [N, F], D's first pyramid level [N, ndf, isize/2, isize/2]: what the knn map reads)."""
        h = x
        level0 = x
        for i, layer in enumerate(self.pyramid):
            h = layer(h, self.LEAKY, self.slope)
            if i == 0:
                level0 = h
        return self.feature(h, self.NONE, self.slope).flatten(1), level0

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = to_model_input(images, self.isize, self.nc, not self.native).to(self.compute_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.native else x

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe_weight.shape[0] == 0:
            return self.generator(x)
        g = probe_inputs(x, self.probe_scale, self.probe_shift)
        if self.native:
            g = g.contiguous(memory_format=torch.channels_last)
        if g.shape[0] <= self.tile:
            y = self.generator(g)
        else:
            y = torch.cat([self.generator(t) for t in torch.split(g, self.tile)], 0)
        return mix_probes(y, self.probe_weight, x.shape[0])

    def _require_exact_u8s8(self) -> None:
        if not u8s8_products_exact():
            raise RuntimeError("an int8 TorchScript file needs int8 dot-product instructions (AVX512-VNNI, AVX-VNNI "
                               "or AMX) that oneDNN may use: without them its u8s8 products saturate, so the scores "
                               "would be wrong on this CPU; use the ONNX int8 export (ONNX Runtime, OpenVINO) or the "
                               "fp32 model's TorchScript here")

    @torch.jit.export
    def check_machine(self) -> None:
        """Prepares the file for the running machine, once, at load, before any thread scores with it (the loaders
        call it: skipgan.export.torchscript.load, the C++ scanner): an int8 file (GEMM form) refuses a CPU whose u8s8
        products saturate (u8s8_products_exact) and prepacks its int8 weights for this CPU. The only method that
        writes the module's state: scoring never does, so a prepared module can be shared by threads."""
        if self.gemm_int8 and not self.int8_checked:
            self._require_exact_u8s8()
            for layer in self.encoder:
                layer.prepack()
            for layer in self.decoder:
                layer.prepack()
            for layer in self.pyramid:
                layer.prepack()
            self.feature.prepack()
            self.int8_checked = True

    def _run(self, images: torch.Tensor, want: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the model's image scores fp32 [B], a map fp32 [B, isize, isize] or an empty tensor). want: 0 no map, 1
        the raw per-pixel error map, 2 the anomaly map the aggregation reads (smoothed, in σ units: MapHead)."""
        if self.gemm_int8 and not self.int8_checked:  # not prepared at load: checked on every call, nothing written
            self._require_exact_u8s8()
        x = self._prepare(images)
        x_hat = self._reconstruct(x)
        if self.native:
            x_hat = x_hat.contiguous(memory_format=torch.channels_last)
        f_both, level0 = self.features(torch.cat([x, x_hat], 0))
        b = x.shape[0]
        f, f_hat = f_both[:b], f_both[b:]
        head = self.head
        uses_map = want == 2 or not head.paper  # the score or the output reads the head's map
        need_error = want == 1 or (uses_map and not head.reads_knn)
        emap = torch.empty(0)
        if self.native:
            if need_error:
                scores = torch.empty([b], dtype=torch.float32, device=x.device)
                emap = torch.empty([b, self.isize, self.isize], dtype=torch.float32, device=x.device)
                torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, self.lam, scores, emap, self.margin, None)
            else:
                scores = torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, self.lam, self.margin)
        else:
            scores = combine_scores(x, x_hat, f, f_hat, self.lam, self.margin)[0]
            if need_error:
                emap = error_map(x, x_hat)
        if not uses_map:
            return scores, emap
        amap = head.anomaly_map(emap, level0[:b], x)
        if not head.paper:
            scores = head.score(amap)
        return scores, amap if want == 2 else emap

    def _outputs(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalised, abnormal = verdicts(scores, self.threshold, self.val_mean, self.val_std)  # as `skipgan score`
        return scores, normalised, abnormal

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the model's image scores fp32 [B], normalised fp32 [B], verdicts bool [B]: True = abnormal)."""
        scores, _ = self._run(images, 0)
        return self._outputs(scores)

    @torch.jit.export
    def score_with_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's outputs and the raw per-pixel error map fp32 [B, isize, isize]."""
        scores, emap = self._run(images, 1)
        s, z, v = self._outputs(scores)
        return s, z, v, emap

    @torch.jit.export
    def score_with_anomaly_map(self, images: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's outputs and the anomaly map fp32 [B, isize, isize] in σ units: the one the model's aggregation
        reads (the knn map for 'knn', the error map's otherwise), smoothed and normalised as `skipgan score` has it
        before upsampling."""
        scores, amap = self._run(images, 2)
        s, z, v = self._outputs(scores)
        return s, z, v, amap


class WithMap(nn.Module):
    """The pipeline with a map as a fourth output, for graph formats (one entry point per file): `kind` "error"
    (score_with_map) or "anomaly" (score_with_anomaly_map)."""

    anomaly: Final[bool]

    def __init__(self, pipeline: ScreeningPipeline, kind: str):
        super().__init__()
        self.pipeline, self.anomaly = pipeline, kind == "anomaly"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.anomaly:
            return self.pipeline.score_with_anomaly_map(images)
        return self.pipeline.score_with_map(images)


def build_pipeline(model, calibration: dict, *, native: bool, dtype: torch.dtype = torch.float32,
                   probes: int | None = None, device: str | torch.device = "cpu", tiled: bool = True,
                   plan: Plan | None = None, tf32: bool = False, aggregation: str = "mean",
                   map_settings: MapSettings = MapSettings(), query_block: int = QUERY_BLOCK,
                   int8: bool = False) -> ScreeningPipeline:
    """A trained SkipGANomaly folded exactly as the engine folds it (skipgan.engine.fold.fold_for_scoring), in eval
    mode on `device`. native: the skipgan ops, laid out as the engine runs them on that device (CPU: its GEMM form,
    each layer's form and library from `plan` (gemm_plan), else the fixed rules; CUDA: cuDNN convolutions + the
    fused epilogue, its fp32 convolutions on TF32 tensor cores only with tf32); otherwise standard operators only.
    aggregation / map_settings: the image score and map (the model's knn memory for 'knn'; `calibration` is that
    aggregation's). int8: the quantised layers of an int8 model (model.int8) in their int8 forms (CPU GEMM: oneDNN's
    u8s8 product; standard: QuantizeLinear/DequantizeLinear around the Conv), the rest as above in `dtype`."""
    net, chosen = fold_for_scoring(model, probes, int8)
    mode = STANDARD if not native else GEMM if torch.device(device).type == "cpu" else VENDOR
    if int8 and mode == VENDOR:
        raise ValueError("int8: the int8 layers run on the CPU (oneDNN u8s8) or as ONNX QDQ operators, not on CUDA")
    return ScreeningPipeline(net, chosen, calibration, dtype=dtype, mode=mode, tiled=tiled,
                             plan=plan.choices if plan is not None and mode == GEMM else None,
                             tf32=tf32, aggregation=aggregation, map_settings=map_settings,
                             knn=model.knn if aggregation == "knn" else None,
                             query_block=query_block).eval().to(device)


def gemm_plan(model, *, dtype: torch.dtype, probes: int | None, max_batch: int, mode: str | None = None) -> Plan:
    """The engine's plan for this model on this CPU (skipgan.engine.plan: measured, or read from the cache that the
    engine shares), for the layers as a Screener of max_batch images runs them: what a GEMM-form export carries."""
    net, chosen = fold_for_scoring(model, probes)
    rows = generator_rows(net.isize, int(chosen[2].shape[0]), max_batch)
    return choose_plan(network_specs(net, rows, 2 * max_batch), dtype, torch.device("cpu"), mode)[0]
