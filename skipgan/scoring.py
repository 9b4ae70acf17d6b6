"""The anomaly score A(x) = λ·R(x) + (1−λ)·L(x): its ONE definition, the result type every scorer returns, and
the verdict and normalised score a calibration gives.

R = mean squared pixel error over the interior (a `margin`-pixel border left out), L = mean squared
discriminator-feature error, both per image and in fp32. The eager model, the fused engine, the trainer's
validation scores and the native op's tests all use `combine_scores` (`weigh` for R and L already computed); the
native `skipgan::anomaly_score` op computes the same in one pass. `verdicts` is written to be
`torch.jit.script`-able and `torch.export`-able: the exported graphs trace it.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Scores:
    """What every scorer returns (the model, `score_in_batches`, the engine).

    score / pixel / feature: [B] fp32. reconstruction: [B, C, H, W] x̂ (stitched from the scoring probes, if
    the model has any), when kept. error_map: [B, H, W] fp32 per-pixel squared error (mean over channels), when
    asked for. knn_map: [B, H, W] fp32 raw patch-distance map (skipgan/model/patch_knn.py), with the error map
    when the model has a knn memory.
    """

    score: torch.Tensor
    pixel: torch.Tensor
    feature: torch.Tensor
    reconstruction: torch.Tensor | None = None
    error_map: torch.Tensor | None = None
    knn_map: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.score.shape[0]

    @classmethod
    def cat(cls, parts: "list[Scores]") -> "Scores":
        """Concatenate batch results (fields absent in any part stay absent)."""
        def join(name):
            vals = [getattr(p, name) for p in parts]
            return torch.cat(vals) if vals and all(v is not None for v in vals) else None
        if not parts:
            e = torch.empty(0)
            return cls(e, e.clone(), e.clone())
        if len(parts) == 1:  # nothing to join (a copy of each field would cost a one-image call ~5 %)
            return parts[0]
        return cls(*(join(f.name) for f in dataclasses.fields(cls)))

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Scores":
        """Every present field moved to `device` and/or cast to `dtype` (as Tensor.to)."""
        return dataclasses.replace(self, **{f.name: (v.to(device, dtype) if (v := getattr(self, f.name)) is not None
                                                     else None) for f in dataclasses.fields(self)})


def interior(t: torch.Tensor, margin: int) -> torch.Tensor:
    """The image without a `margin`-pixel border (a view)."""
    return t[..., margin : t.shape[-2] - margin, margin : t.shape[-1] - margin] if margin else t


def weigh(pixel: torch.Tensor, feature: torch.Tensor, lam: float) -> torch.Tensor:
    """A = λ·R + (1−λ)·L from R (`pixel`) and L (`feature`)."""
    return lam * pixel + (1.0 - lam) * feature


def combine_scores(x, x_hat, f, f_hat, lam: float, margin: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(score, R, L), each [B] fp32. R is taken over the interior: `margin` border pixels are left out."""
    x, x_hat = interior(x, margin), interior(x_hat, margin)
    pixel = (x.float() - x_hat.float()).pow(2).flatten(1).mean(1)
    feature = (f.float() - f_hat.float()).pow(2).flatten(1).mean(1)
    return weigh(pixel, feature, lam), pixel, feature


def error_map(x, x_hat) -> torch.Tensor:
    """[B, H, W] fp32 per-pixel squared error, averaged over channels (over the whole image, margin or not)."""
    return (x.float() - x_hat.float()).pow(2).mean(1)


def calibration_values(calibration: dict) -> tuple[float, float, float]:
    """(threshold, μ, σ) of a calibration as model files store it: {"threshold", "val_stats": {"mean", "std"}}."""
    stats = calibration["val_stats"]
    return float(calibration["threshold"]), float(stats["mean"]), float(stats["std"])


def verdicts(scores: torch.Tensor, threshold: float, val_mean: float, val_std: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised scores, verdicts: True = abnormal) of image scores [B] by a calibration (calibration_values):
    (score − μ) / σ of the validation normals' scores (skipgan.metrics.normalise), and score > threshold (strictly:
    skipgan.metrics' decision rule). The ONE definition of both: `skipgan score` calls it on its image scores, every
    export computes it in its graph (skipgan.export.pipeline), and the C++ scanner prints the graph's outputs."""
    return (scores - val_mean) / val_std, scores > threshold
