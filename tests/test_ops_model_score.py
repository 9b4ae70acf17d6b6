"""The native score op gives the model's own anomaly scores on a real (tiny) Skip-GANomaly network."""

import pytest
import torch

from skipgan import ops
from skipgan.model import Architecture, Corruption, SkipGANomaly

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")


@pytest.mark.parametrize("nc", [1, 3])
def test_native_score_matches_model(nc):
    torch.manual_seed(0)
    m = SkipGANomaly(Architecture(isize=32, nc=nc, ngf=8, ndf=8, nz=16), lam=0.7).eval()
    x = torch.rand(5, nc, 32, 32) * 2 - 1
    with torch.no_grad():
        s = m.score(x, with_error_map=True)
        f = m.discriminator.features(x)
        f_hat = m.discriminator.features(s.reconstruction)
    scores, emap = ops.anomaly_score(x, s.reconstruction, f, f_hat, m.lam, error_map=True)
    torch.testing.assert_close(scores, s.score, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(emap, s.error_map, rtol=1e-5, atol=1e-7)


def test_native_score_with_margin_on_interior_views():
    torch.manual_seed(1)
    m = SkipGANomaly(Architecture(isize=32, nc=2, ngf=8, ndf=8, nz=16), lam=0.9, margin=2).eval()
    x = torch.rand(3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        s = m.score(x)
        f, f_hat = m.discriminator.features(x), m.discriminator.features(s.reconstruction)
    inner = (slice(None), slice(None), slice(2, 30), slice(2, 30))  # non-contiguous views, no copies by the caller
    scores = ops.anomaly_score(x[inner], s.reconstruction[inner], f, f_hat, m.lam)
    torch.testing.assert_close(scores, s.score, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("nc", [1, 2, 3])
def test_native_score_with_margin_on_full_tensors(nc):
    # The op leaves the border out itself: full tensors in, the model's score, (R, L) and full-size map out.
    torch.manual_seed(3)
    m = SkipGANomaly(Architecture(isize=32, nc=nc, ngf=8, ndf=8, nz=16), lam=0.8, margin=2).eval()
    x = torch.rand(3, nc, 32, 32) * 2 - 1
    with torch.no_grad():
        s = m.score(x, with_error_map=True)
        f, f_hat = m.discriminator.features(x), m.discriminator.features(s.reconstruction)
    scores, emap, parts = ops.anomaly_score(x, s.reconstruction, f, f_hat, m.lam, margin=m.margin, error_map=True,
                                            parts=True)
    torch.testing.assert_close(scores, s.score, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(parts[:, 0], s.pixel, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(parts[:, 1], s.feature, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(emap, s.error_map, rtol=1e-5, atol=1e-7)
    # channels_last inputs (the engine's layout) give the same
    cl = torch.channels_last
    got = ops.anomaly_score(x.contiguous(memory_format=cl), s.reconstruction.contiguous(memory_format=cl), f, f_hat,
                            m.lam, margin=m.margin)
    torch.testing.assert_close(got, s.score, rtol=1e-5, atol=1e-7)


def test_native_score_matches_model_with_noise_probes():
    torch.manual_seed(2)
    m = SkipGANomaly(Architecture(isize=32, nc=1, ngf=8, ndf=8, nz=16), corruption=Corruption(2.0, score_draws=4)).eval()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        s = m.score(x)
        f, f_hat = m.discriminator.features(x), m.discriminator.features(s.reconstruction)
    torch.testing.assert_close(ops.anomaly_score(x, s.reconstruction, f, f_hat, m.lam), s.score, rtol=1e-5, atol=1e-7)
