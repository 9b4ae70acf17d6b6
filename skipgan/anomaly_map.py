"""Anomaly maps and the image-score aggregations built on them: their ONE definition.

    error map  e = per-pixel squared error |x − x̂|², mean over channels (skipgan.scoring.error_map; the engine
               writes it in the scoring pass: Screener.score(x, error_map=True))
    smoothed   s = Gaussian(e, sigma)            (smooth_maps: a separable Gaussian convolution per image, half-sample
                                                  reflection at the border; scipy.ndimage.gaussian_filter's numbers)
    anomaly map a = (s − μ) / σ                  μ, σ: mean and std of s over the validation normals' pixels
                                                  (interior, margin left out), stored in the model file

a is in "σ units of normal reconstruction noise" at the model's resolution (isize × isize); `upsample` brings it
to an image's own size for overlays and raw maps. Image scores ("aggregations"):

    mean  the paper's A(x) = λ·R(x) + (1−λ)·L(x) (skipgan.scoring.combine_scores), the default
    max   the largest value of a over the interior: one small defect is enough
    topk  the mean of the top `topk_percent` % of a's interior pixels (less sensitive to a single noisy pixel)
    knn   the largest value of the *knn* map over the interior: the same smoothing and normalisation (with its own
          μ, σ) applied to the patch-distance map of skipgan/model/patch_knn.py instead of the error map. Models
          trained since the knn map existed carry its memory; it sees defects smoother than their background.

Every aggregation reads one map (`MAP_OF`): the error map, or for 'knn' the knn map; `model_maps` gives the
anomaly maps an aggregation reads (overlays, pixel metrics).

μ and σ are global (one pair per model, not per pixel): a global affine map leaves pixel AUROC, PRO and every
ranking by max / topk unchanged, and per-pixel statistics from a few validation images would be noisy; they
only put the maps and the contour threshold on a readable scale.

Map settings in a model file (metadata "anomaly_map"): sigma, topk_percent, mean, std, threshold (the contour
threshold: `target_fpr` of the validation normals have some interior pixel above it). Files from before maps
existed get sigma 2, μ 0, σ 1 and no contour threshold; knn_mean, knn_std, knn_threshold are the same for the knn
map.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .scoring import Scores, interior

AGGREGATIONS = ("mean", "max", "topk", "knn")
PAPER_AGGREGATION = "mean"
MAP_OF = {"mean": "error", "max": "error", "topk": "error", "knn": "knn"}  # the map each aggregation reads


@dataclasses.dataclass(frozen=True)
class MapSettings:
    sigma: float = 2.0  # Gaussian smoothing, in pixels at isize (0: none)
    topk_percent: float = 1.0  # the topk aggregation's share of interior pixels
    mean: float = 0.0  # validation-normal statistics of the smoothed map
    std: float = 1.0
    threshold: float | None = None  # contour threshold on the normalised map
    margin: int = 0  # border pixels left out of statistics and aggregations (the model's score margin)
    knn_mean: float = 0.0  # the same three for the knn map (skipgan/model/patch_knn.py)
    knn_std: float = 1.0
    knn_threshold: float | None = None

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"map_sigma={self.sigma}: must be non-negative")
        if not 0 < self.topk_percent <= 100:
            raise ValueError(f"topk_percent={self.topk_percent}: must be in (0, 100]")
        if not (self.std > 0 and self.knn_std > 0):
            raise ValueError(f"anomaly map std={self.std}, knn_std={self.knn_std}: must be positive")

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

    def for_map(self, kind: str) -> "MapSettings":
        """The settings of map `kind` ('error' or 'knn'): the knn map's statistics in place of the error map's."""
        if kind == "error":
            return self
        if kind == "knn":
            return dataclasses.replace(self, mean=self.knn_mean, std=self.knn_std, threshold=self.knn_threshold)
        raise ValueError(f"map kind={kind!r}: expected 'error' or 'knn'")


# The smoothing's kernel: a sampled Gaussian cut at GAUSS_TRUNCATE standard deviations (scipy.ndimage's default, so
# maps and the calibrations stored in model files are unchanged), normalised to sum 1.
GAUSS_TRUNCATE = 4.0


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """float64 [2r + 1] with r = int(GAUSS_TRUNCATE·sigma + 0.5): the one smoothing kernel."""
    radius = int(GAUSS_TRUNCATE * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def reflect_index(n: int, radius: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Indices of a length-n axis padded by `radius` on each side by half-sample symmetry (d c b a | a b c d | d c
    b a): the border rule of the smoothing, valid for any radius (a kernel wider than the map reflects again).
    Scriptable (the knn map's local mean computes its indices in the graph)."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def smooth_with(maps: torch.Tensor, kernel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The smoothing itself, in the form graphs hold: fp32 maps [N, H, W], the kernel fp32 [2r + 1] and the border
    rule as index tensors (reflect_index(H, r), reflect_index(W, r)) precomputed. TorchScript- and torch.export-able:
    smooth_maps calls it, and so does every export (skipgan/export/maps.py), so all paths run one operation."""
    k = kernel.shape[0]
    x = maps[:, rows][:, :, cols]
    x = F.conv2d(x[:, None], kernel.view(1, 1, k, 1))  # along H
    x = F.conv2d(x, kernel.view(1, 1, 1, k))  # along W
    return x[:, 0]


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, H, W] float -> [N, H, W] float32: each map smoothed by a separable Gaussian (gaussian_kernel, border by
    reflect_index), one map never leaking into another (smooth_with). Equal to scipy.ndimage.gaussian_filter(
    mode="reflect", truncate=4) to float32 rounding (tests/test_anomaly_maps.py)."""
    x = maps.float()
    if sigma == 0:
        return x.clone()
    k = gaussian_kernel(sigma).to(device=x.device, dtype=torch.float32)
    r = (k.numel() - 1) // 2
    return smooth_with(x, k, reflect_index(x.shape[1], r, x.device), reflect_index(x.shape[2], r, x.device))


def topk_count(height: int, width: int, margin: int, percent: float) -> int:
    """How many interior pixels (a `margin`-pixel border of a height × width map left out) the topk aggregation
    averages: `percent` % of them, at least one."""
    pixels = (height - 2 * margin) * (width - 2 * margin)
    return max(1, int(round(pixels * percent / 100.0)))


def aggregate_maps(maps: torch.Tensor, margin: int, k: int) -> torch.Tensor:
    """Image scores [N] from anomaly maps [N, H, W], interior only (a `margin`-pixel border left out): the largest
    value (k = 0: 'max' and 'knn') or the mean of the k largest ('topk', k = topk_count). In the maps' dtype.
    Scriptable and exportable: aggregate calls it, and so does every export."""
    h, w = maps.shape[1], maps.shape[2]
    inner = maps[:, margin : h - margin, margin : w - margin].flatten(1)
    if k == 0:
        return inner.amax(1)
    return inner.topk(k, dim=1).values.mean(1)


def smooth(error_maps: Any, sigma: float) -> np.ndarray:
    """[N, H, W] -> float32 [N, H, W]: each map Gaussian-smoothed (smooth_maps; no smoothing across images)."""
    e = error_maps.detach().cpu() if isinstance(error_maps, torch.Tensor) else torch.from_numpy(
        np.asarray(error_maps, np.float32))
    if e.ndim != 3:
        raise ValueError(f"error maps must be [N, H, W], got shape {tuple(e.shape)}")
    return smooth_maps(e, sigma).numpy()


def anomaly_maps(error_maps: Any, settings: MapSettings) -> np.ndarray:
    """Error maps [N, H, W] -> anomaly maps [N, H, W] float32 (smoothed, normalised)."""
    return (smooth(error_maps, settings.sigma) - np.float32(settings.mean)) / np.float32(settings.std)


def aggregate(maps: np.ndarray, how: str, settings: MapSettings) -> np.ndarray:
    """Image scores [N] float64 from anomaly maps [N, H, W] (interior only) by 'max' or 'topk' ('knn': the max of
    the knn map, so pass the knn maps): aggregate_maps in float64."""
    m = torch.from_numpy(np.ascontiguousarray(maps)).double()
    if how in ("max", "knn"):
        return aggregate_maps(m, settings.margin, 0).numpy()
    if how == "topk":
        return aggregate_maps(m, settings.margin,
                              topk_count(m.shape[1], m.shape[2], settings.margin, settings.topk_percent)).numpy()
    raise ValueError(f"aggregation={how!r}: map aggregations are 'max', 'topk' and 'knn'")


def raw_kind_maps(s: Scores, kind: str) -> torch.Tensor | None:
    """The raw maps [N, H, W] of map `kind` ('error' or 'knn') in scorer results `s` (None where `s` has none)."""
    return s.knn_map if kind == "knn" else s.error_map


def kind_maps(s: Scores, kind: str, settings: MapSettings) -> np.ndarray:
    """The anomaly maps [N, H, W] of map `kind` ('error' or 'knn') from scorer results `s`."""
    raw = raw_kind_maps(s, kind)
    if raw is None:
        raise ValueError(f"the {kind} maps are missing: score with error_map=True"
                         + (" by a model that has a knn memory" if kind == "knn" else ""))
    return anomaly_maps(raw, settings.for_map(kind))


def all_maps(s: Scores, settings: MapSettings) -> dict[str, np.ndarray]:
    """{kind: anomaly maps} of every map that scorer results `s` hold: 'error', and 'knn' when the model has a knn
    memory. Each is smoothed once; image_scores and pixel metrics read them from here."""
    return {kind: kind_maps(s, kind, settings) for kind in ["error"] + (["knn"] if s.knn_map is not None else [])}


def model_maps(s: Scores, how: str, settings: MapSettings) -> np.ndarray:
    """The anomaly maps [N, H, W] that aggregation `how` reads (the error map's for 'mean', 'max', 'topk')."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation={how!r}: expected one of {', '.join(AGGREGATIONS)}")
    return kind_maps(s, MAP_OF[how], settings)


def image_scores(s: Scores, how: str, settings: MapSettings, maps: np.ndarray | None = None) -> np.ndarray:
    """Image scores [N] float64 of scorer results `s` by aggregation `how` ('mean' needs no map). `maps`: the
    anomaly maps `how` reads, when the caller has them already (overlays, pixel metrics), so they are not
    smoothed twice."""
    if how == PAPER_AGGREGATION:
        return s.score.double().numpy()
    return aggregate(model_maps(s, how, settings) if maps is None else maps, how, settings)


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
