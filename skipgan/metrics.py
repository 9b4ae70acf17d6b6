"""Anomaly-detection metrics on per-image scores (scikit-learn based, no hand-rolled curves).

Conventions used throughout the package:

* ``labels``: 1 = abnormal (the positive class), 0 = normal.
* Higher score = more anomalous.
* Decision rule: ``score > threshold`` => abnormal (strictly greater). Every threshold this module *returns*
  (``f1_max_threshold``, :func:`threshold_at_fpr`) is chosen so that applying this rule reproduces the reported
  operating point exactly. Note that scikit-learn's curve functions use ``score >= threshold`` internally;
  the conversion is done here so callers never have to care.

This module is deliberately low-level: it depends on numpy and scikit-learn only (torch tensors are accepted by
duck typing, torch is never imported), and must not import ``skipgan.model`` / ``train`` / ``cli`` / ``engine``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def sk_metrics():
    """scikit-learn's metrics module, imported on first use: it costs 1.3 s at start-up (scipy.stats with it), a
    third of every `skipgan` command's start, and scoring never needs it."""
    import sklearn.metrics

    return sklearn.metrics


__all__ = [
    "sk_metrics",
    "evaluate_scores",
    "pixel_metrics",
    "pro_curve",
    "pro_auc",
    "threshold_at_fpr",
    "score_statistics",
    "normalise",
]

# FPR targets reported by evaluate_scores: key -> target FPR.
_FPR_TARGETS = {"tpr_at_fpr_1pct": 0.01, "tpr_at_fpr_5pct": 0.05}


# ---------------------------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    """numpy array from an array-like or a torch tensor (duck-typed: torch is not imported here)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.float()  # bfloat16 / float16 have no (or lossy) numpy equivalents
        return t.numpy()
    return np.asarray(x)


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """1-D, non-empty, finite float64 array."""
    arr = _to_numpy(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-image scores, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s) (of {arr.size}); scores must be finite")
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise ValueError(f"{name} contains {n_inf} infinite value(s) (of {arr.size}); scores must be finite")
    return arr


