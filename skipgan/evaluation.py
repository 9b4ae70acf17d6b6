"""Evaluate a trained model on a labelled test set: metrics.json, curves, histogram and example grid."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .anomaly_map import (AGGREGATIONS, MAP_OF, PAPER_AGGREGATION, MapSettings, all_maps, image_scores,
                          raw_kind_maps)
from .metrics import pixel_metrics, sk_metrics
from .model import SkipGANomaly, score_in_batches
from .report import EXAMPLES_FILE, plot_examples, write_report
from .scoring import Scores


def evaluate_model(
    model: SkipGANomaly,
    threshold: float,
    test: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    k: int = 8,
    batch_size: int = 256,
    scorer: Callable[..., Scores] | None = None,
    masks: torch.Tensor | None = None,
    map_settings: MapSettings | None = None,
    aggregation: str = PAPER_AGGREGATION,
) -> dict[str, Any]:
    """Score `test` in eval mode and write the report into `out_dir`; returns the metrics.

    scorer(x, error_map=False, reconstruction=False) -> Scores: who scores (the fused engine's
    `Screener.score`, or by default the eager model through `score_in_batches`).
    masks: ground truth [N, isize, isize] (1 = abnormal pixel) -> pixel AUROC and PRO of the anomaly maps, and
    mask contours in the example grid. aggregation: the image score ('mean': the paper's; 'max', 'topk': of the
    anomaly map, skipgan/anomaly_map.py); `threshold` must be that score's. With masks or a map aggregation the
    error maps of the whole test set are kept (N·isize² floats); every aggregation's AUROC is then reported.
    """
    if scorer is None:
        def scorer(x, error_map=False, reconstruction=False):
            return score_in_batches(model, x, batch_size, with_error_map=error_map, keep_reconstructions=reconstruction)
    settings = map_settings or MapSettings(margin=model.margin)
    want_maps = masks is not None or aggregation != PAPER_AGGREGATION
    s = scorer(test, error_map=True) if want_maps else scorer(test)
    # every map once (smoothing the whole test set is the costly part); scores and metrics read them
    maps = all_maps(s, settings) if want_maps else {}
    scores = image_scores(s, aggregation, settings, maps.get(MAP_OF[aggregation]))
    labels_np = np.asarray(labels)
    extra = dict(extra or {})
    # The two score components on their own: tells whether λ is well chosen for this data.
    extra["auroc_pixel"] = float(sk_metrics().roc_auc_score(labels_np, s.pixel.numpy()))
    extra["auroc_feature"] = float(sk_metrics().roc_auc_score(labels_np, s.feature.numpy()))
    if want_maps:
        extra["auroc_by_aggregation"] = {
            how: float(sk_metrics().roc_auc_score(labels_np, image_scores(s, how, settings, maps.get(MAP_OF[how]))))
            for how in AGGREGATIONS if MAP_OF[how] in maps}
        extra["anomaly_map"] = settings.to_meta()
        if masks is not None:
            # the model's own map (its aggregation's) at the top level; every map's under pixel_by_map
            by_map = {kind: pixel_metrics(m, masks.numpy()) for kind, m in maps.items()}
            extra.update(by_map[MAP_OF[aggregation]])
            extra["pixel_by_map"] = by_map
    del maps
    metrics = write_report(out_dir, scores, labels_np, threshold, extra=extra)
    # Reconstructions are recomputed for the shown images only: keeping them for the whole test set would cost
    # N·C·H·W floats (gigabytes at isize 256).
    order = np.argsort(-scores, kind="stable")
    shown = np.unique(np.r_[order[:k], order[-k:]])
    ex = scorer(test[shown], error_map=True, reconstruction=True)
    shown_map = raw_kind_maps(ex, MAP_OF[aggregation])  # the map the score reads
    plot_examples(Path(out_dir) / EXAMPLES_FILE, test[shown], ex.reconstruction, shown_map, scores[shown],
                  labels_np[shown], [names[i] for i in shown] if names is not None else None, k=k,
                  masks=masks[shown] if masks is not None else None)
    return metrics
