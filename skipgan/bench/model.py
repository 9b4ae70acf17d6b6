"""The model every runtime of the bench scores, and its input: random weights of the default architecture or a
trained model file, with K scoring probes."""

from __future__ import annotations

import copy
import os
from typing import NamedTuple

import torch
from torch import nn

from ..model import Architecture, Corruption, SkipGANomaly
from ..model.corruption import select_probes
from ..modelfile import load_model

SPEED_NOTE = ("weights: random (DCGAN init, BN statistics randomised); speed does not depend on training, "
              "the numbers hold for a trained model of the same architecture")


class Config(NamedTuple):
    batch: int
    isize: int
    probes: int  # K: scoring probes (0 = the paper recipe, score the clean input)


def default_configs() -> list[Config]:
    return [Config(b, s, k) for s in (32, 128) for k in (0, 8) for b in (1, 64)]


def make_model(isize: int = 32, nc: int = 1, probes: int | None = 8, seed: int = 0, *,
               path: str | os.PathLike | None = None, ngf: int = 64, ndf: int = 64, nz: int = 100,
               lam: float = 0.9) -> SkipGANomaly:
    """The model every runtime scores, in eval mode on the CPU.

    Default: the default architecture (ngf = ndf = 64, nz = 100, λ = 0.9) with random DCGAN-init weights and
    K = `probes` noise probes (`Corruption(noise_std=2.0, score_draws=K)`; K = 0: the paper's recipe, the clean
    input), BN running statistics randomised a little so that folding them is not a no-op. Speed does not
    depend on training. With `path`: that trained model file instead (its isize must be `isize`; it scores
    with the first `probes` of its stored probes, reweighted; None: all of them).
    """
    if path is not None:
        model = load_trained(path)
        if model.arch.isize != isize:
            raise ValueError(f"isize={isize}: the model file {path} is for isize {model.arch.isize}")
        return with_probes(model, probes)
    torch.manual_seed(seed)
    probes = probes or 0
    corruption = Corruption(noise_std=2.0, score_draws=probes) if probes else Corruption()
    model = SkipGANomaly(Architecture(isize=isize, nc=nc, ngf=ngf, ndf=ndf, nz=nz), lam=lam, corruption=corruption)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.05)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
    return model.eval()


def load_trained(path: str | os.PathLike) -> SkipGANomaly:
    """A trained model file (skipgan.modelfile), in eval mode on the CPU; InputError if the file is bad. An int8
    model file (skipgan quantize) holds its fp32 weights too: the float rows time those, `engine_int8` its own
    int8 calibration (the int8 peers calibrate on the bench's input as always)."""
    return load_model(path, "cpu")[0]


def with_probes(model: SkipGANomaly, k: int | None) -> SkipGANomaly:
    """A copy of `model` scoring with the first k of its stored probes, reweighted (k=None: as stored);
    ValueError 'probes=k: ...' where the model cannot (see select_probes)."""
    scale, shift, weight = select_probes(model.probe_scale, model.probe_shift, model.probe_weight, k)
    if weight.shape[0] == model.probe_weight.shape[0]:
        return model
    m = copy.deepcopy(model)
    m.probe_scale, m.probe_shift, m.probe_weight = scale.clone(), shift.clone(), weight.clone()
    return m.eval()


def num_probes(model: SkipGANomaly) -> int:
    return int(model.probe_weight.shape[0])


def make_input(model: SkipGANomaly, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = model.arch
    return (torch.rand(batch, a.nc, a.isize, a.isize, generator=g) * 2 - 1).to(device)


def reference_scores(model: SkipGANomaly, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.score(x).score.float()
