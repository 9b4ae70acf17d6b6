"""The classical map baselines of the accuracy benchmarks (benchmarks/accuracy/map_baselines.py): shapes for any
channel count, the filter bank's rotation invariance, and maps that point at a foreign region."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy"))
from map_baselines import (filter_bank, filter_bank_features, filter_bank_knn_maps,  # noqa: E402
                           patch_knn_maps)


def _stripes(n, c=1, s=48, period=6.0, seed=0):
    """Normal images: noisy vertical stripes in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(s, dtype=torch.float32)
    base = 0.6 * torch.sin(2 * torch.pi * x / period)[None, None, None, :].expand(n, c, s, s)
    return (base + 0.05 * torch.randn(n, c, s, s, generator=g)).clamp(-1, 1)


def test_filter_bank_is_zero_mean_and_normalised():
    bank, radius = filter_bank()
    assert bank.shape[-1] == 2 * radius + 1 and bank.shape[1] == 1
    edge_bar, gauss, log = bank[:-2], bank[-2], bank[-1]
    assert edge_bar.sum((1, 2, 3)).abs().max() < 1e-5 and log.sum().abs() < 1e-5  # no response to a flat image
    assert torch.allclose(edge_bar.abs().sum((1, 2, 3)), torch.ones(len(edge_bar)))
    assert gauss.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_filter_bank_features_turn_with_the_image(channels):
    """Six orientations 30 degrees apart: a quarter turn maps the bank onto itself, so the rectified max responses
    of a turned image are the turned responses (rotation invariance)."""
    x = torch.rand(2, channels, 40, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    f = filter_bank_features(x)
    assert f.shape == (2, 8 * channels, 40, 40)
    turned = filter_bank_features(torch.rot90(x, 1, (2, 3)))
    torch.testing.assert_close(turned, torch.rot90(f, 1, (2, 3)), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("maps_of", [patch_knn_maps, filter_bank_knn_maps])
@pytest.mark.parametrize("channels", [1, 3])
def test_knn_maps_point_at_a_foreign_region(maps_of, channels):
    train = _stripes(12, channels)
    test = _stripes(3, channels, seed=1)
    test[:, :, 16:32, 16:32] = torch.rot90(test[:, :, 16:32, 16:32], 1, (2, 3))  # horizontal stripes inside
    (maps,) = maps_of(train, test, memory=5000)
    assert maps.shape == (3, 48, 48)
    inside, outside = maps[:, 20:28, 20:28].mean(), maps[:, :, :8].mean()
    assert inside > 3 * outside
