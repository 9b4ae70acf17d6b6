"""Skip-GANomaly generator: the pix2pix UNet with skip connections, written with explicit activations.

The original pix2pix code applies LeakyReLU(0.2) *in place* at the start of each inner block, so the tensor that
the skip connection concatenates is LeakyReLU(y_k), not y_k; the decoder then applies ReLU to the concatenation.
We write that semantics out explicitly (no in-place tricks):

    encoder level k:  y_1 = conv_1(x);  y_k = BN_k(conv_k(LeakyReLU(y_{k-1})))  (innermost: no BN)
    decoder:          d_n = BN(convT_n(ReLU(y_n)))
                      d_k = BN(convT_k(cat(ReLU(y_k), ReLU(d_{k+1}))))   since ReLU(LeakyReLU(y)) == ReLU(y)
    output:           x_hat = tanh(convT_1(cat(ReLU(y_1), ReLU(d_2))) + bias)

The fused engine relies on exactly this: one epilogue over conv_k's output writes LeakyReLU(y_k) for the next
conv and ReLU(y_k) into the decoder's concatenation buffer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..isize import isize_levels

LEAKY_SLOPE = 0.2


def level_widths(num_downs: int, ngf: int) -> list[int]:
    """Output channels of encoder levels 1..num_downs: ngf, 2ngf, 4ngf, then 8ngf for every deeper level."""
    return [ngf * min(2**k, 8) for k in range(num_downs)]


class EncoderLevel(nn.Module):
    """conv(k=4, s=2, p=1, no bias) followed by BN (absent on the outermost and innermost levels)."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) if self.bn is not None else y


class DecoderLevel(nn.Module):
    """convT(k=4, s=2, p=1) followed by BN; the outermost level has a bias and no BN (tanh is applied outside)."""

    def __init__(self, cin: int, cout: int, outermost: bool):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=outermost)
        self.bn = None if outermost else nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) if self.bn is not None else y


class UNetGenerator(nn.Module):
    """pix2pix UNet with num_downs = log2(isize) levels, so the innermost feature map is 1x1."""

    def __init__(self, isize: int = 32, nc: int = 3, ngf: int = 64):
        super().__init__()
        if nc < 1:
            raise ValueError(f"nc={nc}: the number of image channels must be at least 1")
        self.isize, self.nc, self.ngf = isize, nc, ngf
        n = isize_levels(isize)
        widths = level_widths(n, ngf)
        cins = [nc] + widths[:-1]
        self.down = nn.ModuleList(
            EncoderLevel(cins[k], widths[k], norm=0 < k < n - 1) for k in range(n)
        )
        # Decoder level k produces the tensor concatenated with the encoder skip of level k-1 (or the image).
        # Its input is widths[k] channels at the innermost level and 2*widths[k] (skip + decoder) elsewhere.
        self.up = nn.ModuleList(
            DecoderLevel(widths[k] * (1 if k == n - 1 else 2), cins[k], outermost=k == 0) for k in range(n)
        )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activation outputs y_1..y_n of every encoder level."""
        ys = [self.down[0](x)]
        for level in self.down[1:]:
            ys.append(level(F.leaky_relu(ys[-1], LEAKY_SLOPE)))
        return ys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = self.encode(x)
        d = self.up[-1](F.relu(ys[-1]))
        for k in range(len(ys) - 2, -1, -1):
            d = self.up[k](torch.cat([F.relu(ys[k]), F.relu(d)], dim=1))
        return torch.tanh(d)
