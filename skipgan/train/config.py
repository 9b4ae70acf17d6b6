"""Training settings; stored verbatim in checkpoints and model files so a run can be resumed and audited."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..anomaly_map import AGGREGATIONS, MapSettings
from ..model.patch_knn import BORDERS, KnnSettings
from ..model.corruption import Corruption
from .aggregation_choice import AUTO
from .losses import LossWeights

AMP_CHOICES = ("none", "bf16", "fp16")
SELECT_CHOICES = ("last", "val")


def setting(default, help: str, **meta) -> Any:
    """A TrainConfig field with its flag's help text (and optionally `choices`, or `cli=False`: no flag)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training setting, declared once: `skipgan train` derives one flag per field (--batch-size from
    batch_size; bools are on/off switches; help and choices from the metadata), except the fields marked
    cli=False."""

    epochs: int = setting(15, "training epochs")
    batch_size: int = setting(64, "training images per step (at least 2: BatchNorm)")
    lr: float = setting(2e-4, "Adam learning rate of both networks")
    # Adam's betas: the official recipe's, no flags
    beta1: float = setting(0.5, "Adam β1", cli=False)
    beta2: float = setting(0.999, "Adam β2", cli=False)
    w_adv: float = setting(1.0, "adversarial loss weight of the generator")
    w_con: float = setting(50.0, "contextual (L1) loss weight; the paper uses 40")
    w_lat: float = setting(1.0, "latent (discriminator feature) loss weight")
    lam: float = setting(0.9, "λ in A = λ·pixel error + (1−λ)·feature error")
    val_fraction: float = setting(0.1, "fraction of the normal training images held out for validation "
                                       "(calibration, --select val)")
    target_fpr: float = setting(0.01, "false-positive rate of the threshold")
    seed: int = setting(0, "seed of the weights, the validation split and every random draw")
    amp: str = setting("none", "mixed precision (CUDA)", choices=AMP_CHOICES)
    channels_last: bool = setting(False, "train in the channels_last memory format")
    # Input corruption (see model/corruption.py). The defaults, denoising at σ = 2 with 8 probes, took the digits
    # benchmark from 0.75 (the paper's recipe: noise_std=0, score_draws=0) to 0.90+ mean AUROC (docs/accuracy.md); the
    # price is 8 generator passes per scored image.
    noise_std: float = setting(2.0, "std of the noise added to the generator's input (denoising); 0 with "
                                    "--score-draws 0 is the paper's recipe")
    score_draws: int = setting(8, "score by averaging this many fixed noise probes (needs --noise-std > 0; 0 = "
                                  "score the clean input; each probe is one generator pass)")
    mask_block: int = setting(0, "train and score by inpainting hidden BLOCK x BLOCK cells (0 = off)",
                              metavar="BLOCK")
    mask_groups: int = setting(4, "with --mask-block: hide 1/GROUPS of the cells; scoring makes GROUPS passes",
                               metavar="GROUPS")
    score_margin: int = setting(0, "border pixels left out of the pixel error (0 = the paper's score)")
    balance_lam: bool = setting(False, "rescale λ so pixel and feature errors count equally on validation "
                                       "normals (see calibrate.balanced_lambda)")
    select: str = setting("last", "last epoch, or the epoch with the lowest validation score (never test data)",
                          choices=SELECT_CHOICES)
    # Anomaly maps and the image score (skipgan/anomaly_map.py). Every aggregation is calibrated and stored; this
    # one is the model's score; 'auto': the model chooses it on synthetic defects in its validation normals
    # (train/aggregation_choice.py). The paper's mean stays the default: 'auto' picks knn, the best score, on every
    # textured benchmark family (A-D) but also on digits, where the mean wins (0.70 against 0.92; docs/accuracy.md,
    # "The automatic image score").
    aggregation: str = setting("mean", "image score: mean (the paper's λ·R + (1−λ)·L), max (largest value of the "
                                       "smoothed anomaly map), topk (mean of its top --topk-percent % pixels), "
                                       "knn (largest value of the patch-distance map; for local defects on "
                                       "textures) or auto (the one that best finds synthetic defects pasted into "
                                       "the validation normals; the choice is in metrics.json)",
                               choices=AGGREGATIONS + (AUTO,))
    # The knn map's settings: flags for the fields of KnnSettings (skipgan/model/patch_knn.py), its defaults and
    # its checks (knn_settings, and KnnSettings.check for the image size).
    knn_window: int = setting(KnnSettings.window, "the knn map's descriptor window, in cells of the "
                              "discriminator's first level (2 x 2 pixels each; odd)")
    knn_power: float = setting(KnnSettings.power, "exponent of the knn descriptor's energy before averaging (0.5 = "
                               "square root; 1 = the energy itself)")
    knn_memory: int = setting(KnnSettings.memory_size, "normal patch descriptors kept for the knn map (ndf floats "
                              "each in the model file; 0 = no knn map)")
    knn_border: str = setting(KnnSettings.border, "the knn texture descriptor near the border: valid (only whole "
                              "windows; border cells read the nearest) or cut (windows cut at the border, noisier: "
                              "the default before 2026-11-29)", choices=BORDERS)
    knn_intensity_memory: int = setting(KnnSettings.intensity_memory, "normal 4 x 4 pixel patches kept for the knn "
                                        "map's intensity part (16·nc floats each; 0 = texture part only)")
    knn_coreset: float = setting(KnnSettings.coreset, "share of each knn memory drawn (--knn-memory, "
                                 "--knn-intensity-memory) that a greedy coreset keeps: the rows covering the draw "
                                 "best, a faster search (1 = the whole draw)")
    knn_intensity_whiten: bool = setting(KnnSettings.intensity_whiten, "compare the knn map's pixel patches in "
                                         "whitened coordinates (a Mahalanobis distance; --no-knn-intensity-whiten: "
                                         "raw patches, the default before 2026-12-03)")
    knn_relative_sigma: float = setting(KnnSettings.relative_sigma, "take the knn map's pixel patches from the "
                                        "image less its local mean (Gaussian of this σ in pixels; e.g. 4 for stains "
                                        "on colour data whose tint varies; 0 = the patches themselves)")
    map_sigma: float = setting(2.0, "Gaussian smoothing of the anomaly map, in pixels at isize (0 = none)")
    topk_percent: float = setting(1.0, "share of the map's pixels averaged by --aggregation topk")
    sync_bn: bool = setting(False, "under torchrun: SyncBatchNorm (batch statistics over all processes; CUDA only) "
                                   "instead of per-process batch statistics")

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 2, "batch_size", "at least 2 (BatchNorm needs more than one image)"),
            (self.lr > 0, "lr", "positive"),
            (0.0 <= self.lam <= 1.0, "lam", "in [0, 1]"),
            (0.0 < self.val_fraction < 1.0, "val_fraction", "in (0, 1)"),
            (0.0 < self.target_fpr < 1.0, "target_fpr", "in (0, 1)"),
            (self.noise_std >= 0.0, "noise_std", "non-negative"),
            (self.amp in AMP_CHOICES, "amp", f"one of {', '.join(AMP_CHOICES)}"),
            (self.select in SELECT_CHOICES, "select", f"one of {', '.join(SELECT_CHOICES)}"),
            (self.aggregation in AGGREGATIONS + (AUTO,), "aggregation", f"one of {', '.join(AGGREGATIONS + (AUTO,))}"),
            (self.knn_memory >= 0, "knn_memory", "non-negative (0 = no knn map)"),
            (self.aggregation != "knn" or self.knn_memory > 0, "aggregation",
             "'mean', 'max' or 'topk' with --knn-memory 0 (the knn aggregation needs the memory)"),
        ]
        for ok, name, want in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be {want}")
        self.knn_settings  # noqa: B018 (KnnSettings checks the knn fields: here, not at the end of training)

    @property
    def corruption(self) -> Corruption:
        return Corruption(self.noise_std, self.mask_block, self.mask_groups, self.score_draws, self.seed)

    @property
    def map_settings(self) -> MapSettings:
        """The map settings before calibration (raises ValueError 'map_sigma=...: ...' for bad values)."""
        return MapSettings(sigma=self.map_sigma, topk_percent=self.topk_percent, margin=self.score_margin)

    @property
    def knn_settings(self) -> KnnSettings | None:
        """The knn map's settings, None with --knn-memory 0 (raises ValueError 'knn_window=...: ...')."""
        settings = KnnSettings(window=self.knn_window, memory_size=max(self.knn_memory, 1), power=self.knn_power,
                               border=self.knn_border, intensity_memory=self.knn_intensity_memory,
                               coreset=self.knn_coreset, intensity_whiten=self.knn_intensity_whiten,
                               relative_sigma=self.knn_relative_sigma)
        return settings if self.knn_memory else None  # checked either way

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.w_adv, self.w_con, self.w_lat)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
