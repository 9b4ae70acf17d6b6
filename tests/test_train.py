"""Losses against hand computation, a training step that learns, reproducibility, checkpoints and resume."""

import math

import pytest
import torch

from skipgan.model import Architecture, score_in_batches
from skipgan.train import LossWeights, Trainer, TrainConfig, discriminator_loss, generator_loss, split_validation
from skipgan.train.checkpoint import CHECKPOINT_NAME

TINY = Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8)


def tiny_images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1


def test_generator_loss_by_hand():
    logits = torch.tensor([0.0, 2.0])
    x = torch.tensor([[1.0, -1.0]])
    x_hat = torch.tensor([[0.5, 0.0]])
    f, f_hat = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 0.0, 4.0]])
    out = generator_loss(logits, x_hat, x, f_hat, f, LossWeights(adv=2.0, con=50.0, lat=3.0))
    adv = (math.log(2) + math.log(1 + math.exp(-2))) / 2  # BCE(sigmoid(l), 1) = log(1 + e^-l)
    con = (0.5 + 1.0) / 2
    lat = (0 + 4 + 1) / 3
    assert out["adv"].item() == pytest.approx(adv, rel=1e-6)
    assert out["con"].item() == pytest.approx(con)
    assert out["lat"].item() == pytest.approx(lat)
    assert out["g"].item() == pytest.approx(2 * adv + 50 * con + 3 * lat, rel=1e-6)


def test_discriminator_loss_by_hand():
    real, fake = torch.tensor([1.0, -1.0]), torch.tensor([0.5])
    expect = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2 + math.log(1 + math.exp(0.5))
    assert discriminator_loss(real, fake).item() == pytest.approx(expect, rel=1e-6)


def test_default_weights_are_the_official_ones():
    cfg = TrainConfig()
    assert (cfg.w_adv, cfg.w_con, cfg.w_lat, cfg.lr, cfg.beta1, cfg.batch_size, cfg.epochs, cfg.lam) == (
        1.0, 50.0, 1.0, 2e-4, 0.5, 64, 15, 0.9)


def test_training_steps_lower_g_loss_on_a_fixed_batch():
    trainer = Trainer(TINY, TrainConfig(seed=0), progress=False, log=lambda s: None)
    x = tiny_images(8)
    first = trainer.train_step(x)
    for _ in range(15):
        last = trainer.train_step(x)
    assert last["con"] < first["con"]
    assert last["g"] < first["g"]


def test_split_validation_is_seeded_and_disjoint():
    images = torch.arange(100.0).view(100, 1, 1, 1)
    tr, va = split_validation(images, 0.1, seed=3)
    tr2, va2 = split_validation(images, 0.1, seed=3)
    assert len(va) == 10 and len(tr) == 90
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not set(va.flatten().tolist()) & set(tr.flatten().tolist())


def fit(tmp_path=None, epochs=2, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=8, seed=kw.pop("seed", 0), **kw)
    trainer = Trainer(TINY, cfg, out_dir=tmp_path, progress=False, log=lambda s: None)
    return trainer, trainer.fit(tiny_images())


def test_same_seed_same_scores_bit_exact():
    _, a = fit()
    _, b = fit()
    test = tiny_images(6, seed=1)
    sa, sb = score_in_batches(a.model, test).score, score_in_batches(b.model, test).score
    assert torch.equal(sa, sb)
    _, c = fit(seed=1)
    assert not torch.equal(sa, score_in_batches(c.model, test).score)


def test_result_is_eval_mode_and_calibrated():
    _, r = fit(target_fpr=0.2)
    assert not r.model.training
    cal = r.calibration
    assert cal["target_fpr"] == 0.2
    assert (r.val_scores > cal["threshold"]).float().mean() <= 0.2
    assert cal["val_stats"]["n"] == len(r.val_scores) == 2  # 10 % of 24 (rounded)
    assert len(r.history) == 2 and r.selected_epoch == 2


