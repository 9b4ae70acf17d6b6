"""Read a trained SkipGANomaly's tensors into an inference description: BatchNorm folded, activations explicit.

Eval-mode BatchNorm is an affine map per channel, y = conv(x)·s + t with s = γ/√(var+ε), t = β − mean·s, so it
folds into the convolution: weight·s (per output channel) and a shift t. Every layer of the generator and the
discriminator becomes a `FoldedConv`: weight (PyTorch layout, fp32), shift [C_out] fp32 or None, geometry.
The engine builds its plan from these alone; `model/` never imports the engine.

An int8 model (skipgan/quant/int8.py) adds to each quantised layer its integers and scales (`Int8Conv`): the
integers of the UNFOLDED conv's weight, exactly those the int8 reference computes, and per output channel the
weight scale times the fold's BN scale (the fold multiplies each output channel by a constant, so it moves into the
scale and the integers stay the reference's).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..model.corruption import select_probes
from ..model.layer_names import by_part, named_layers
from ..model.unet import LEAKY_SLOPE
from ..quant.int8 import out_dim, quantize_weight


@dataclasses.dataclass(frozen=True)
class Int8Conv:
    """A quantised layer: y = (Σ q(x)·q(W) products, exact) · x_scale · scale[c] + shift[c]."""

    weight: torch.Tensor  # int8, the layout of FoldedConv.weight
    scale: torch.Tensor  # fp32 [C_out]: the weight's per-channel scale times the folded BN scale
    x_scale: float  # the input's uint8 grid: x ≈ (q − x_zero) · x_scale
    x_zero: int


@dataclasses.dataclass(frozen=True)
class FoldedConv:
    weight: torch.Tensor  # fp32; Conv2d [C_out, C_in, k, k], ConvTranspose2d [C_in, C_out, k, k]
    shift: torch.Tensor | None  # fp32 [C_out]: folded BN shift and/or conv bias
    stride: int
    padding: int
    transposed: bool
    int8: Int8Conv | None = None  # set on the quantised layers of an int8 model

    @property
    def c_in(self) -> int:
        return self.weight.shape[0 if self.transposed else 1]

    @property
    def c_out(self) -> int:
        return self.weight.shape[1 if self.transposed else 0]

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    def out_size(self, size: int) -> int:
        if self.transposed:
            return (size - 1) * self.stride - 2 * self.padding + self.kernel
        return (size + 2 * self.padding - self.kernel) // self.stride + 1


def fold_conv(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d | None,
              int8: tuple[torch.Tensor, tuple[float, int]] | None = None) -> FoldedConv:
    """conv (+ eval-mode BN) -> one conv with a per-channel shift, computed in fp64 and stored in fp32 on the CPU
    (the engine converts and moves each weight once, to its own layout, device and dtype). int8: (the layer's
    weight scales, its input grid) of an int8 model, to quantise the layer (module docstring)."""
    transposed = isinstance(conv, nn.ConvTranspose2d)
    assert conv.groups == 1 and tuple(conv.dilation) == (1, 1), "the engine supports plain convolutions only"
    assert conv.stride[0] == conv.stride[1] and conv.padding[0] == conv.padding[1]
    w = conv.weight.detach().cpu().double()
    c_out = w.shape[1] if transposed else w.shape[0]
    bn_scale = torch.ones(c_out, dtype=torch.float64)
    bias = conv.bias.detach().cpu().double() if conv.bias is not None else None
    if bn is not None:
        s = bn.weight.detach().cpu().double() / torch.sqrt(bn.running_var.detach().cpu().double() + bn.eps)
        t = bn.bias.detach().cpu().double() - bn.running_mean.detach().cpu().double() * s
        if bias is not None:
            t = t + bias * s
        w = w * (s.view(1, -1, 1, 1) if transposed else s.view(-1, 1, 1, 1))
        bias, bn_scale = t, s
    assert bias is None or bias.shape == (c_out,)
    q = None
    if int8 is not None:
        w_scales, (x_scale, x_zero) = int8
        integers, _ = quantize_weight(conv.weight.detach().cpu(), out_dim(conv), w_scales.cpu())
        q = Int8Conv(integers.contiguous(), (w_scales.cpu().double() * bn_scale).float().contiguous(),
                     float(x_scale), int(x_zero))
    return FoldedConv(w.float().contiguous(), None if bias is None else bias.float().contiguous(),
                      int(conv.stride[0]), int(conv.padding[0]), transposed, q)


@dataclasses.dataclass(frozen=True)
class FoldedNetwork:
    """The whole Skip-GANomaly as folded layers.

    encoder[j]: y_j = encoder[j](a_{j-1}) with a_j = LeakyReLU(y_j); the decoder consumes ReLU(y_j).
    decoder[j]: d_j = decoder[j](cat(ReLU(y_j), ReLU(d_{j+1}))) (innermost: ReLU(y_{n-1}) alone);
    x̂ = tanh(d_0) (decoder[0] carries the output bias).
    pyramid[i]: LeakyReLU(conv) levels of the discriminator; feature: the conv giving f(x) [B, nz].
    """

    encoder: list[FoldedConv]
    decoder: list[FoldedConv]
    pyramid: list[FoldedConv]
    feature: FoldedConv
    isize: int
    nc: int
    lam: float
    margin: int
    slope: float = LEAKY_SLOPE


def fold_model(model, int8: bool = False) -> FoldedNetwork:
    """Fold a SkipGANomaly (any isize / nc / widths). BN uses the running statistics, i.e. eval mode. int8: with
    the quantisation of an int8 model (model.int8) on its quantised layers."""
    g, d = model.generator, model.discriminator
    params = model.int8 if int8 else None
    if int8 and params is None:
        raise ValueError("dtype=int8: this model has no int8 calibration; make an int8 model file with "
                         "`skipgan quantize` first")
    quantised = set(params.quantized_layers) if params else set()

    def fold(name, conv, bn):
        return fold_conv(conv, bn, (params.weight_scales[name], params.inputs[name]) if name in quantised else None)

    pairs = named_layers([(level.conv, level.bn) for level in g.down], [(level.conv, level.bn) for level in g.up],
                         [(level.conv, level.bn) for level in d.pyramid], (d.feature, None))
    encoder, decoder, pyramid, feature = by_part({name: fold(name, *cb) for name, cb in pairs.items()})
    return FoldedNetwork(encoder, decoder, pyramid, feature, model.arch.isize, model.arch.nc, float(model.lam),
                         int(model.margin))


def fold_for_scoring(model, probes: int | None = None, int8: bool = False
                     ) -> tuple[FoldedNetwork, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(folded network, (scale, shift, weight) of the chosen scoring probes), all on the CPU: what the engine and
    every export are built from. probes: the first K stored probes, reweighted (None: all; 0: clean input); int8:
    with the int8 model's quantisation (fold_model)."""
    cpu = [getattr(model, n).detach().cpu() for n in ("probe_scale", "probe_shift", "probe_weight")]
    chosen = select_probes(*cpu, probes)
    with torch.no_grad():
        return fold_model(model, int8), chosen
