"""Skip-GANomaly discriminator: a DCGAN encoder whose last conv gives the feature vector f(x).

    Conv(nc→ndf, 4, 2, 1) + LeakyReLU
    [Conv(c→2c, 4, 2, 1) + BN + LeakyReLU] until the map is 4×4
    Conv(c→nz, 4, 1, 0)            → f(x), [B, nz, 1, 1]   (the latent-loss and anomaly-score features)
    classifier Conv(nz→1, 3, 1, 1) → one logit per image   (trained with BCE-with-logits)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..isize import check_isize
from .unet import LEAKY_SLOPE, EncoderLevel


class PyramidLevel(EncoderLevel):
    """The generator's encoder level (conv 4/2/1 + optional BN) followed by LeakyReLU(0.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(super().forward(x), LEAKY_SLOPE)


class Discriminator(nn.Module):
    def __init__(self, isize: int = 32, nc: int = 3, ndf: int = 64, nz: int = 100):
        super().__init__()
        check_isize(isize)
        self.isize, self.nc, self.ndf, self.nz = isize, nc, ndf, nz
        levels = [PyramidLevel(nc, ndf, norm=False)]
        size, c = isize // 2, ndf
        while size > 4:
            levels.append(PyramidLevel(c, c * 2, norm=True))
            size, c = size // 2, c * 2
        self.pyramid = nn.Sequential(*levels)
        self.feature = nn.Conv2d(c, nz, 4, 1, 0, bias=False)
        self.classifier = nn.Conv2d(nz, 1, 3, 1, 1, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): [B, nz] feature vector."""
        return self.feature(self.pyramid(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B], features [B, nz])."""
        f = self.feature(self.pyramid(x))
        return self.classifier(f).flatten(), f.flatten(1)
