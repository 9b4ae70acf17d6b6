"""The local-defect data set's pasted regions (skipgan/data/synthetic_defects.py, written by
benchmarks/accuracy/local_defects.py make): area and exact masks."""

import numpy as np
import pytest

from skipgan.data import synthetic_defects as sd


@pytest.mark.parametrize("kind", sd.DEFECTS)
def test_pasted_region_covers_2_to_15_percent_and_the_mask_is_exact(kind):
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (512, 512))
    foreign = [np.full((256, 256), 3.0)]  # far from the patch values: every pasted pixel changes
    for _ in range(20):
        patch = rng.uniform(60, 200, (sd.PATCH, sd.PATCH))
        out, mask = sd.defect(kind, patch, foreign, rng)
        assert sd.AREA[0] <= mask.mean() <= sd.AREA[1]
        np.testing.assert_array_equal(out[~mask], patch[~mask])  # nothing changes outside the mask
        assert out.min() >= 0 and out.max() <= 255
    assert sd.crop(photo, sd.TEST_COLS, rng).shape == (sd.PATCH, sd.PATCH)


def test_train_and_test_areas_are_disjoint():
    assert sd.TRAIN_COLS[1] <= sd.TEST_COLS[0]
    assert sd.TEST_COLS[1] - sd.TEST_COLS[0] >= sd.CROP and sd.TRAIN_COLS[1] - sd.TRAIN_COLS[0] >= sd.CROP
