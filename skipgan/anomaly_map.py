"""Anomaly maps and the image-score aggregations built on them: their ONE definition.

    error map  e = per-pixel squared error |x − x̂|², mean over channels (skipgan.scoring.error_map; the engine
               writes it in the scoring pass: Screener.score(x, error_map=True))
    smoothed   s = Gaussian(e, sigma)            (scipy.ndimage.gaussian_filter per image, reflect at the border)
    anomaly map a = (s − μ) / σ                  μ, σ: mean and std of s over the validation normals' pixels
                                                  (interior, margin left out), stored in the model file

a is in "σ units of normal reconstruction noise" at the model's resolution (isize × isize); `upsample` brings it
to an image's own size for overlays and raw maps. Image scores ("aggregations"):

    mean  the paper's A(x) = λ·R(x) + (1−λ)·L(x) (skipgan.scoring.combine_scores), the default
    max   the largest value of a over the interior: one small defect is enough
    topk  the mean of the top `topk_percent` % of a's interior pixels (less sensitive to a single noisy pixel)

μ and σ are global (one pair per model, not per pixel): a global affine map leaves pixel AUROC, PRO and every
ranking by max / topk unchanged, and per-pixel statistics from a few validation images would be noisy; they
only put the maps and the contour threshold on a readable scale.

Map settings in a model file (metadata "anomaly_map"): sigma, topk_percent, mean, std, threshold (the contour
threshold: `target_fpr` of the validation normals have some interior pixel above it). Files from before maps
existed get sigma 2, μ 0, σ 1 and no contour threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .scoring import Scores, interior

AGGREGATIONS = ("mean", "max", "topk")
PAPER_AGGREGATION = "mean"


@dataclasses.dataclass(frozen=True)
class MapSettings:
    sigma: float = 2.0  # Gaussian smoothing, in pixels at isize (0: none)
    topk_percent: float = 1.0  # the topk aggregation's share of interior pixels
    mean: float = 0.0  # validation-normal statistics of the smoothed map
    std: float = 1.0
    threshold: float | None = None  # contour threshold on the normalised map
    margin: int = 0  # border pixels left out of statistics and aggregations (the model's score margin)

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"map_sigma={self.sigma}: must be non-negative")
        if not 0 < self.topk_percent <= 100:
            raise ValueError(f"topk_percent={self.topk_percent}: must be in (0, 100]")
        if not self.std > 0:
            raise ValueError(f"anomaly map std={self.std}: must be positive")

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "MapSettings":
        """From a model file's metadata (defaults for files without map settings)."""
        d = dict(meta.get("anomaly_map") or {})
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}, margin=meta.get("score_margin", 0))

    def to_meta(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("margin")  # the model's score_margin, stored once
        return d


def smooth(error_maps: Any, sigma: float) -> np.ndarray:
    """[N, H, W] -> float32 [N, H, W]: each map Gaussian-smoothed (no smoothing across images)."""
    from scipy.ndimage import gaussian_filter

    e = error_maps.detach().cpu().float().numpy() if isinstance(error_maps, torch.Tensor) else np.asarray(error_maps,
                                                                                                        np.float32)
    if e.ndim != 3:
        raise ValueError(f"error maps must be [N, H, W], got shape {tuple(e.shape)}")
    if sigma == 0:
        return e.astype(np.float32, copy=True)
    return gaussian_filter(e.astype(np.float32), sigma=(0.0, sigma, sigma), mode="reflect").astype(np.float32)


def anomaly_maps(error_maps: Any, settings: MapSettings) -> np.ndarray:
    """Error maps [N, H, W] -> anomaly maps [N, H, W] float32 (smoothed, normalised)."""
    return (smooth(error_maps, settings.sigma) - np.float32(settings.mean)) / np.float32(settings.std)


def aggregate(maps: np.ndarray, how: str, settings: MapSettings) -> np.ndarray:
    """Image scores [N] float64 from anomaly maps [N, H, W] (interior only) by 'max' or 'topk'."""
    inner = interior(torch.from_numpy(np.ascontiguousarray(maps)), settings.margin).flatten(1)
    if how == "max":
        return inner.amax(1).double().numpy()
    if how == "topk":
        k = max(1, int(round(inner.shape[1] * settings.topk_percent / 100.0)))
        return inner.topk(k, dim=1).values.double().mean(1).numpy()
    raise ValueError(f"aggregation={how!r}: map aggregations are 'max' and 'topk'")


def image_scores(s: Scores, how: str, settings: MapSettings) -> np.ndarray:
    """Image scores [N] float64 of scorer results `s` by aggregation `how` ('mean' needs no error map)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation={how!r}: expected one of {', '.join(AGGREGATIONS)}")
    if how == PAPER_AGGREGATION:
        return s.score.double().numpy()
    if s.error_map is None:
        raise ValueError(f"aggregation={how!r} needs the error maps: score with error_map=True")
    return aggregate(anomaly_maps(s.error_map, settings), how, settings)


def map_statistics(error_maps: Any, sigma: float, margin: int) -> tuple[float, float]:
    """(μ, σ) of the smoothed maps' interior pixels (validation normals)."""
    inner = interior(torch.from_numpy(smooth(error_maps, sigma)), margin).double()
    std = float(inner.std(unbiased=False))
    return float(inner.mean()), std if std > 0 else 1.0


def upsample(amap: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """One map [h, w] -> float32 [height, width] (bilinear; the image's own size, for overlays and raw maps)."""
    t = torch.as_tensor(amap, dtype=torch.float32)[None, None]
    if tuple(t.shape[-2:]) == (height, width):
        return t[0, 0].numpy().copy()
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
