"""The overlay of an anomaly map on its image: one pixel-exact definition, drawn by `skipgan score --maps` and by the
C++ scanner's `--maps` (scanner/overlay.cpp runs the same ATen operations in the same order; tests/test_scanner.py
compares the two PNGs pixel by pixel).

    base      the image in [0, 1] (skipgan.preprocess.to_unit): gray for 1 channel, the channel mean for 2, the
              first three as RGB for 3 or more
    map       the anomaly map (σ units) upsampled bilinearly to the image's own size (skipgan.anomaly_map.upsample)
    heat      jet(clamp(map / vmax, 0, 1)), jet(t) = clamp(1.5 − |4t − (3, 2, 1)|, 0, 1); vmax = 1.5 × the contour
              threshold (6 without one): the threshold sits at two thirds of the scale
    blend     (1 − 0.45) · base + 0.45 · heat
    contour   white where the map is above the threshold and a 4-neighbour (the border replicated) is not
    pixels    round(255 · blend), each pixel repeated `scale` times a side, scale = ceil(256 / the longer side): a
              small image is drawn bigger (integer factor, nearest), so the contour stays visible

No plotting library: an overlay costs a few array operations, which the scanner can afford on every flagged image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ALPHA = 0.45
MIN_SIDE = 256  # overlays of smaller images are scaled up to at least this longer side (integer factor)


def overlay_vmax(threshold: float | None) -> float:
    """The top of the heatmap's scale (σ units)."""
    return 1.5 * threshold if threshold is not None and threshold > 0 else 6.0


def overlay_scale(height: int, width: int) -> int:
    return max(1, -(-MIN_SIDE // max(height, width)))


def render_overlay(unit: torch.Tensor, amap: torch.Tensor, threshold: float | None,
                   vmax: float | None = None) -> torch.Tensor:
    """unit: the image [C, H, W] fp32 in [0, 1]; amap: its anomaly map [H, W] fp32 at the image's size -> the
    overlay uint8 [H·s, W·s, 3] (s = overlay_scale)."""
    c, h, w = unit.shape
    if tuple(amap.shape) != (h, w):
        raise ValueError(f"image {tuple(unit.shape)} and map {tuple(amap.shape)} differ in size")
    x = unit.float().clamp(0.0, 1.0)
    base = x[:3] if c >= 3 else (x if c == 1 else x.mean(0, keepdim=True)).expand(3, h, w)
    m = amap.float()
    t = (m / (vmax if vmax is not None else overlay_vmax(threshold))).clamp(0.0, 1.0)
    centres = torch.tensor([3.0, 2.0, 1.0]).view(3, 1, 1)
    heat = (1.5 - (t * 4.0 - centres).abs()).clamp(0.0, 1.0)
    out = base * (1.0 - ALPHA) + heat * ALPHA
    if threshold is not None:
        above = (m > threshold).float()[None, None]
        p = F.pad(above, (1, 1, 1, 1), mode="replicate")[0, 0]
        neighbours = torch.minimum(torch.minimum(p[:-2, 1:-1], p[2:, 1:-1]), torch.minimum(p[1:-1, :-2], p[1:-1, 2:]))
        edge = (above[0, 0] > 0) & (neighbours < 1)
        out = torch.where(edge, torch.ones_like(out), out)
    pixels = (out * 255.0).round().clamp(0, 255).to(torch.uint8)
    s = overlay_scale(h, w)
    if s > 1:
        pixels = pixels.repeat_interleave(s, 1).repeat_interleave(s, 2)
    return pixels.permute(1, 2, 0).contiguous()
