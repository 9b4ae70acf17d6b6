"""The 'knn' anomaly map: how far each patch's discriminator texture descriptor lies from the nearest normal one.

Why: the reconstruction error cannot see a defect that is *smoother* than its background. After a short training
the generator's reconstruction of a fine texture (grass, gravel) is nearly flat, so the error map measures local
contrast, and a smooth blob or a pasted low-contrast texture scores *below* the normal texture around it
(benchmarks/accuracy/local_defects.py breakdown). The discriminator, trained to tell real texture from blurry
reconstructions, has first-level filters tuned to exactly that difference. Their local energy, compared with a
memory of normal patches, finds both kinds of defect.

    a        = D's first pyramid level on x: LeakyReLU(conv(x)), [N, ndf, isize/2, isize/2] (the engine already
               computes it for the score: no second pass)
    energy   = |conv(x)|, recovered exactly from a (negative values were scaled by the LeakyReLU slope)
    desc     = energy ** `power` averaged over a `window` x `window` neighbourhood (stride 1; windows cut at the
               border)
    distance = Euclidean distance of each desc to its nearest neighbour in the memory: `memory_size` descriptors
               drawn (seeded, without replacement) from every position of every normal training image
    raw map  = distance upsampled (bilinear) to isize x isize

The raw map is then smoothed and normalised like the error map (skipgan/anomaly_map.py, statistics of its own from
the validation normals, which are not in the memory) and the 'knn' aggregation scores an image by its maximum.
Settings chosen on the development split of the local-defect benchmark (`make --dev`: train and test crops both
from the training columns; `local_defects.py knn` re-fits memories with other settings), never on its reported test
split (README "The knn map"): the first level rather than deeper levels or the generator's encoder, its energy
rather than signed activations, k = 1, and power 0.5 with window 7 (dev mean image / pixel AUROC / PRO 0.929 /
0.934 / 0.829, against 0.899 / 0.879 / 0.734 for the energy itself over 9 cells, the first default). Why the square
root: the energy is heavy-tailed, so in a Euclidean distance a few high-contrast edges outweigh everything else;
its square root (the variance-stabilising transform of a magnitude) lets the quiet regions count, where smooth
blobs and low-contrast foreign textures sit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from .unet import LEAKY_SLOPE

# Distance blocks: QUERY_BLOCK queries x MEMORY_BLOCK memory rows (8 MB of fp32 partial distances) stay in the
# last-level cache between the GEMM that writes them and the min that reads them. Measured on the 2-core CPU,
# 16,384 queries against 30,000 x 64: 0.56 s, against 1.77 s for whole 4096-query rows of the distance matrix.
QUERY_BLOCK, MEMORY_BLOCK = 512, 4096


@dataclasses.dataclass(frozen=True)
class KnnSettings:
    window: int = 7  # descriptor neighbourhood, in cells of D's first level (2 x 2 input pixels each)
    memory_size: int = 10000  # descriptors kept from the normal training images
    # exponent of the energy before averaging; model files written before it was a setting used 1 (from_file)
    power: float = 0.5

    def __post_init__(self):
        if not (isinstance(self.window, int) and self.window >= 1 and self.window % 2 == 1):
            raise ValueError(f"knn_window={self.window!r}: must be an odd positive integer (cells of the "
                             "discriminator's first level)")
        if not (isinstance(self.memory_size, int) and self.memory_size >= 1):
            raise ValueError(f"knn_memory={self.memory_size!r}: must be a positive integer (descriptors kept)")
        if not (isinstance(self.power, (int, float)) and 0 < self.power <= 4):
            raise ValueError(f"knn_power={self.power!r}: must be in (0, 4] (0.5 = square root of the energy)")


def first_level(model, x: torch.Tensor) -> torch.Tensor:
    """D's first pyramid level on x, as the eager model computes it (the engine taps its own buffer instead)."""
    return model.discriminator.pyramid[0](x)


