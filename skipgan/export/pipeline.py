"""The engine's screening pipeline as one `nn.Module`: what every export format holds.

    images  [B, C, H, W] uint8 / uint16 (or float in [0, 1]), any H×W, as they come off a decoder
      -> skipgan.preprocess.to_model_input            (resize + normalise + channels: the one definition)
      -> probes (skipgan.model.corruption.probe_inputs / mix_probes) around the folded generator
      -> the folded discriminator once over [x; x̂]
      -> the score (skipgan::anomaly_score, or skipgan.scoring.combine_scores in standard operators)
      -> (scores fp32 [B], normalised fp32 [B], verdicts bool [B])   (+ error map fp32 [B, isize, isize])

The layers are the engine's: `skipgan.engine.fold` folds BatchNorm into each convolution once, and the probes
are chosen by `select_probes` as the engine chooses them. Two spellings of each layer, picked at build time:

- native=True (TorchScript, AOTInductor): `skipgan::conv_bn_act_out` (oneDNN / cuDNN convolution + the fused
  bias/activation epilogue, the encoder's LeakyReLU and ReLU outputs in one pass) and `skipgan::anomaly_score`,
  in channels_last. Consumers load libskipgan_ops (Python: `import skipgan`; C++: link it).
- native=False (ONNX, TensorRT): standard operators only — Conv with the BN folded into its bias, LeakyRelu,
  Relu, ConvTranspose, Tanh, Resize and the score as Sub/Mul/ReduceMean.

The engine's CPU "gemm" backend (prepacked oneDNN/MKL matrices in NHWC scratch buffers) is a runtime plan, not a
graph, so exports carry this per-layer form of the same folded network; `tests/test_export.py` checks every
format's scores against the engine's.
"""

from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..engine.fold import FoldedConv, FoldedNetwork
from ..model.corruption import mix_probes, probe_inputs
from ..preprocess import to_model_input
from ..scoring import combine_scores, error_map



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


