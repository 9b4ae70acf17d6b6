"""Skip-GANomaly losses.

G: w_adv·BCE(D(x̂), real) + w_con·L1(x̂, x) + w_lat·MSE(f(x̂), f(x))
D: BCE(D(x), real) + BCE(D(x̂.detach()), fake)
BCE is computed on logits (BCE-with-logits: the same math as Sigmoid + BCE, numerically stable).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class LossWeights:
    adv: float = 1.0
    con: float = 50.0  # the official code's default; the paper uses 40
    lat: float = 1.0


def generator_loss(logits_fake, x_hat, x, f_hat, f_real, w: LossWeights) -> dict[str, torch.Tensor]:
    adv = F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    con = F.l1_loss(x_hat, x)
    lat = F.mse_loss(f_hat, f_real)
    total = w.adv * adv + w.con * con + w.lat * lat
    return {"g": total, "adv": adv, "con": con, "lat": lat}


def discriminator_loss(logits_real, logits_fake) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return real + fake
