"""Training on a GPU: AMP (bf16, fp16 with GradScaler) and channels_last. Skipped without one."""

import pytest
import torch

from skipgan.model import Architecture, score_in_batches
from skipgan.train import Trainer, TrainConfig

pytestmark = pytest.mark.cuda  # conftest.py: skipped without a GPU

TINY = Architecture(isize=32, nc=1, ngf=8, ndf=8, nz=8)


def images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_training_is_finite_and_scores_in_fp32(amp, channels_last):
    cfg = TrainConfig(epochs=2, batch_size=8, amp=amp, channels_last=channels_last)
    r = Trainer(TINY, cfg, device="cuda", progress=False, log=lambda s: None).fit(images())
    assert next(r.model.parameters()).is_cuda
    assert torch.isfinite(r.val_scores).all()
    s = score_in_batches(r.model, images(6, seed=1))
    assert s.score.dtype == torch.float32 and torch.isfinite(s.score).all()


def test_cuda_scores_match_cpu_scores(monkeypatch):
    # cuDNN's default TF32 convolutions round to a 10-bit mantissa: compare in full fp32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    r = Trainer(TINY, TrainConfig(epochs=1, batch_size=8), device="cuda", progress=False,
                log=lambda s: None).fit(images())
    x = images(6, seed=1)
    on_gpu = score_in_batches(r.model, x).score
    on_cpu = score_in_batches(r.model.cpu(), x).score
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-6)


def test_fp16_step_lowers_g_loss():
    t = Trainer(TINY, TrainConfig(batch_size=8, amp="fp16"), device="cuda", progress=False, log=lambda s: None)
    x = images(8).cuda()
    first = t.train_step(x)["g"]
    for _ in range(20):
        last = t.train_step(x)["g"]
    assert last < first


@pytest.mark.parametrize("kw", [{"noise_std": 0.5, "score_draws": 3},
                                {"mask_block": 8, "mask_groups": 4, "noise_std": 0.0, "score_draws": 0}])
def test_cuda_training_with_input_corruption(kw):
    r = Trainer(TINY, TrainConfig(epochs=1, batch_size=8, **kw), device="cuda", progress=False,
                log=lambda s: None).fit(images())
    assert r.model.probe_weight.is_cuda
    assert r.model.probe_weight.shape[0] == (kw["mask_groups"] if "mask_block" in kw else kw["score_draws"])
    assert torch.isfinite(r.val_scores).all()
