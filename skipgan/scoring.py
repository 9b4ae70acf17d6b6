"""The anomaly score A(x) = λ·R(x) + (1−λ)·L(x) as plain tensor math.

R = mean squared pixel error, L = mean squared discriminator-feature error, both per image and in fp32.
This is the pure-PyTorch definition; the native `skipgan::anomaly_score` op computes the same in one pass.
"""

from __future__ import annotations

import torch


def interior(t: torch.Tensor, margin: int) -> torch.Tensor:
    """The image without a `margin`-pixel border (a view)."""
    return t[..., margin : t.shape[-2] - margin, margin : t.shape[-1] - margin] if margin else t


def combine_scores(x, x_hat, f, f_hat, lam: float, margin: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(score, R, L), each [B] fp32. R is taken over the interior: `margin` border pixels are left out."""
    x, x_hat = interior(x, margin), interior(x_hat, margin)
    pixel = (x.float() - x_hat.float()).pow(2).flatten(1).mean(1)
    feature = (f.float() - f_hat.float()).pow(2).flatten(1).mean(1)
    return lam * pixel + (1.0 - lam) * feature, pixel, feature


def error_map(x, x_hat) -> torch.Tensor:
    """[B, H, W] fp32 per-pixel squared error, averaged over channels."""
    return (x.float() - x_hat.float()).pow(2).mean(1)
