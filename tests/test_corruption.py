"""Input corruption: random in training, fixed scoring probes stored with the model."""

import pytest
import torch

from skipgan.model import Architecture, Corruption, SkipGANomaly
from skipgan.modelfile import load_model, save_model

ARCH = Architecture(isize=32, nc=2, ngf=4, ndf=4, nz=8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kw, flag", [
    ({"noise_std": -0.1}, "noise_std"),
    ({"score_draws": 3}, "score_draws"),  # probes without noise would all be the clean input
    ({"noise_std": 1.0, "score_draws": -1}, "score_draws"),
    ({"mask_block": 5}, "mask_block"),
    ({"mask_block": 32}, "mask_block"),
    ({"mask_block": 16, "mask_groups": 5}, "mask_groups"),
    ({"mask_block": 8, "mask_groups": 1}, "mask_groups"),
    ({"mask_block": 8, "noise_std": 1.0, "score_draws": 4}, "score_draws"),  # masks are the scoring probes
])
def test_bad_settings_name_the_setting(kw, flag):
    with pytest.raises(ValueError, match=rf"^{flag}="):
        Corruption(**kw).check(32)


def test_training_masks_hide_a_fixed_share_of_cells_with_zero():
    c = Corruption(mask_block=8, mask_groups=4)
    x = torch.full((5, 2, 32, 32), 0.7)
    out = c.train_input(x, gen())
    hidden = out == 0
    assert torch.equal(hidden[:, 0], hidden[:, 1])  # a cell is hidden in every channel
    assert (hidden.float().mean((1, 2, 3)) == 0.25).all()  # 16 cells, 4 hidden, in every image
    assert torch.equal(out[~hidden], x[~hidden])
    cells = hidden[:, 0].view(5, 4, 8, 4, 8)
    assert (cells.all((2, 4)) | ~cells.any((2, 4))).all()  # whole 8x8 cells only
    assert not torch.equal(hidden[0], hidden[1])  # a new choice per image
    assert torch.equal(out, c.train_input(x, gen()))  # the generator decides everything


def test_training_noise_has_the_set_std():
    out = Corruption(noise_std=2.0).train_input(torch.zeros(64, 1, 32, 32), gen())
    assert abs(out.std().item() - 2.0) < 0.05


def test_mask_probes_partition_the_image():
    scale, shift, weight = Corruption(mask_block=8, mask_groups=4).probes(nc=2, isize=32)
    assert weight.shape == (4, 1, 32, 32) and shift.shape == (4, 2, 32, 32)
    assert torch.equal(weight.sum(0), torch.ones(1, 32, 32))  # every pixel hidden in exactly one pass
    assert torch.equal(scale, 1 - weight) and not shift.any()
    assert (weight.mean((1, 2, 3)) == 0.25).all()


def test_noise_probes_average_fixed_draws():
    c = Corruption(noise_std=1.5, score_draws=6, seed=3)
    scale, shift, weight = c.probes(nc=2, isize=32)
    assert shift.shape == (6, 2, 32, 32) and abs(shift.std().item() - 1.5) < 0.05
    assert (scale == 1).all() and torch.allclose(weight.sum(0), torch.ones(1, 32, 32))
    assert torch.equal(shift, c.probes(nc=2, isize=32)[1])  # fixed by the seed


def test_no_corruption_means_no_probes():
    scale, shift, weight = Corruption(noise_std=0.5).probes(nc=2, isize=32)  # train-only noise
    assert weight.shape[0] == 0 and scale.shape[0] == 0 and shift.shape[0] == 0


@pytest.mark.parametrize("c", [Corruption(noise_std=1.0, score_draws=3), Corruption(mask_block=8, mask_groups=4)])
def test_reconstruction_stitches_the_probes(c):
    torch.manual_seed(0)
    m = SkipGANomaly(ARCH, corruption=c).eval()
    x = torch.rand(3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        want = sum(w * m.generator(x * a + b) for a, b, w in zip(m.probe_scale, m.probe_shift, m.probe_weight))
        got = m.reconstruct(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        # probes are fixed per pixel, not per batch position: an image scores the same alone or in a batch
        torch.testing.assert_close(m(x[1:2]), m(x)[1:2], rtol=1e-5, atol=1e-7)


def test_clean_model_reconstructs_with_the_generator_alone():
    m = SkipGANomaly(ARCH).eval()
    x = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.reconstruct(x), m.generator(x))


def test_model_file_carries_the_probes(tmp_path):
    c = Corruption(noise_std=2.0, score_draws=4, seed=5)
    m = SkipGANomaly(ARCH, corruption=c).eval()
    with torch.no_grad():
        m.probe_shift.add_(0.25)  # stored tensors win over regenerated ones
    save_model(tmp_path / "m.safetensors", m, calibration={})
    loaded, meta = load_model(tmp_path / "m.safetensors")
    assert meta["corruption"] == {"noise_std": 2.0, "mask_block": 0, "mask_groups": 4, "score_draws": 4, "seed": 5}
    assert loaded.corruption == c and torch.equal(loaded.probe_shift, m.probe_shift)
    x = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))


def test_model_files_without_probes_still_load(tmp_path):
    """A model file written before probes existed (no corruption metadata, no probe tensors) still loads."""
    from skipgan.tensorfile import load_tensors, save_tensors

    save_model(tmp_path / "m.safetensors", SkipGANomaly(ARCH).eval(), calibration={})
    tensors, meta = load_tensors(tmp_path / "m.safetensors", what="model file")
    del meta["corruption"]
    save_tensors(tmp_path / "old.safetensors", {k: v for k, v in tensors.items() if not k.startswith("probe_")}, meta)
    loaded, _ = load_model(tmp_path / "old.safetensors")
    assert loaded.probe_weight.shape[0] == 0