def descriptors(level0: torch.Tensor, window: int, power: float = KnnSettings.power) -> torch.Tensor:
    """First-level activations [N, C, h, w] (any float dtype and layout) -> fp32 descriptors [N, C, h, w]."""
    a = level0.float()
    energy = torch.where(a >= 0, a, a * (-1.0 / LEAKY_SLOPE))  # |pre-activation|
    if power != 1:
        energy = energy.pow(power)
    if window == 1:
        return energy.contiguous()
    return F.avg_pool2d(energy, window, 1, window // 2, count_include_pad=False)


def _rows(desc: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] -> [N·h·w, C] (one descriptor per position)."""
    return desc.permute(0, 2, 3, 1).reshape(-1, desc.shape[1])


class PatchKnn:
    """A memory of normal descriptors and the distance maps against it. Plain data: the model carries it as
    `model.knn` (None when the model has none) and model files store it as the tensor `knn_memory`."""

    def __init__(self, memory: torch.Tensor, settings: KnnSettings = KnnSettings()):
        if memory.dim() != 2 or memory.shape[0] < 1:
            raise ValueError(f"knn memory must be [M >= 1, C], got shape {tuple(memory.shape)}")
        self.memory = memory.float().contiguous()
        self.settings = settings
        self._on: dict[torch.device, torch.Tensor] = {}

    @classmethod
    @torch.no_grad()
    def fit(cls, model, images: torch.Tensor, settings: KnnSettings = KnnSettings(), seed: int = 0,
            batch_size: int = 64) -> "PatchKnn":
        """The memory from normal training images [N, C, isize, isize] in [-1, 1] (model in eval mode)."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            rows = torch.cat([_rows(descriptors(first_level(model, images[i : i + batch_size].to(device)),
                                                settings.window, settings.power)).cpu()
                              for i in range(0, len(images), batch_size)])
        finally:
            model.train(was_training)
        gen = torch.Generator().manual_seed(seed)
        if len(rows) > settings.memory_size:
            rows = rows[torch.randperm(len(rows), generator=gen)[: settings.memory_size]]
        return cls(rows, settings)

    def _memory(self, device: torch.device) -> torch.Tensor:
        if device not in self._on:
            self._on[device] = self.memory.to(device)
        return self._on[device]

    @torch.no_grad()
    def distances(self, level0: torch.Tensor) -> torch.Tensor:
        """First-level activations [N, C, h, w] -> nearest-memory distances [N, h, w] fp32."""
        desc = descriptors(level0, self.settings.window, self.settings.power)
        n, c, h, w = desc.shape
        if c != self.memory.shape[1]:
            raise ValueError(f"knn memory holds {self.memory.shape[1]}-channel descriptors, the discriminator "
                             f"gives {c}")
        q, mem = _rows(desc), self._memory(desc.device)
        mem_sq = mem.pow(2).sum(1)
        # |q − m|² = |q|² − 2 q·m + |m|²: a GEMM per block, a running minimum over the memory blocks, |q|² last
        out = torch.full((len(q),), float("inf"), device=q.device)
        part = torch.empty(min(len(q), QUERY_BLOCK), min(len(mem), MEMORY_BLOCK), device=q.device)
        for i in range(0, len(q), QUERY_BLOCK):
            b, o = q[i : i + QUERY_BLOCK], out[i : i + QUERY_BLOCK]
            for j in range(0, len(mem), MEMORY_BLOCK):
                m = mem[j : j + MEMORY_BLOCK]
                d = part[: len(b), : len(m)]
                torch.addmm(mem_sq[j : j + MEMORY_BLOCK][None], b, m.T, alpha=-2.0, out=d)
                torch.minimum(o, d.amin(1), out=o)
            o.add_(b.pow(2).sum(1)).clamp_min_(0).sqrt_()
        return out.view(n, h, w)

    def raw_maps(self, level0: torch.Tensor, isize: int) -> torch.Tensor:
        """First-level activations -> raw knn maps [N, isize, isize] fp32 (distances upsampled bilinearly)."""
        d = self.distances(level0)[:, None]
        return F.interpolate(d, size=(isize, isize), mode="bilinear", align_corners=False)[:, 0]

    def to_meta(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    @classmethod
    def from_file(cls, memory: torch.Tensor, meta: dict[str, Any]) -> "PatchKnn":
        names = {f.name for f in dataclasses.fields(KnnSettings)}
        # files from before the power was a setting averaged the energy itself; their memory holds such descriptors
        settings = {"power": 1.0, **{k: v for k, v in meta.items() if k in names}}
        return cls(memory, KnnSettings(**settings))