def test_resume_continues_bit_exact(tmp_path):
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    _, full = fit(full_dir, epochs=3, noise_std=0.1)
    fit(part_dir, epochs=1, noise_std=0.1)  # "killed" after epoch 1
    assert (part_dir / CHECKPOINT_NAME).is_file()
    trainer = Trainer(TINY, TrainConfig(epochs=3, batch_size=8, noise_std=0.1), out_dir=part_dir, progress=False,
                      log=lambda s: None)
    trainer.resume()
    assert trainer.start_epoch == 1
    resumed = trainer.fit(tiny_images())
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [h["g"] for h in resumed.history] == [h["g"] for h in full.history]
    assert not list(part_dir.glob("*.tmp*"))


def test_select_val_uses_validation_only():
    _, r = fit(epochs=3, select="val")
    assert 1 <= r.selected_epoch <= 3
    best = min(r.history, key=lambda h: h["val_mean"])
    assert r.selected_epoch == best["epoch"]


@pytest.mark.parametrize("kw, flag", [({"batch_size": 1}, "batch_size"), ({"lam": 1.5}, "lam"),
                                      ({"target_fpr": 0.0}, "target_fpr"), ({"amp": "fp8"}, "amp")])
def test_bad_config(kw, flag):
    with pytest.raises(ValueError, match=f"^{flag}="):
        TrainConfig(**kw)


def test_collapsed_discriminator_is_reinitialised(monkeypatch):
    import skipgan.train.trainer as tr

    calls = []
    real_init = tr.init_weights
    monkeypatch.setattr(tr, "D_REINIT_BELOW", float("inf"))  # every step counts as collapsed
    monkeypatch.setattr(tr, "init_weights", lambda m: (calls.append(m), real_init(m)))
    trainer, _ = fit(epochs=1)
    assert calls and all(m is trainer.model.discriminator for m in calls)
    assert len(calls) == 3  # 22 training images, batch 8: 3 steps


@pytest.mark.parametrize("kw", [{"amp": "bf16"}, {"channels_last": True}])
def test_amp_and_channels_last_train_on_cpu(kw):
    _, r = fit(epochs=1, **kw)
    assert torch.isfinite(r.val_scores).all()


def test_balanced_lambda_by_hand():
    from skipgan.train import balanced_lambda

    pixel = torch.tensor([1.0, 3.0])  # std sqrt(2)
    feature = torch.tensor([10.0, 30.0])  # std 10*sqrt(2)
    # 0.9/σp : 0.1/σf = 0.9 : 0.01  →  λ' = 0.9 / 0.91
    assert balanced_lambda(0.9, pixel, feature) == pytest.approx(0.9 / 0.91)
    assert balanced_lambda(0.9, pixel, torch.zeros(2)) == 0.9  # degenerate: keep λ
    assert balanced_lambda(1.0, pixel, feature) == 1.0


def test_balance_lam_is_stored_and_used():
    _, r = fit(balance_lam=True, score_margin=2)
    assert r.model.margin == 2
    cal = r.calibration
    assert cal["lam_requested"] == 0.9 and cal["lam"] == r.model.lam != 0.9
    test = tiny_images(4, seed=2)
    s = score_in_batches(r.model, test)
    torch.testing.assert_close(s.score, cal["lam"] * s.pixel + (1 - cal["lam"]) * s.feature)


@pytest.mark.parametrize("kw", [{"noise_std": 1.0, "score_draws": 2},
                                {"mask_block": 8, "mask_groups": 4, "noise_std": 0.0, "score_draws": 0}])
def test_generator_trains_on_corrupted_input_and_model_keeps_probes(kw, monkeypatch):
    seen = []
    orig = Trainer.train_step

    def spy(self, x, x_in=None):
        seen.append((x.clone(), x_in.clone()))
        return orig(self, x, x_in)

    monkeypatch.setattr(Trainer, "train_step", spy)
    trainer, r = fit(epochs=1, **kw)
    assert seen and all(not torch.equal(x, x_in) for x, x_in in seen)
    if "mask_block" in kw:
        assert all(((x_in == 0) | (x_in == x)).all() for x, x_in in seen)
    assert r.model.probe_weight.shape[0] == (kw["mask_groups"] if "mask_block" in kw else kw["score_draws"])
    assert torch.isfinite(r.val_scores).all()
    # the same seed draws the same corruption: bit-identical models
    _, r2 = fit(epochs=1, **kw)
    test = tiny_images(4, seed=2)
    assert torch.equal(score_in_batches(r.model, test).score, score_in_batches(r2.model, test).score)
