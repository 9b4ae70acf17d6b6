"""The overlay definition (skipgan/overlay.py): base, heat, blend, contour, scale."""

import pytest
import torch

from skipgan.overlay import ALPHA, overlay_scale, overlay_vmax, render_overlay


def test_scale_and_vmax():
    assert overlay_scale(40, 40) == 7 and overlay_scale(300, 20) == 1 and overlay_scale(128, 64) == 2
    assert overlay_vmax(2.0) == 3.0 and overlay_vmax(None) == 6.0 and overlay_vmax(-1.0) == 6.0


def test_blend_heat_and_contour_pixels():
    unit = torch.full((1, 300, 300), 0.5)
    amap = torch.zeros(300, 300)
    amap[100:110, 200:220] = 5.0  # above a threshold of 2 (vmax 3: the top of jet, dark red)
    px = render_overlay(unit, amap, 2.0)
    assert px.shape == (300, 300, 3) and px.dtype == torch.uint8
    # t = 0: jet = (0, 0, 0.5)
    want = [round(255 * (0.5 * (1 - ALPHA) + ALPHA * c)) for c in (0.0, 0.0, 0.5)]
    assert px[0, 0].tolist() == want
    # inside the region, away from its edge: t = 1, jet = (0.5, 0, 0)
    assert px[105, 210].tolist() == [round(255 * (0.5 * (1 - ALPHA) + ALPHA * c)) for c in (0.5, 0.0, 0.0)]
    # its edge: white; just outside: not
    assert px[100, 210].tolist() == [255, 255, 255] and px[105, 200].tolist() == [255, 255, 255]
    assert px[99, 210].tolist() == want
    # no threshold: no contour
    assert px[100, 210].tolist() != render_overlay(unit, amap, None)[100, 210].tolist()


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_channels_and_small_images_are_drawn_bigger(c):
    unit = torch.rand(c, 20, 30, generator=torch.Generator().manual_seed(c))
    px = render_overlay(unit, torch.zeros(20, 30), None)
    s = overlay_scale(20, 30)
    assert px.shape == (20 * s, 30 * s, 3)
    assert torch.equal(px[::s, ::s], px[s - 1 :: s, s - 1 :: s])  # each pixel repeated s x s


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        render_overlay(torch.zeros(1, 4, 4), torch.zeros(4, 5), 1.0)
