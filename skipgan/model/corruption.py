"""Input corruption: what the generator sees in training (random) and when scoring (a fixed set of probes).

Why: the UNet's full-resolution skip connections let the generator copy ANY input, normal or not, so a clean
reconstruction error barely separates the classes (the paper recipe's honest digits AUROC, 0.75). A generator
that must restore pixels it cannot see, from a model of the normal images alone, restores abnormal images worse.

- Noise: N(0, noise_std²) added to the input (denoising). Scoring averages the reconstructions of
  `score_draws` fixed noise patterns (0 = score the clean input, the paper's way).
- Masks: the image is cut into mask_block × mask_block cells; training hides a random 1/mask_groups of them
  (set to 0, mid-grey; training noise, if any, stays on the visible pixels), scoring hides each of
  `mask_groups` fixed disjoint cell groups in turn and stitches every pixel from the pass in which it was
  hidden (inpainting, as in RIAD; Zavrtanik et al. 2021). score_draws must then be 0.

Scoring probes are tensors stored with the model (so a model file, TorchScript or ONNX export scores exactly
the same): input_k = x·scale_k + shift_k, reconstruction = Σ_k weight_k · G(input_k).
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Corruption:
    noise_std: float = 0.0
    mask_block: int = 0  # 0 = no masking
    mask_groups: int = 4
    score_draws: int = 0  # fixed noise probes averaged at scoring time; 0 = score the clean input
    seed: int = 0  # of the fixed scoring probes

    def check(self, isize: int) -> None:
        """ValueError 'name=value: must be ...' for settings that cannot work at this image size."""
        b = self.mask_block
        checks = [
            (self.noise_std >= 0.0, "noise_std", "non-negative"),
            (self.score_draws >= 0, "score_draws", "non-negative"),
            (self.score_draws == 0 or self.noise_std > 0, "score_draws", "0 unless noise_std > 0"),
            (b == 0 or (b > 0 and isize % b == 0 and b <= isize // 2), "mask_block",
             f"0 or a divisor of isize {isize} no larger than {isize // 2}"),
            (b == 0 or 2 <= self.mask_groups <= (isize // b) ** 2, "mask_groups",
             f"from 2 to the number of cells ({(isize // max(b, 1)) ** 2})"),
            (b == 0 or self.score_draws == 0, "score_draws", "0 with mask_block (scoring uses the masks)"),
        ]
        for ok, name, want in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be {want}")

    @property
    def active(self) -> bool:
        return self.noise_std > 0 or self.mask_block > 0

    # ------------------------------------------------------------------------------------------- training
    def train_input(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A randomly corrupted copy of the batch x [B, C, H, W]; the draws come from the CPU generator `gen`."""
        if self.noise_std > 0:
            x = x + (torch.randn(x.shape, generator=gen) * self.noise_std).to(x.device, x.dtype)
        if self.mask_block:
            B, cells = x.shape[0], (x.shape[-1] // self.mask_block) ** 2
            rank = torch.rand(B, cells, generator=gen).argsort(1).argsort(1)  # a random order of the cells
            hidden = (rank < cells // self.mask_groups).float()
            x = x * (1 - self._cells_to_pixels(hidden, x.shape[-1]).to(x.device, x.dtype))
        return x

    def _cells_to_pixels(self, cells: torch.Tensor, isize: int) -> torch.Tensor:
        """[N, g*g] cell values -> [N, 1, isize, isize]."""
        g, b = isize // self.mask_block, self.mask_block
        return cells.view(-1, 1, g, g).repeat_interleave(b, 2).repeat_interleave(b, 3)

    # ------------------------------------------------------------------------------------------- scoring
    def probes(self, nc: int, isize: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scale [K,1,H,W], shift [K,nc,H,W], weight [K,1,H,W]); K = 0 means: score the clean input."""
        gen = torch.Generator().manual_seed(self.seed)
        if self.mask_block:
            cells = (isize // self.mask_block) ** 2
            group = torch.randperm(cells, generator=gen) % self.mask_groups  # every cell in exactly one group
            hidden = self._cells_to_pixels(torch.stack([(group == k).float() for k in range(self.mask_groups)]), isize)
            return 1 - hidden, torch.zeros(self.mask_groups, nc, isize, isize), hidden
        if self.score_draws:
            K = self.score_draws
            shift = torch.randn(K, nc, isize, isize, generator=gen) * self.noise_std
            return torch.ones(K, 1, isize, isize), shift, torch.full((K, 1, isize, isize), 1.0 / K)
        return torch.ones(0, 1, isize, isize), torch.zeros(0, nc, isize, isize), torch.zeros(0, 1, isize, isize)


def select_probes(scale: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor, k: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first k of a model's K stored scoring probes, reweighted to average: the scoring-time speed knob.

    k=None keeps them all as stored; k=0 scores the clean input (no probes). Noise probes are exchangeable
    draws, so any prefix is a valid smaller average (weights 1/k). Inpainting probes are a partition of the
    pixels: only all of them (or none) make a reconstruction, so other k raise ValueError.
    """
    K = weight.shape[0]
    if k is None or k == K:
        return scale, shift, weight
    if not 0 <= k <= K:
        raise ValueError(f"probes={k}: must be from 0 to the model's {K} stored scoring probes")
    if k == 0:
        return scale[:0], shift[:0], weight[:0]
    uniform = bool((scale == 1).all()) and bool((weight == weight.flatten()[0]).all())
    if not uniform:
        raise ValueError(f"probes={k}: this model's {K} probes are inpainting masks that only work together; "
                         f"use {K} or 0")
    return scale[:k], shift[:k], torch.full_like(weight[:k], 1.0 / k)


def probe_inputs(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The K generator inputs of a batch, probe-major: [K·B, C, H, W] with input_k = x·scale_k + shift_k.
    (TorchScript- and torch.export-able: the model, the engine's exports and their tests share it.)"""
    probes = x.unsqueeze(0) * scale.unsqueeze(1).to(x.dtype) + shift.unsqueeze(1).to(x.dtype)
    return probes.flatten(0, 1)


def mix_probes(y: torch.Tensor, weight: torch.Tensor, batch: int) -> torch.Tensor:
    """x̂ = Σ_k weight_k · y_k from the generator's outputs y [K·B, C, H, W] of `probe_inputs`."""
    y = y.unflatten(0, (weight.shape[0], batch))
    return (y * weight.unsqueeze(1).to(y.dtype)).sum(0)
