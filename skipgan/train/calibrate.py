"""Calibration on the normal validation split only: the decision threshold and (optionally) the balance of λ."""

from __future__ import annotations

from typing import Any

import dataclasses

import numpy as np
import torch

from ..anomaly_map import (AGGREGATIONS, MAP_OF, PAPER_AGGREGATION, MapSettings, aggregate, anomaly_maps,
                           map_statistics)
from ..metrics import score_statistics, threshold_at_fpr


def calibrate(val_scores: torch.Tensor, target_fpr: float) -> dict[str, Any]:
    """Threshold at the target false-positive rate on normal validation scores, plus their statistics."""
    scores = val_scores.double().numpy()
    return {
        "threshold": float(threshold_at_fpr(scores, target_fpr)),
        "target_fpr": target_fpr,
        "val_stats": score_statistics(scores),
    }


def balanced_lambda(lam: float, pixel: torch.Tensor, feature: torch.Tensor) -> float:
    """λ' such that λ'·R + (1−λ')·L ∝ λ·R/σ_R + (1−λ)·L/σ_L, with σ the std over normal validation images.

    The raw terms live on unrelated scales (the feature error grows as the discriminator sharpens), so a fixed
    λ = 0.9 can let either term swamp the other; dividing each by its spread on normal data makes λ weigh
    comparable quantities. The result is still a plain λ, so every scorer (Python, native op, exports) is unchanged.
    """
    s_pix, s_feat = float(pixel.double().std()), float(feature.double().std())
    if not (s_pix > 0 and s_feat > 0) or lam in (0.0, 1.0):
        return lam
    a, b = lam / s_pix, (1.0 - lam) / s_feat
    return a / (a + b)


def calibrate_maps(val_error_maps: torch.Tensor, val_scores: torch.Tensor, settings: MapSettings,
                   target_fpr: float, val_knn_maps: torch.Tensor | None = None
                   ) -> tuple[MapSettings, dict[str, dict[str, Any]]]:
    """Map statistics and every aggregation's calibration, from the normal validation images alone.

    Returns (settings with μ, σ and the contour thresholds filled in, {aggregation: calibrate(...)}); the 'mean'
    entry is the paper score's calibration (`val_scores`). A map's contour threshold is its max aggregation's
    threshold: `target_fpr` of the validation normals have some interior pixel above it. Without knn maps (a model
    without a knn memory) there is no 'knn' entry.
    """
    def of(maps, how, st):
        return calibrate(torch.from_numpy(np.ascontiguousarray(aggregate(maps, how, st))), target_fpr)

    mean, std = map_statistics(val_error_maps, settings.sigma, settings.margin)
    settings = dataclasses.replace(settings, mean=mean, std=std)
    maps = anomaly_maps(val_error_maps, settings)
    cals = {PAPER_AGGREGATION: calibrate(val_scores, target_fpr)}
    for how in AGGREGATIONS:
        if MAP_OF[how] == "error" and how != PAPER_AGGREGATION:
            cals[how] = of(maps, how, settings)
    settings = dataclasses.replace(settings, threshold=cals["max"]["threshold"])
    if val_knn_maps is not None:
        k_mean, k_std = map_statistics(val_knn_maps, settings.sigma, settings.margin)
        settings = dataclasses.replace(settings, knn_mean=k_mean, knn_std=k_std)
        cals["knn"] = of(anomaly_maps(val_knn_maps, settings.for_map("knn")), "knn", settings)
        settings = dataclasses.replace(settings, knn_threshold=cals["knn"]["threshold"])
    return settings, cals
