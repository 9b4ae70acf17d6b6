"""FLOPs and weights per scored image, and the bounds they give on a measured machine (the roofline of a call)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..model import SkipGANomaly
from .model import num_probes


def conv_macs(layer: nn.Conv2d | nn.ConvTranspose2d, in_hw: tuple[int, int]) -> int:
    """Multiply-adds of one image through a (transposed) convolution whose input is in_hw = (H, W).

    Conv2d: every output value is a dot product of length C_in/groups · kh · kw. ConvTranspose2d: every input
    value is scattered, times C_out/groups · kh · kw weights, into the output.
    """
    kh, kw = layer.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    if isinstance(layer, nn.ConvTranspose2d):
        return in_hw[0] * in_hw[1] * layer.in_channels * (layer.out_channels // layer.groups) * kh * kw
    oh = (in_hw[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (in_hw[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return oh * ow * layer.out_channels * (layer.in_channels // layer.groups) * kh * kw


def _conv_out_hw(layer, hw):
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    if isinstance(layer, nn.ConvTranspose2d):
        op = layer.output_padding
        return ((hw[0] - 1) * sh - 2 * ph + kh + op[0], (hw[1] - 1) * sw - 2 * pw + kw + op[1])
    return ((hw[0] + 2 * ph - kh) // sh + 1, (hw[1] + 2 * pw - kw) // sw + 1)


def _chain_macs(convs, size: int) -> int:
    """Multiply-adds of one image through convolutions applied one after the other from a size x size input."""
    total, hw = 0, (size, size)
    for conv in convs:
        total += conv_macs(conv, hw)
        hw = _conv_out_hw(conv, hw)
    return total


def generator_macs(model: SkipGANomaly) -> int:
    """One image through the UNet: encoder convs at S, S/2, ...; decoder convTs from the 1x1 map back up."""
    g = model.generator
    return _chain_macs([level.conv for level in g.down] + [level.conv for level in reversed(g.up)],
                       model.arch.isize)


def discriminator_macs(model: SkipGANomaly) -> int:
    """One image through the pyramid and the feature conv (the classifier is not part of the score)."""
    d = model.discriminator
    return _chain_macs([level.conv for level in d.pyramid] + [d.feature], model.arch.isize)


def flops_per_image(model: SkipGANomaly) -> int:
    """2 · multiply-adds of scoring one image: the generator on max(K, 1) probes, the discriminator on x and x̂."""
    return 2 * (generator_macs(model) * max(num_probes(model), 1) + discriminator_macs(model) * 2)


def weight_count(model: SkipGANomaly) -> int:
    """Weights the scorer reads per call: every conv of G and of D's feature path, plus one shift per output
    channel where BN or a bias folds into it (BN itself costs nothing once folded)."""
    n = 0
    for m in [*model.generator.modules(), *model.discriminator.pyramid.modules(), model.discriminator.feature]:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            n += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        elif isinstance(m, nn.BatchNorm2d):
            n += m.num_features
    return n


def model_bounds(model: SkipGANomaly, machine: dict[str, Any] | None) -> dict[str, Any]:
    """FLOPs and weight bytes per image of `model`, and what the measured machine allows at most."""
    flops, nw = flops_per_image(model), weight_count(model)
    out: dict[str, Any] = {"flops_per_image": flops, "weights": nw, "weight_bytes_fp32": 4 * nw,
                           "weight_bytes_bf16": 2 * nw}
    if machine:
        for p in ("fp32", "bf16"):
            g = machine.get(f"{p}_gflop_s")
            out[f"compute_img_s_{p}"] = g * 1e9 / flops if g else None
            out[f"weight_stream_img_s_b1_{p}"] = machine["read_gb_s"] * 1e9 / out[f"weight_bytes_{p}"]
    return out


def limit_img_s(bounds: dict[str, Any] | None, precision: str, batch: int) -> float | None:
    """The roofline of one call of `batch` images: the slower of computing its FLOPs at the machine's fastest matmul
    rate and streaming the weights once (bf16 rows: bf16 rate and bytes). None where the limits were not
    measured."""
    if not bounds or not bounds.get(f"compute_img_s_{precision}") or not bounds.get(f"weight_stream_img_s_b1_{precision}"):
        return None
    t = max(1 / bounds[f"compute_img_s_{precision}"], 1 / (batch * bounds[f"weight_stream_img_s_b1_{precision}"]))
    return 1 / t