def _check_labels(labels: Any, n: int) -> np.ndarray:
    """1-D int64 array of 0/1 with n entries."""
    arr = _to_numpy(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {tuple(arr.shape)}")
    if arr.size != n:
        raise ValueError(f"scores and labels differ in length: {n} scores vs {arr.size} labels")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"labels must be 0 (normal) or 1 (abnormal), got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"labels must be 0 (normal) or 1 (abnormal); found other values {examples}")
    return arr.astype(np.int64)


def _check_scores_labels(scores: Any, labels: Any, *, need_both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    s = _check_scores(scores)
    y = _check_labels(labels, s.size)
    if need_both_classes:
        n_abnormal = int(y.sum())
        n_normal = int(y.size - n_abnormal)
        if n_normal == 0 or n_abnormal == 0:
            present = "abnormal (1)" if n_normal == 0 else "normal (0)"
            raise ValueError(
                f"labels contain only {present} samples ({y.size} of them); AUROC and the other ranking metrics "
                "are undefined without both normal (0) and abnormal (1) samples"
            )
    return s, y


def _check_threshold(threshold: Any) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a real number, got {threshold!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {t}")
    return t


# ---------------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------------


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among the ROC operating points whose FPR is <= target.

    Interpolation choice: none (conservative step function). Only operating points that a single deterministic
    threshold actually achieves are considered; we do NOT linearly interpolate between ROC points (that would
    describe a randomised classifier and overstate what any fixed threshold delivers). The ROC must come from
    ``roc_curve(..., drop_intermediate=False)`` so that no achievable point has been dropped. The first ROC point
    (FPR 0, TPR 0, threshold +inf) guarantees the set is never empty.
    """
    ok = fpr <= target
    return float(tpr[ok].max())


def _strict_threshold_below(sklearn_threshold: float, distinct_scores: np.ndarray) -> float:
    """Convert a ``score >= t`` threshold (sklearn) into an equivalent ``score > t'`` threshold.

    t' is the midpoint between t and the next lower distinct score (so the rule is equivalent on these scores and
    leaves a margin on both sides for new data); if t is the lowest score, t' is the next float below t.
    """
    lower = distinct_scores[distinct_scores < sklearn_threshold]
    if lower.size == 0:
        return float(np.nextafter(sklearn_threshold, -np.inf))
    lo = float(lower.max())
    mid = lo + (sklearn_threshold - lo) / 2.0
    # guard against rounding collapsing the midpoint onto an endpoint (adjacent floats)
    if not (lo <= mid < sklearn_threshold):
        mid = lo
    return float(mid)


def evaluate_scores(scores: Any, labels: Any, threshold: float | None = None) -> dict:
    """Ranking and (optionally) fixed-threshold metrics for anomaly scores.

    Args:
        scores: per-image anomaly scores, shape [N] (numpy array, list or torch tensor); higher = more anomalous.
            Must be finite (NaN / inf raise ValueError).
        labels: shape [N], 1 = abnormal (positive), 0 = normal. Both classes must be present, else ValueError.
        threshold: optional decision threshold; rule ``score > threshold`` => abnormal.

    Returns a JSON-serialisable dict of plain Python floats / ints:

    * ``auroc`` -- ``roc_auc_score`` (ties count one half, so constant scores give 0.5).
    * ``average_precision`` -- ``average_precision_score`` (step-wise sum, no interpolation).
    * ``f1_max`` -- the maximum F1 over all thresholds of ``precision_recall_curve``.
    * ``f1_max_threshold`` -- a threshold that achieves ``f1_max`` under the package rule ``score > threshold``:
      the midpoint between the maximising score (sklearn's ``>=`` threshold) and the next lower distinct score.
      Feeding it back as ``threshold`` reproduces ``f1 == f1_max``.
    * ``tpr_at_fpr_1pct`` / ``tpr_at_fpr_5pct`` -- largest TPR over ROC operating points with FPR <= 1 % / 5 %
      (no interpolation between ROC points; see :func:`_tpr_at_fpr`). With fewer than 100 normal samples the
      1 % target can only be met at FPR 0.
    * ``n_normal``, ``n_abnormal``.

    With ``threshold`` also: ``threshold``, ``confusion_matrix`` = {tn, fp, fn, tp}, ``precision``, ``recall``,
    ``fpr``, ``f1`` at that threshold. Undefined ratios (no predicted positives -> precision) are reported as 0.0.
    """
    s, y = _check_scores_labels(scores, labels)
    n_abnormal = int(y.sum())
    n_normal = int(y.size - n_abnormal)

    out: dict[str, Any] = {
        "auroc": float(sk_metrics().roc_auc_score(y, s)),
        "average_precision": float(sk_metrics().average_precision_score(y, s)),
    }

    # F1-max from the PR curve. precision/recall have one more entry than thresholds (the final (1, 0) point has
    # no threshold), so only the first len(thresholds) entries are operating points.
    precision, recall, pr_thresholds = sk_metrics().precision_recall_curve(y, s)
    p = precision[: pr_thresholds.size]
    r = recall[: pr_thresholds.size]
    denom = p + r
    f1 = np.divide(2.0 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))  # first maximum = lowest threshold among ties
    out["f1_max"] = float(f1[best])
    out["f1_max_threshold"] = _strict_threshold_below(float(pr_thresholds[best]), np.unique(s))

    fpr, tpr, _ = sk_metrics().roc_curve(y, s, drop_intermediate=False)
    for key, target in _FPR_TARGETS.items():
        out[key] = _tpr_at_fpr(fpr, tpr, target)

    out["n_normal"] = n_normal
    out["n_abnormal"] = n_abnormal

    if threshold is not None:
        t = _check_threshold(threshold)
        pred = (s > t).astype(np.int64)
        tn, fp, fn, tp = (int(v) for v in sk_metrics().confusion_matrix(y, pred, labels=[0, 1]).ravel())
        out["threshold"] = t
        out["confusion_matrix"] = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        out["precision"] = float(sk_metrics().precision_score(y, pred, zero_division=0.0))
        out["recall"] = float(sk_metrics().recall_score(y, pred, zero_division=0.0))
        out["fpr"] = float(fp / (fp + tn))  # n_normal > 0 is guaranteed above
        out["f1"] = float(sk_metrics().f1_score(y, pred, zero_division=0.0))
    return out


def threshold_at_fpr(normal_scores: Any, target_fpr: float) -> float:
    """Threshold whose false-positive rate on the given normal (validation) scores is at most ``target_fpr``.

    With the rule ``score > threshold`` => abnormal, the returned value guarantees
    ``np.mean(normal_scores > threshold) <= target_fpr`` (exactly as that check evaluates in floating point), and
    it is the *tightest* such order statistic: it allows ``k`` scores strictly above, where ``k`` is the largest
    integer with ``k / n <= target_fpr`` (fewer end up above when there are ties at the threshold).

    Concretely it returns ``sorted(normal_scores)[n - 1 - k]``: the (1 - target_fpr) empirical quantile of the
    inverted-CDF kind (``np.quantile(x, 1 - target_fpr, method="inverted_cdf")``), but with ``k`` computed from
    ``target_fpr`` directly rather than from the rounded ``1 - target_fpr``, so float rounding can neither break
    the bound nor waste budget (e.g. 300 of 1000 allowed above at 0.3, not 299). ``method="higher"`` also
    satisfies the bound but can be one sample more conservative than necessary (0 false positives instead of the
    allowed 1 for 100 scores at 1 %).

    If ``n * target_fpr < 1`` the maximum score is returned (no validation score is above it).

    Raises ValueError if ``target_fpr`` is not strictly between 0 and 1 or the scores are empty / non-finite /
    not 1-D.
    """
    try:
        target = float(target_fpr)
    except (TypeError, ValueError):
        raise ValueError(f"target_fpr must be a number in (0, 1), got {target_fpr!r}") from None
    if not (0.0 < target < 1.0):  # also rejects NaN
        raise ValueError(f"target_fpr must be strictly between 0 and 1, got {target_fpr!r}")
    s = np.sort(_check_scores(normal_scores, "normal_scores"))
    n = s.size
    # k = number of scores allowed strictly above: the largest integer with k / n <= target (float-consistent)
    k = min(n - 1, math.floor(n * target))
    while k + 1 <= n - 1 and (k + 1) / n <= target:
        k += 1
    while k > 0 and k / n > target:
        k -= 1
    return float(s[n - 1 - k])


def score_statistics(scores: Any) -> dict:
    """Summary statistics of (typically normal validation) scores, used to normalise scores.

    Returns {mean, std, min, max, median, p99, n}: plain floats (``n`` an int). ``std`` is the population standard
    deviation (ddof=0); ``p99`` uses numpy's default linear interpolation.
    """
    s = _check_scores(scores)
    return {
        "mean": float(np.mean(s)),
        "std": float(np.std(s)),
        "min": float(np.min(s)),
        "max": float(np.max(s)),
        "median": float(np.median(s)),
        "p99": float(np.percentile(s, 99)),
        "n": int(s.size),
    }


def normalise(score: Any, stats: dict) -> Any:
    """``(score - stats["mean"]) / stats["std"]``.

    Type-preserving: a float gives a float, a numpy array an array, a torch tensor a tensor (lists become arrays).
    Raises ValueError if ``stats`` lacks mean/std or std is not a finite positive number (e.g. constant scores).
    """
    try:
        mean = float(stats["mean"])
        std = float(stats["std"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("stats must be a dict with numeric 'mean' and 'std' (see score_statistics)") from None
    if not math.isfinite(mean):
        raise ValueError(f"stats['mean'] must be finite, got {mean}")
    if not (math.isfinite(std) and std > 0.0):
        raise ValueError(f"stats['std'] must be a finite positive number to normalise, got {std}")
    if isinstance(score, (list, tuple)):
        score = np.asarray(score, dtype=np.float64)
    elif isinstance(score, (int, np.integer)) and not isinstance(score, bool):
        score = float(score)
    result = (score - mean) / std
    if isinstance(result, np.floating):
        return float(result)
    return result


# ---------------------------------------------------------------------------------------------------------------
# pixel-level metrics (anomaly maps against ground-truth masks)
# ---------------------------------------------------------------------------------------------------------------

PRO_FPR_LIMIT = 0.3  # the MVTec AD paper's integration limit


def _check_maps_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    m = _to_numpy(maps).astype(np.float64, copy=False)
    g = _to_numpy(masks)
    if m.ndim != 3 or g.shape != m.shape:
        raise ValueError(f"maps and masks must both be [N, H, W] of the same shape, got {tuple(m.shape)} and "
                         f"{tuple(g.shape)}")
    if not np.isfinite(m).all():
        raise ValueError(f"maps contain {int((~np.isfinite(m)).sum())} non-finite value(s); maps must be finite")
    g = g != 0
    if not g.any() or g.all():
        raise ValueError("masks must hold both normal (0) and abnormal (non-zero) pixels for pixel metrics")
    return m, g


def pro_curve(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro): the per-region-overlap curve of the MVTec AD paper (Bergmann et al., IJCV 2021), every threshold.

    Regions are the 8-connected components of each image's mask (never across images). At a threshold t, a pixel
    with map ≥ t is predicted abnormal; PRO(t) = the mean over ALL regions of |predicted ∩ region| / |region|;
    FPR(t) = predicted normal-mask pixels / all normal-mask pixels (over every image). One sort of all pixels
    and two cumulative sums: pixel i (in descending map order) adds 1 / (n_regions · |its region|) to PRO or
    1 / n_normal to FPR; only the last pixel of each run of equal values is a threshold. Both start at 0.
    """
    from scipy import ndimage

    m, g = _check_maps_masks(maps, masks)
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1  # 8-connected within an image, never across the image axis
    labels, n_regions = ndimage.label(g, structure=structure)
    sizes = np.bincount(labels.ravel())
    order = np.argsort(-m.ravel(), kind="stable")
    values, lab = m.ravel()[order], labels.ravel()[order]
    normal = lab == 0
    fpr = np.cumsum(normal) / normal.sum()
    weight = np.where(normal, 0.0, 1.0 / (n_regions * sizes[lab].astype(np.float64)))
    pro = np.cumsum(weight)
    last = np.r_[values[1:] != values[:-1], True]
    return np.r_[0.0, fpr[last]], np.r_[0.0, np.minimum(pro[last], 1.0)]


def pro_auc(maps: Any, masks: Any, fpr_limit: float = PRO_FPR_LIMIT) -> float:
    """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit (1.0 = perfect), trapezoids with
    the curve interpolated linearly at fpr_limit, as the MVTec AD evaluation code does."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    fpr, pro = pro_curve(maps, masks)
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    if x[-1] < fpr_limit:  # interpolate at the limit between the last point inside and the first outside
        j = int(np.argmax(~inside))
        x0, x1, y0, y1 = fpr[j - 1], fpr[j], pro[j - 1], pro[j]
        x, y = np.r_[x, fpr_limit], np.r_[y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)]
    return float(np.trapezoid(y, x) / fpr_limit)


def pixel_metrics(maps: Any, masks: Any) -> dict:
    """{pixel_auroc (scikit-learn over every pixel), pro (PRO integrated to FPR 0.3, normalised), pixels,
    regions}."""
    from scipy import ndimage

    m, g = _check_maps_masks(maps, masks)
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1
    return {
        "pixel_auroc": float(sk_metrics().roc_auc_score(g.ravel(), m.ravel())),
        "pro": pro_auc(m, g),
        "pro_fpr_limit": PRO_FPR_LIMIT,
        "pixels": int(g.size),
        "regions": int(ndimage.label(g, structure=structure)[1]),
    }
