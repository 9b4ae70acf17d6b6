"""Skip-GANomaly: generator + discriminator + the anomaly score A(x) = λ·R(x) + (1−λ)·L(x)."""

from __future__ import annotations

import dataclasses
import torch
from torch import nn

from ..isize import ISIZES, check_isize
from .patch_knn import first_level
from ..scoring import Scores, combine_scores, error_map
from .corruption import Corruption, mix_probes, probe_inputs
from .discriminator import Discriminator
from .unet import UNetGenerator


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the networks; stored in every model file.

    The `help` metadata is the `skipgan train` flag's help (the CLI derives --isize, --ngf, --ndf, --nz from these
    fields). nc is no flag of its own: the CLI's --channels (default: the data's channel count) sets it.
    """

    isize: int = dataclasses.field(default=32, metadata={
        "help": f"image size: {', '.join(map(str, ISIZES))} (images are resized to isize x isize)"})
    nc: int = dataclasses.field(default=3, metadata={"cli": False, "flag": "channels"})
    ngf: int = dataclasses.field(default=64, metadata={"help": "generator width (channels of its first level)"})
    ndf: int = dataclasses.field(default=64, metadata={"help": "discriminator width (channels of its first level)"})
    nz: int = dataclasses.field(default=100, metadata={"help": "length of the discriminator's feature vector f(x)"})

    def __post_init__(self):
        check_isize(self.isize)
        for name in ("nc", "ngf", "ndf", "nz"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive integer")


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def check_score_margin(margin: int, isize: int) -> None:
    """Border pixels left out of the pixel error R: the transposed convs reconstruct the outermost pixels worst,
    on normal images too, so there they add noise rather than evidence. 0 = the paper's score."""
    if not 0 <= margin < isize // 4:
        raise ValueError(f"score_margin={margin}: must be in [0, {isize // 4}) for isize {isize}")


class SkipGANomaly(nn.Module):
    def __init__(self, arch: Architecture = Architecture(), lam: float = 0.9, margin: int = 0,
                 corruption: Corruption = Corruption()):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam={lam}: λ weights pixel against feature error and must lie in [0, 1]")
        check_score_margin(margin, arch.isize)
        corruption.check(arch.isize)
        self.arch, self.lam, self.margin, self.corruption = arch, lam, margin, corruption
        self.generator = UNetGenerator(arch.isize, arch.nc, arch.ngf)
        self.discriminator = Discriminator(arch.isize, arch.nc, arch.ndf, arch.nz)
        init_weights(self)
        # The fixed scoring probes (see corruption.py), K of them; K = 0: the generator sees the clean input.
        # Buffers, so that model files and exports carry them and .to() moves them.
        scale, shift, weight = corruption.probes(arch.nc, arch.isize)
        self.register_buffer("probe_scale", scale)
        self.register_buffer("probe_shift", shift)
        self.register_buffer("probe_weight", weight)
        # The 'knn' map's memory of normal patch descriptors (patch_knn.py), set after training; plain data outside
        # the state dict (model files store it as the tensor `knn_memory`).
        self.knn = None
        # int8 quantisation (skipgan/quant/int8.py Int8Params) of an int8 model file, None for fp32 models; model
        # files store it as tensors int8.* and the metadata key `quantization`
        self.int8 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly scores [B] (fp32). Call .eval() first: scores are only meaningful in eval mode."""
        return self.score(x).score

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ = G(x), or with scoring probes Σ_k weight_k·G(x·scale_k + shift_k), all K probes in one batch."""
        if self.probe_weight.shape[0] == 0:
            return self.generator(x)
        y = self.generator(probe_inputs(x, self.probe_scale, self.probe_shift))
        return mix_probes(y, self.probe_weight, x.shape[0])

    def score(self, x: torch.Tensor, with_error_map: bool = False) -> Scores:
        x_hat = self.reconstruct(x)
        # One discriminator pass over [x; x̂] (eval-mode BN is per-sample, so batching them together is exact).
        f_both = self.discriminator.features(torch.cat([x, x_hat], 0))
        f, f_hat = f_both.chunk(2, 0)
        score, pixel, feature = combine_scores(x, x_hat, f, f_hat, self.lam, self.margin)
        emap = error_map(x, x_hat) if with_error_map else None
        kmap = None
        if with_error_map and self.knn is not None:
            kmap = self.knn.raw_maps(first_level(self, x), self.arch.isize, x)
        return Scores(score, pixel, feature, x_hat, emap, kmap)


@torch.no_grad()
def score_in_batches(
    model: SkipGANomaly, images: torch.Tensor, batch_size: int = 256, with_error_map: bool = False,
    keep_reconstructions: bool = False,
) -> Scores:
    """Score a stack of images [N, C, H, W] in eval mode: `Scores` with every field on the CPU in fp32;
    reconstruction only when `keep_reconstructions` (N·C·H·W floats), error_map only when `with_error_map`.

    The model's mode is restored afterwards, so this is safe to call mid-training.
    """
    device = next(model.parameters()).device
    # K scoring probes make K generator inputs per image: keep the generator's batch, and memory, at batch_size
    batch_size = max(1, batch_size // max(1, model.probe_weight.shape[0]))
    was_training = model.training
    model.eval()
    parts: list[Scores] = []
    try:
        for i in range(0, len(images), batch_size):
            s = model.score(images[i : i + batch_size].to(device), with_error_map=with_error_map)
            if not keep_reconstructions:
                s.reconstruction = None
            parts.append(s.to("cpu", torch.float32))
    finally:
        model.train(was_training)
    if not parts:  # no images: empty fields, of the shapes they would have
        e = torch.empty(0)
        return Scores(e, e.clone(), e.clone(),
                      torch.empty(0, *images.shape[1:]) if keep_reconstructions else None,
                      torch.empty(0, *images.shape[2:]) if with_error_map else None,
                      torch.empty(0, *images.shape[2:]) if with_error_map and model.knn is not None else None)
    return Scores.cat(parts)
