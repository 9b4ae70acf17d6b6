"""Regions of an anomaly map (skipgan/regions.py): components, boxes in image pixels, area, peak, mean, order, cap."""

import numpy as np
import pytest

from skipgan.regions import find_regions


def _map(s=8):
    m = np.zeros((s, s), np.float32)
    m[1:3, 1:4] = [[2.0, 3.0, 2.5], [2.2, 2.1, 2.0]]  # region A: peak 3, 6 pixels
    m[5, 5] = 4.0  # region B: peak 4, one pixel; diagonal neighbour below joins it (8-connectivity)
    m[6, 6] = 1.5
    m[6, 0] = 1.0  # at the threshold: not above it
    return m


def test_components_order_box_area_peak_mean_at_the_maps_size():
    got = find_regions(_map(), 1.0, 8, 8)
    assert [r["peak"] for r in got] == [4.0, 3.0]  # largest peak first
    b, a = got
    assert b["bbox"] == [5, 5, 2, 2] and b["area"] == 2 and b["mean"] == pytest.approx(2.75)
    assert a["bbox"] == [1, 1, 3, 2] and a["area"] == 6
    assert a["mean"] == pytest.approx(np.mean([2.0, 3.0, 2.5, 2.2, 2.1, 2.0]), rel=1e-7)


def test_boxes_and_areas_scale_to_the_images_own_pixels():
    # map column c of 8 covers image columns [c·W/8, (c+1)·W/8): region A (columns 1..3, rows 1..2)
    got = find_regions(_map(), 1.0, 100, 30, max_regions=5)
    a = got[1]
    x0, x1 = 1 * 30 // 8, -(-4 * 30 // 8)  # 3, 15
    y0, y1 = 1 * 100 // 8, -(-3 * 100 // 8)  # 12, 38
    assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    assert a["area"] == round(6 * 100 * 30 / 64)


def test_threshold_is_strict_cap_and_empty_cases():
    m = _map()
    assert len(find_regions(m, 1.0, 8, 8, max_regions=1)) == 1
    assert find_regions(m, 1.0, 8, 8, max_regions=0) == []
    assert find_regions(m, 4.0, 8, 8) == []  # nothing strictly above
    assert find_regions(np.zeros((4, 4), np.float32), 0.0, 4, 4) == []
    assert len(find_regions(m, 0.5, 8, 8)) == 3  # the pixel at 1.0 now counts


def test_ties_in_peak_go_by_raster_order():
    m = np.zeros((6, 6), np.float32)
    m[4, 1] = m[0, 4] = 2.0
    got = find_regions(m, 0.0, 6, 6)
    assert [r["bbox"] for r in got] == [[4, 0, 1, 1], [1, 4, 1, 1]]


def test_a_map_that_is_not_2d_is_refused():
    with pytest.raises(ValueError, match="must be"):
        find_regions(np.zeros((2, 4, 4), np.float32), 0.0, 4, 4)
