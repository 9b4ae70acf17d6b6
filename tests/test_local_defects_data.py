"""The local-defect benchmark's pasted regions (benchmarks/accuracy/local_defects.py): area and exact masks."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location(
    "local_defects", Path(__file__).parents[1] / "benchmarks/accuracy/local_defects.py")
ld = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ld)


@pytest.mark.parametrize("kind", ld.DEFECTS)
def test_pasted_region_covers_2_to_15_percent_and_the_mask_is_exact(kind):
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (512, 512))
    foreign = [np.full((256, 256), 3.0)]  # far from the patch values: every pasted pixel changes
    for _ in range(20):
        patch = rng.uniform(60, 200, (ld.PATCH, ld.PATCH))
        out, mask = ld._defect(kind, patch, foreign, rng)
        assert ld.AREA[0] <= mask.mean() <= ld.AREA[1]
        np.testing.assert_array_equal(out[~mask], patch[~mask])  # nothing changes outside the mask
        assert out.min() >= 0 and out.max() <= 255
    assert ld._crop(photo, ld.TEST_COLS, rng).shape == (ld.PATCH, ld.PATCH)


def test_train_and_test_areas_are_disjoint():
    assert ld.TRAIN_COLS[1] <= ld.TEST_COLS[0]
    assert ld.TEST_COLS[1] - ld.TEST_COLS[0] >= ld.CROP and ld.TRAIN_COLS[1] - ld.TRAIN_COLS[0] >= ld.CROP