class FoldedLayer(_ActivationCodes):
    """One folded conv (BN inside weight and shift) with its activation applied in the same pass."""

    stride: Final[int]
    padding: Final[int]
    kernel: Final[int]
    transposed: Final[bool]
    native: Final[bool]

    def __init__(self, fc: FoldedConv, dtype: torch.dtype, native: bool):
        super().__init__()
        self.stride, self.padding, self.kernel, self.transposed = fc.stride, fc.padding, fc.kernel, fc.transposed
        self.native = native
        shift = fc.shift if fc.shift is not None else torch.zeros(fc.c_out)
        self.register_buffer("weight", fc.weight.to(dtype))
        # the native epilogue adds the shift in fp32; a standard Conv's bias has the graph's dtype
        self.register_buffer("shift", shift.float() if native else shift.to(dtype))

    def _out_size(self, size: int) -> int:
        if self.transposed:
            return (size - 1) * self.stride - 2 * self.padding + self.kernel
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def _activation(self, y: torch.Tensor, act: int, slope: float) -> torch.Tensor:
        if act == self.RELU:
            return F.relu(y)
        if act == self.LEAKY:
            return F.leaky_relu(y, slope)
        if act == self.TANH:
            return torch.tanh(y)
        return y

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, self.shift, self.stride, self.padding)
        return F.conv2d(x, self.weight, self.shift, self.stride, self.padding)

    def _empty(self, x: torch.Tensor) -> torch.Tensor:
        c_out = self.weight.shape[1] if self.transposed else self.weight.shape[0]
        return torch.empty([x.shape[0], c_out, self._out_size(x.shape[2]), self._out_size(x.shape[3])],
                           dtype=x.dtype, device=x.device).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, act: int, slope: float) -> torch.Tensor:
        if not self.native:
            return self._activation(self._conv(x), act, slope)
        out = self._empty(x)
        torch.ops.skipgan.conv_bn_act_out(x, self.weight, None, self.shift, [self.stride, self.stride],
                                          [self.padding, self.padding], self.transposed, act, slope, out, 0, None)
        return out

    def leaky_and_relu(self, x: torch.Tensor, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(LeakyReLU(y), ReLU(y)): the encoder's two consumers (next level, decoder skip), one epilogue pass."""
        if not self.native:
            y = self._conv(x)
            return F.leaky_relu(y, slope), F.relu(y)
        out, out2 = self._empty(x), self._empty(x)
        torch.ops.skipgan.conv_bn_act_out(x, self.weight, None, self.shift, [self.stride, self.stride],
                                          [self.padding, self.padding], self.transposed, self.LEAKY, slope, out, self.RELU,
                                          out2)
        return out, out2


class ScreeningPipeline(_ActivationCodes):
    """Decoded images in, (scores, normalised scores, verdicts) out; `score_with_map` adds the error map."""

    isize: Final[int]
    nc: Final[int]
    margin: Final[int]
    native: Final[bool]

    def __init__(self, net: FoldedNetwork, probes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 calibration: dict, *, dtype: torch.dtype = torch.float32, native: bool = True):
        super().__init__()
        self.isize, self.nc, self.margin, self.native = net.isize, net.nc, net.margin, native
        self.lam, self.slope = float(net.lam), float(net.slope)
        self.threshold = float(calibration["threshold"])
        self.val_mean = float(calibration["val_stats"]["mean"])
        self.val_std = float(calibration["val_stats"]["std"])
        self.compute_dtype = dtype
        self.encoder = nn.ModuleList(FoldedLayer(l, dtype, native) for l in net.encoder)
        self.decoder = nn.ModuleList(FoldedLayer(l, dtype, native) for l in reversed(net.decoder))  # innermost first
        self.pyramid = nn.ModuleList(FoldedLayer(l, dtype, native) for l in net.pyramid)
        self.feature = FoldedLayer(net.feature, dtype, native)
        scale, shift, weight = probes
        self.register_buffer("probe_scale", scale.to(dtype))
        self.register_buffer("probe_shift", shift.to(dtype))
        self.register_buffer("probe_weight", weight.to(dtype))

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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.pyramid:
            h = layer(h, self.LEAKY, self.slope)
        return self.feature(h, self.NONE, self.slope).flatten(1)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = to_model_input(images, self.isize, self.nc).to(self.compute_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.native else x

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe_weight.shape[0] == 0:
            return self.generator(x)
        g = probe_inputs(x, self.probe_scale, self.probe_shift)
        if self.native:
            g = g.contiguous(memory_format=torch.channels_last)
        return mix_probes(self.generator(g), self.probe_weight, x.shape[0])

    def _run(self, images: torch.Tensor, want_map: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores fp32 [B], error map fp32 [B, isize, isize] or an empty tensor)."""
        x = self._prepare(images)
        x_hat = self._reconstruct(x)
        if self.native:
            x_hat = x_hat.contiguous(memory_format=torch.channels_last)
        f_both = self.features(torch.cat([x, x_hat], 0))
        b = x.shape[0]
        f, f_hat = f_both[:b], f_both[b:]
        emap = torch.empty(0)
        if self.native:
            if want_map:
                scores = torch.empty([b], dtype=torch.float32, device=x.device)
                emap = torch.empty([b, self.isize, self.isize], dtype=torch.float32, device=x.device)
                torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, self.lam, scores, emap, self.margin, None)
            else:
                scores = torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, self.lam, self.margin)
        else:
            scores = combine_scores(x, x_hat, f, f_hat, self.lam, self.margin)[0]
            if want_map:
                emap = error_map(x, x_hat)
        return scores, emap

    def _outputs(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # normalised as skipgan.metrics.normalise, verdict as `skipgan score`: above the calibrated threshold
        return scores, (scores - self.val_mean) / self.val_std, scores > self.threshold

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores fp32 [B], normalised fp32 [B], verdicts bool [B]: True = abnormal)."""
        scores, _ = self._run(images, False)
        return self._outputs(scores)

    @torch.jit.export
    def score_with_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's outputs and the per-pixel error map fp32 [B, isize, isize]."""
        scores, emap = self._run(images, True)
        s, z, v = self._outputs(scores)
        return s, z, v, emap


class WithErrorMap(nn.Module):
    """The pipeline with `score_with_map` as its forward: for graph formats (one entry point per file)."""

    def __init__(self, pipeline: ScreeningPipeline):
        super().__init__()
        self.pipeline = pipeline

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pipeline.score_with_map(images)


def build_pipeline(model, calibration: dict, *, native: bool, dtype: torch.dtype = torch.float32,
                   probes: int | None = None) -> ScreeningPipeline:
    """A trained SkipGANomaly folded exactly as the engine folds it (skipgan.engine.fold.fold_for_scoring), in eval
    mode on the CPU (move it with .to(device))."""
    from ..engine.fold import fold_for_scoring

    net, chosen = fold_for_scoring(model, probes)
    return ScreeningPipeline(net, chosen, calibration, dtype=dtype, native=native).eval()
