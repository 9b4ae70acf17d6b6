"""Pixel metrics: pixel AUROC and PRO (skipgan.metrics.pixel_metrics / pro_curve / pro_auc)."""

import numpy as np
import pytest
from scipy import ndimage

from skipgan.metrics import pixel_metrics, pro_auc, pro_curve

# Hand-worked: one 3x3 image, two regions A = {(0,0), (0,1)} and B = {(2,2)}, six normal pixels.
MASK = np.array([[[1, 1, 0], [0, 0, 0], [0, 0, 1]]])
MAP = np.array([[[0.9, 0.3, 0.5], [0.1, 0.2, 0.4], [0.0, 0.6, 0.8]]])
# Descending: 0.9 (A) 0.8 (B) 0.6 0.5 0.4 (normal) 0.3 (A) 0.2 0.1 0.0 (normal).
# PRO after 0.9: (1/2 + 0)/2 = 0.25; after 0.8: (1/2 + 1)/2 = 0.75; stays 0.75 while FPR goes 1/6, 2/6, 3/6;
# after 0.3: 1.0 at FPR 3/6; then FPR 4/6, 5/6, 1.
WANT_FPR = [0, 0, 0, 1 / 6, 2 / 6, 3 / 6, 3 / 6, 4 / 6, 5 / 6, 1]
WANT_PRO = [0, 0.25, 0.75, 0.75, 0.75, 0.75, 1, 1, 1, 1]


def test_pro_curve_hand_worked():
    fpr, pro = pro_curve(MAP, MASK)
    np.testing.assert_allclose(fpr, WANT_FPR)
    np.testing.assert_allclose(pro, WANT_PRO)


def test_pro_auc_hand_worked():
    # up to FPR 0.3 the curve is 0.75 (its rise happens at FPR 0): area 0.225, normalised 0.75
    assert pro_auc(MAP, MASK) == pytest.approx(0.75)
    assert pro_auc(MAP, MASK, fpr_limit=1.0) == pytest.approx(0.75 * 0.5 + 1.0 * 0.5)
    # limit between points: 0.75 up to 0.5, then interpolated — still flat here
    assert pro_auc(MAP, MASK, fpr_limit=0.6) == pytest.approx((0.75 * 0.5 + 0.1 * 1.0) / 0.6)


def test_pixel_auroc_hand_worked():
    # positives 0.9, 0.8, 0.3 against six negatives: 6 + 6 + 3 of 18 pairs ordered right
    m = pixel_metrics(MAP, MASK)
    assert m["pixel_auroc"] == pytest.approx(15 / 18)
    assert m["pro"] == pytest.approx(0.75) and m["regions"] == 2 and m["pixels"] == 9


def test_regions_never_join_across_images_and_diagonals_join():
    mask = np.zeros((2, 3, 3), int)
    mask[0, 2, 2] = 1  # image 0, bottom-right
    mask[1, 0, 0] = mask[1, 1, 1] = 1  # image 1: one diagonal region of two pixels
    maps = np.zeros((2, 3, 3))
    maps[1, 0, 0] = 1.0  # half of image 1's region found at the top threshold
    fpr, pro = pro_curve(maps, mask)
    # 2 regions: at the first threshold PRO = (0 + 1/2) / 2
    assert fpr[1] == 0 and pro[1] == pytest.approx(0.25)


def _naive_pro(maps, masks, thresholds):
    """Loop over thresholds and regions, as the definition reads."""
    s = np.ones((3, 3), int)
    regions = []
    for img, msk in zip(maps, masks):
        lab, n = ndimage.label(msk, structure=s)
        regions += [(img, lab == r) for r in range(1, n + 1)]
    normal = masks == 0
    out = []
    for t in thresholds:
        pred = maps >= t
        out.append(((pred & normal).sum() / normal.sum(), np.mean([(p >= t)[r].mean() for p, r in regions])))
    return np.array(out)


def test_pro_curve_matches_naive_loop_with_ties():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 16, 16), int)
    masks[0, 2:6, 3:9] = 1
    masks[1, 10:12, 10:15] = 1
    masks[1, 0:2, 0:2] = 1
    masks[3, 5:14, 5:7] = 1
    maps = np.round(rng.random((4, 16, 16)) + 0.5 * masks, 1)  # rounded: many ties
    fpr, pro = pro_curve(maps, masks)
    want = _naive_pro(maps, masks, np.unique(maps)[::-1])
    np.testing.assert_allclose(fpr[1:], want[:, 0])
    np.testing.assert_allclose(pro[1:], want[:, 1])
    assert 0 < pro_auc(maps, masks) <= 1


def test_perfect_and_inverted_maps():
    masks = np.zeros((2, 8, 8), int)
    masks[0, 1:3, 1:3] = 1
    masks[1, 4:8, 0:2] = 1
    assert pixel_metrics(masks * 1.0, masks)["pro"] == pytest.approx(1.0)
    assert pixel_metrics(masks * 1.0, masks)["pixel_auroc"] == pytest.approx(1.0)
    assert pixel_metrics(-masks * 1.0, masks)["pro"] == pytest.approx(0.0)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 3, 3)), "both normal"),
    (np.ones((1, 3, 3)), "both normal"),
])
def test_one_class_masks_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        pixel_metrics(np.zeros((1, 3, 3)), bad)


def test_shape_mismatch_and_nan_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        pixel_metrics(np.zeros((1, 3, 3)), np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        pixel_metrics(np.full((1, 3, 3), np.nan), MASK)
