"""skipgan.metrics against hand-checkable cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from skipgan.metrics import evaluate_scores, normalise, score_statistics, threshold_at_fpr

# --------------------------------------------------------------------------------------------------------------
# AUROC / AP
# --------------------------------------------------------------------------------------------------------------


def test_perfect_separation():
    m = evaluate_scores([0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 0, 1, 1])
    assert m["auroc"] == 1.0
    assert m["average_precision"] == 1.0
    assert m["f1_max"] == 1.0
    assert m["tpr_at_fpr_1pct"] == 1.0
    assert m["tpr_at_fpr_5pct"] == 1.0
    assert (m["n_normal"], m["n_abnormal"]) == (3, 2)


def test_reversed_ranking_gives_zero_auroc():
    m = evaluate_scores([0.9, 0.8, 0.7, 0.2, 0.1], [0, 0, 0, 1, 1])
    assert m["auroc"] == 0.0
    assert m["tpr_at_fpr_1pct"] == 0.0  # any threshold catching an abnormal flags all normals first


def test_all_ties_give_half():
    m = evaluate_scores(np.full(6, 3.0), [0, 1, 0, 1, 0, 1])
    assert m["auroc"] == 0.5
    assert m["average_precision"] == 0.5  # single operating point: precision = prevalence, recall 1


def test_auroc_hand_computed_pairs():
    # pairs (abnormal, normal): 0.35 vs 0.1 win, 0.35 vs 0.4 lose, 0.8 vs both win -> 3/4
    m = evaluate_scores([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert m["auroc"] == pytest.approx(0.75)
    # AP = sum (R_n - R_{n-1}) P_n: thresholds 0.8 (R .5, P 1), 0.4 (R .5), 0.35 (R 1, P 2/3) -> .5 + .5*2/3
    assert m["average_precision"] == pytest.approx(0.5 + 0.5 * 2 / 3)


# --------------------------------------------------------------------------------------------------------------
# F1-max
# --------------------------------------------------------------------------------------------------------------


def test_f1_max_crafted():
    # thresholds (score >= t):  0.8 -> P 1,   R 1/2, F1 2/3
    #                           0.4 -> P 1/2, R 1/2, F1 1/2
    #                           0.35-> P 2/3, R 1,   F1 4/5   <- max
    #                           0.1 -> P 1/2, R 1,   F1 2/3
    scores = [0.1, 0.4, 0.35, 0.8]
    labels = [0, 0, 1, 1]
    m = evaluate_scores(scores, labels)
    assert m["f1_max"] == pytest.approx(0.8)
    # under the strict rule score > t, the threshold is the midpoint between 0.35 and the next lower score 0.1
    assert m["f1_max_threshold"] == pytest.approx(0.225)
    # feeding the threshold back reproduces the same operating point
    at = evaluate_scores(scores, labels, threshold=m["f1_max_threshold"])
    assert at["f1"] == pytest.approx(m["f1_max"])
    assert at["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 0, "tp": 2}


def test_f1_max_threshold_consistent_with_strict_rule_random():
    rng = np.random.default_rng(0)
    for trial in range(10):
        n = int(rng.integers(5, 60))
        labels = rng.integers(0, 2, n)
        labels[0], labels[1] = 0, 1
        scores = np.round(rng.normal(size=n) + labels, 1)  # rounding creates ties
        m = evaluate_scores(scores, labels)
        at = evaluate_scores(scores, labels, threshold=m["f1_max_threshold"])
        assert at["f1"] == pytest.approx(m["f1_max"]), trial


def test_f1_max_when_best_is_flagging_everything():
    # lowest score is abnormal: best F1 flags everything; threshold must sit below the minimum
    scores = [0.0, 1.0, 2.0]
    labels = [1, 1, 0]
    m = evaluate_scores(scores, labels)
    assert m["f1_max"] == pytest.approx(0.8)  # P 2/3, R 1
    assert m["f1_max_threshold"] < 0.0
    assert evaluate_scores(scores, labels, threshold=m["f1_max_threshold"])["f1"] == pytest.approx(0.8)


# --------------------------------------------------------------------------------------------------------------
# TPR at fixed FPR
# --------------------------------------------------------------------------------------------------------------


def test_tpr_at_fpr_crafted():
    # 100 normals 0..99, 5 abnormals.
    # FPR <= 1 %: at most 1 normal (99) flagged -> threshold 98.5 catches 150, 120, 98.5 -> TPR 3/5
    # FPR <= 5 %: at most 5 normals (95..99)    -> threshold 95 also catches 97.5        -> TPR 4/5
    normals = np.arange(100, dtype=float)
    abnormals = np.array([150.0, 120.0, 98.5, 97.5, 50.0])
    scores = np.concatenate([normals, abnormals])
    labels = np.r_[np.zeros(100, int), np.ones(5, int)]
    m = evaluate_scores(scores, labels)
    assert m["tpr_at_fpr_1pct"] == pytest.approx(0.6)
    assert m["tpr_at_fpr_5pct"] == pytest.approx(0.8)


def test_tpr_at_fpr_is_not_interpolated():
    # 4 normals: FPR steps of 25 %, so FPR <= 1 % means FPR = 0: only abnormal 5.0 is above every normal.
    # Linear interpolation towards (0.25, 2/3) would give ~0.347; the step-wise answer is exactly 1/3.
    m = evaluate_scores([0, 1, 2, 3, 5.0, 2.5, 1.5], [0, 0, 0, 0, 1, 1, 1])
    assert m["tpr_at_fpr_1pct"] == pytest.approx(1 / 3)
    assert m["tpr_at_fpr_5pct"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------------------------
# fixed threshold
# --------------------------------------------------------------------------------------------------------------


def test_confusion_matrix_counts_and_rates():
    scores = [0.1, 0.2, 0.5, 0.7, 0.4, 0.6, 0.9, 0.5]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    m = evaluate_scores(scores, labels, threshold=0.5)
    # score > 0.5 => abnormal; the two 0.5s (one normal, one abnormal) are predicted normal
    assert m["threshold"] == 0.5
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 2, "tp": 2}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["fpr"] == pytest.approx(0.25)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_threshold_above_everything_gives_zero_precision_not_nan():
    m = evaluate_scores([0.1, 0.9], [0, 1], threshold=10.0)
    assert m["confusion_matrix"] == {"tn": 1, "fp": 0, "fn": 1, "tp": 0}
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["fpr"] == 0.0


def test_no_threshold_keys_without_threshold():
    m = evaluate_scores([0.1, 0.9], [0, 1])
    for key in ("threshold", "confusion_matrix", "precision", "recall", "fpr", "f1"):
        assert key not in m


def test_output_is_plain_json_types_and_torch_inputs():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8], dtype=torch.bfloat16)
    labels = torch.tensor([0, 0, 1, 1])
    m = evaluate_scores(scores, labels, threshold=np.float32(0.3))
    json.dumps(m, allow_nan=False)

    def check(v):
        if isinstance(v, dict):
            for x in v.values():
                check(x)
        else:
            assert type(v) in (float, int), (v, type(v))

    check(m)
    assert m["auroc"] == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_one_class_raises(labels):
    with pytest.raises(ValueError, match="only .* AUROC"):
        evaluate_scores([0.1, 0.2, 0.3], labels)


def test_nan_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores([0.1, float("nan"), 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="infinite"):
        evaluate_scores([0.1, float("inf")], [0, 1])
    with pytest.raises(ValueError, match="length"):
        evaluate_scores([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="0 .normal. or 1"):
        evaluate_scores([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="1-D"):
        evaluate_scores(np.zeros((3, 1)), [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        evaluate_scores([], [])
    with pytest.raises(ValueError, match="threshold"):
        evaluate_scores([0.1, 0.2], [0, 1], threshold=float("nan"))


# --------------------------------------------------------------------------------------------------------------
# threshold_at_fpr
# --------------------------------------------------------------------------------------------------------------


def test_threshold_at_fpr_100_scores():
    normals = np.arange(100, dtype=float)
    t = threshold_at_fpr(normals, 0.01)
    assert int((normals > t).sum()) <= 1
    assert t == 98.0  # tightest: exactly one of 100 scores (1 %) is above
    assert int((normals > threshold_at_fpr(normals, 0.05)).sum()) == 5
    # fewer samples than 1/target: no normal may be above -> the maximum
    assert threshold_at_fpr(np.arange(50.0), 0.01) == 49.0


def test_threshold_at_fpr_bound_holds_and_is_tight_randomly_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        x = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # heavy ties at low precision
        target = float(rng.uniform(0.001, 0.999))
        t = threshold_at_fpr(x, target)
        assert t in x
        assert np.mean(x > t) <= target
        lower = x[x < t]
        if lower.size:  # tight: the next lower candidate threshold would break the bound
            assert np.mean(x > lower.max()) > target


def test_threshold_at_fpr_decimal_targets_use_full_budget():
    x = np.arange(1000, dtype=float)
    for target, allowed in ((0.01, 10), (0.05, 50), (0.1, 100), (0.3, 300), (0.7, 700)):
        t = threshold_at_fpr(x, target)
        assert int((x > t).sum()) == allowed, target
    # same as the inverted-CDF empirical quantile (numpy) on continuous data
    rng = np.random.default_rng(2)
    y = rng.normal(size=1000)
    for target in (0.01, 0.05, 0.1, 0.3):
        assert threshold_at_fpr(y, target) == np.quantile(y, 1 - target, method="inverted_cdf")


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_threshold_at_fpr_rejects_bad_target(bad):
    with pytest.raises(ValueError, match="target_fpr"):
        threshold_at_fpr([1.0, 2.0, 3.0], bad)


def test_threshold_at_fpr_rejects_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        threshold_at_fpr([1.0, float("nan")], 0.1)


# --------------------------------------------------------------------------------------------------------------
# statistics / normalisation
# --------------------------------------------------------------------------------------------------------------


def test_score_statistics_and_normalise():
    stats = score_statistics(np.arange(101, dtype=float))  # 0..100
    assert stats == {
        "mean": 50.0,
        "std": pytest.approx(math.sqrt(850.0)),  # population variance of 0..100 = (101^2 - 1) / 12
        "min": 0.0,
        "max": 100.0,
        "median": 50.0,
        "p99": pytest.approx(99.0),
        "n": 101,
    }
    assert all(type(v) is float for k, v in stats.items() if k != "n") and type(stats["n"]) is int
    json.dumps(stats)

    z = normalise(50.0 + stats["std"], stats)
    assert isinstance(z, float) and z == pytest.approx(1.0)
    arr = normalise(np.array([50.0, 50.0 - 2 * stats["std"]]), stats)
    assert isinstance(arr, np.ndarray) and arr == pytest.approx([0.0, -2.0])
    ten = normalise(torch.tensor([50.0]), stats)
    assert isinstance(ten, torch.Tensor) and ten.item() == pytest.approx(0.0)
    assert normalise([50.0], stats) == pytest.approx([0.0])


def test_normalise_rejects_zero_std():
    stats = score_statistics([2.0, 2.0, 2.0])
    assert stats["std"] == 0.0
    with pytest.raises(ValueError, match="std"):
        normalise(2.0, stats)
    with pytest.raises(ValueError, match="mean"):
        normalise(2.0, {"std": 1.0})
