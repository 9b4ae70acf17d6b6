"""The knn map (skipgan/model/patch_knn.py): descriptors (texture and intensity), distances against a brute-force
reference, the border, the memories and the join of the two parts, the engine's tap against the eager model, model
files (old ones too), calibration, and the `--aggregation knn` command line."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import model_fixtures
from data_fixtures import write_masked_set
from model_fixtures import TINY_TRAIN, train_run
from skipgan import ops
from skipgan.anomaly_map import MapSettings, image_scores, model_maps
from skipgan.cli import main
from skipgan.errors import InputError
from skipgan.model import score_in_batches
from skipgan.model.unet import LEAKY_SLOPE
from skipgan.modelfile import KNN_INTENSITY, KNN_MEMORY, load_model, save_model, scoring_choice
from skipgan.model.patch_knn import (WHITEN_RIDGE, KnnSettings, PatchKnn, descriptors, first_level, intensity_patches,
                                     local_mean_kernel, pixel_patches, relative_to_local_mean, whitening)
from skipgan.scoring import Scores
from skipgan.tensorfile import load_tensors, save_tensors
from skipgan.train.calibrate import calibrate_maps

needs_ops = pytest.mark.skipif(not ops.AVAILABLE, reason="native ops not built")


def _reference_descriptors(pre: torch.Tensor, window: int, power: float = 0.5, border: str = "valid"
                           ) -> torch.Tensor:
    """|pre-activation| ** power averaged over the window, one position at a time (float64): 'cut' windows at
    every position (cut at the border), 'valid' only at the positions whose whole window lies on the grid."""
    e = pre.double().abs() ** power
    n, c, h, w = e.shape
    r = window // 2
    out = torch.empty_like(e)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = e[:, :, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean((2, 3))
    return out if border == "cut" else out[:, :, r : h - r, r : w - r]


@pytest.mark.parametrize("border", ["valid", "cut"])
@pytest.mark.parametrize("window", [1, 3, 5])
@pytest.mark.parametrize("power", [0.5, 1.0])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 9, 9)])
def test_descriptors_are_local_energy_of_the_pre_activation(window, power, shape, border):
    pre = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    a = F.leaky_relu(pre, LEAKY_SLOPE)
    want = _reference_descriptors(pre, window, power, border)
    torch.testing.assert_close(descriptors(a, window, power, border).double(), want, rtol=1e-5, atol=1e-6)
    # any layout and dtype: channels_last (the engine's buffers) and bf16 give the same
    cl = a.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(descriptors(cl, window, power, border).double(), want, rtol=1e-5, atol=1e-6)
    assert descriptors(a.bfloat16(), window, power, border).dtype == torch.float32


def test_a_valid_window_larger_than_the_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="knn_window=7: must be at most 5 "):
        descriptors(torch.rand(1, 2, 5, 9), 7)


@pytest.mark.parametrize("nc,size", [(1, 8), (3, 12), (2, 32)])
def test_pixel_patches_are_the_patches_under_each_inner_cell_of_the_first_level(nc, size):
    """Cell (i, j) of D's first level (kernel 4, stride 2, padding 1) sees pixels 2i−1 .. 2i+2; the border cells,
    whose patch reaches into the padding, are left out."""
    x = torch.randn(2, nc, size, size, generator=torch.Generator().manual_seed(1))
    got = pixel_patches(x)
    h = size // 2 - 2
    assert got.shape == (2, nc * 16, h, h) and got.dtype == torch.float32
    for i in range(h):
        for j in range(h):
            ci, cj = i + 1, j + 1  # the cell on D's grid
            want = x[:, :, 2 * ci - 1 : 2 * ci + 3, 2 * cj - 1 : 2 * cj + 3].reshape(2, -1)
            torch.testing.assert_close(got[:, :, i, j], want)
    torch.testing.assert_close(pixel_patches(x.contiguous(memory_format=torch.channels_last)), got)
    torch.testing.assert_close(pixel_patches(x.bfloat16()), got, rtol=1e-2, atol=1e-2)


def test_default_descriptor_is_the_square_root_of_the_energy():
    assert KnnSettings() == KnnSettings(window=7, memory_size=10000, power=0.5, border="valid",
                                        intensity_memory=30000, coreset=0.1, intensity_whiten=True)
    pre = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(descriptors(F.leaky_relu(pre, LEAKY_SLOPE), 1), pre.abs().sqrt())


@pytest.mark.parametrize("n,m,c", [(1, 1, 3), (3, 50, 5), (2, 7, 64)])
def test_distances_equal_brute_force(n, m, c):
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(m, c, generator=g).abs()
    knn = PatchKnn(memory, KnnSettings(window=1, intensity_memory=0))
    a = torch.randn(n, c, 5, 3, generator=g)
    got = knn.distances(a[:, :, :, :])  # window 1: descriptors = |pre| ** power
    q = descriptors(a, 1).permute(0, 2, 3, 1).reshape(-1, c).double()
    want = torch.cdist(q, memory.double()).amin(1).view(n, 5, 3)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    # non-contiguous queries
    got_nc = knn.distances(a.transpose(2, 3).contiguous().transpose(2, 3))
    torch.testing.assert_close(got_nc, got)


def test_distances_span_query_blocks(monkeypatch):
    import skipgan.model.patch_knn as pk

    memory = torch.rand(20, 4)
    a = torch.randn(3, 4, 6, 6)
    knn = PatchKnn(memory, KnnSettings(window=3, intensity_memory=0))
    whole = knn.distances(a)
    # 108 queries in 16 blocks and 20 memory rows in 4, the last ones short
    monkeypatch.setattr(pk, "QUERY_BLOCK", 7)
    monkeypatch.setattr(pk, "MEMORY_BLOCK", 6)
    torch.testing.assert_close(knn.distances(a), whole)


def test_distances_are_exact_near_a_memory_row_whatever_the_gemm_rounds():
    """Queries a hair's breadth from memory rows far from the origin: |q|² − 2q·m + |m|² cancels there (the engine's
    and the eager model's maps parted by 1.6 % on an AMD Zen 4, where their GEMM kernels round differently). The
    distance must be the exact one to fp32 precision of the difference, and move by no more than the query does."""
    from skipgan.model.patch_knn import nearest_distances

    g = torch.Generator().manual_seed(2)
    memory = 10.0 + torch.rand(3000, 64, generator=g)  # |m|² ≈ 7000
    offset = 1e-3 * torch.randn(200, 64, generator=g)
    q = memory[torch.randperm(3000, generator=g)[:200]] + offset
    got = nearest_distances(q.T.reshape(1, 64, 200, 1), memory).flatten().double()
    want = torch.cdist(q.double(), memory.double()).amin(1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # a perturbation of 1e-7 moves the distance by at most that much (the GEMM form moved it by ~1e-4 here)
    moved = nearest_distances((q + 1e-7).T.reshape(1, 64, 200, 1), memory).flatten().double()
    assert float((moved - got).abs().max()) <= 1e-6


def test_memory_is_a_seeded_sample_of_training_descriptors():
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x = model_fixtures.images(6, 1, 32)
    with torch.no_grad():
        every = descriptors(first_level(model, x), 3).permute(0, 2, 3, 1).reshape(-1, 4)  # 6·14·14 = 1176 rows
    st = KnnSettings(window=3, memory_size=100, intensity_memory=0, coreset=1.0)
    knn = PatchKnn.fit(model, x, st, seed=5, batch_size=4)
    assert knn.memory.shape == (100, 4) and knn.intensity is None and knn.stats == {}
    # each memory row is one of the descriptors, all distinct
    d = torch.cdist(knn.memory.double(), every.double())
    assert float(d.amin(1).max()) < 1e-6 and len(torch.unique(d.argmin(1))) == 100
    again = PatchKnn.fit(model, x, st, seed=5)
    assert torch.equal(again.memory, knn.memory)
    assert not torch.equal(PatchKnn.fit(model, x, st, seed=6).memory, knn.memory)
    # a memory larger than the data keeps everything: training images then lie at distance 0
    full = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=10_000, intensity_memory=0, coreset=1.0))
    assert full.memory.shape == (1176, 4)
    assert float(full.raw_maps(first_level(model, x[:2]), 32).abs().max()) < 1e-3
    assert model.training is False


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_memories_are_drawn_batch_by_batch_as_from_all_rows_at_once(batch_size):
    """fit gathers its samples batch by batch (memory O(sample), not O(all descriptors)); the draw is that of
    randperm over all rows in image order, texture first: the same memories whatever the batch size."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x, val = model_fixtures.images(7, 1, 32), model_fixtures.images(2, 1, 32, seed=1)
    knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=300, intensity_memory=500, coreset=1.0),
                       seed=4,
                       batch_size=batch_size, calibration=val)
    with torch.no_grad():
        tex = descriptors(first_level(model, x), 3).permute(0, 2, 3, 1).reshape(-1, 4)  # 7·14·14 = 1372 rows
    pix = pixel_patches(x).permute(0, 2, 3, 1).reshape(-1, 16)
    gen = torch.Generator().manual_seed(4)
    want_tex = tex[torch.randperm(len(tex), generator=gen)[:300]]
    want_pix = pix[torch.randperm(len(pix), generator=gen)[:500]]
    torch.testing.assert_close(knn.memory, want_tex, rtol=1e-6, atol=1e-6)  # a conv may round per batch size
    mean, w = whitening(want_pix)  # the intensity draw is stored whitened by its own statistics
    assert torch.equal(knn.whitening[0], mean) and torch.equal(knn.whitening[1], w)
    assert torch.equal(knn.intensity, torch.mm(want_pix - mean, w))


def _reference_relative(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images less their local mean, by scipy: the maps' smoothing (a Gaussian cut at 4σ, the image reflected
    about its edge, 'reflect'), float64."""
    from scipy import ndimage

    a = x.double().numpy()
    mean = np.stack([[ndimage.gaussian_filter(ch, sigma, mode="reflect", truncate=4.0) for ch in im] for im in a])
    return torch.from_numpy(a - mean)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.0])
@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 3, 17, 29), (3, 2, 64, 40), (1, 2, 6, 9)])  # 6 < 4σ: again
def test_local_mean_is_the_maps_gaussian_reflected_at_the_border(sigma, shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[3]), dtype=torch.float64) * 2 - 1
    want = _reference_relative(x, sigma)
    got = relative_to_local_mean(x.float(), local_mean_kernel(sigma))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)
    # a non-contiguous view (channels last, a crop) and bf16 images give the same (it works in fp32)
    xf = x.float().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(relative_to_local_mean(xf, local_mean_kernel(sigma)), got, rtol=0, atol=1e-6)
    crop = x.float()[..., 1:, 2:]
    torch.testing.assert_close(relative_to_local_mean(crop, local_mean_kernel(sigma)).double(),
                               _reference_relative(crop.double(), sigma), rtol=0, atol=2e-6)
    xb = x.to(torch.bfloat16)
    torch.testing.assert_close(relative_to_local_mean(xb, local_mean_kernel(sigma)).double(),
                               _reference_relative(xb.double(), sigma), rtol=0, atol=2e-6)


def test_relative_patches_ignore_a_level_or_tint_shared_with_their_surroundings():
    """What the setting is for: a constant offset (a tint, a level) over the whole image changes no relative patch;
    a local one changes them where it sits."""
    x = model_fixtures.images(2, 3, 32)
    st = KnnSettings(relative_sigma=4.0)
    base = intensity_patches(x, st)
    torch.testing.assert_close(intensity_patches(x + 0.3, st), base, rtol=0, atol=1e-5)
    local = x.clone()
    local[:, 1, 10:18, 10:18] += 0.3
    changed = (intensity_patches(local, st) - base).abs().amax(1)
    assert float(changed[:, 4:8, 4:8].min()) > 0.05  # the patches that hold the tinted square's edges
    assert torch.equal(intensity_patches(x, KnnSettings()), pixel_patches(x))  # σ 0: the patches themselves


def _reference_distances(knn: PatchKnn, level0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The distance map on D's h x w grid, brute force (float64): each part's nearest-memory distance at its valid
    positions, every cell reading the nearest valid position (index clamped), the parts in units of their stats
    and joined by their maximum."""
    st = knn.settings
    n, _, h, w = level0.shape

    def on_grid(desc, memory):
        hv, wv = desc.shape[-2:]
        d = torch.cdist(desc.double().permute(0, 2, 3, 1).reshape(n, -1, desc.shape[1]), memory.double()[None])
        d = d.amin(2).view(n, hv, wv)
        ti, tj = (h - hv) // 2, (w - wv) // 2
        out = torch.empty(n, h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                out[:, i, j] = d[:, min(max(i - ti, 0), hv - 1), min(max(j - tj, 0), wv - 1)]
        return out

    tex = on_grid(descriptors(level0, st.window, st.power, st.border), knn.memory)
    if knn.intensity is None:
        return tex
    patches = pixel_patches(_reference_relative(x, st.relative_sigma) if st.relative_sigma else x).double()
    if knn.whitening is not None:  # the Mahalanobis distance: (p − μ) W against the whitened memory
        mean, white = (t.double() for t in knn.whitening)
        patches = torch.einsum("nchw,cd->ndhw", patches - mean[:, None, None], white)
    pix = on_grid(patches, knn.intensity)
    (mt, sdt), (mi, sdi) = knn.stats["texture"], knn.stats["intensity"]
    return torch.maximum((tex - mt) / sdt, (pix - mi) / sdi)


@pytest.mark.parametrize("border", ["valid", "cut"])
@pytest.mark.parametrize("intensity,whiten,relative", [(0, True, 0.0), (300, True, 0.0), (300, False, 0.0),
                                                      (300, True, 4.0), (300, False, 2.0)])
def test_distance_map_equals_brute_force_on_the_whole_grid(border, intensity, whiten, relative):
    """Border cells read the nearest valid position's distance; with an intensity part the two parts, each in units
    of its spread over the calibration images, are joined by their maximum; whitened, the intensity part's distance
    is the Mahalanobis distance of the raw patches."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    train, val, test = (model_fixtures.images(n, 1, 32, seed=s) for n, s in ((6, 0), (3, 1), (2, 2)))
    knn = PatchKnn.fit(model, train, KnnSettings(window=5, memory_size=200, border=border,
                                                 intensity_memory=intensity, intensity_whiten=whiten,
                                                 relative_sigma=relative),
                       calibration=val)
    assert (knn.whitening is not None) == (intensity > 0 and whiten)
    with torch.no_grad():
        level0 = first_level(model, test)
    # fp32 |q|² − 2 q·m + |m|² loses a few digits on the smallest distances (float64 reference)
    torch.testing.assert_close(knn.distances(level0, test).double(), _reference_distances(knn, level0, test),
                               rtol=1e-3, atol=2e-3)
    if intensity:
        with pytest.raises(ValueError, match="has an intensity part: pass the images too"):
            knn.distances(level0)


def test_relative_memory_holds_the_whitened_patches_of_the_images_less_their_local_mean():
    model = model_fixtures.make(isize=32, nc=2, width=4)
    train, val = model_fixtures.images(6, 2, 32, seed=0), model_fixtures.images(3, 2, 32, seed=1)
    st = KnnSettings(window=3, memory_size=100, intensity_memory=150, coreset=1.0, relative_sigma=2.0)
    knn = PatchKnn.fit(model, train, st, seed=2, calibration=val)
    rows = pixel_patches(_reference_relative(train, 2.0).float()).permute(0, 2, 3, 1).reshape(-1, 32)
    mean, w = knn.whitening
    d = torch.cdist(knn.intensity.double(), torch.mm(rows - mean, w).double())
    assert float(d.amin(1).max()) < 1e-4 and len(torch.unique(d.argmin(1))) == 150
    # and not the absolute patches' (the fit and the map take the same patches)
    absolute = pixel_patches(train).permute(0, 2, 3, 1).reshape(-1, 32)
    assert float(torch.cdist(knn.intensity.double(), torch.mm(absolute - mean, w).double()).amin(1).max()) > 0.1


def test_files_from_before_the_relative_setting_take_the_patches_themselves(tmp_path):
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x, val = model_fixtures.images(4, 1, 32), model_fixtures.images(2, 1, 32, seed=1)
    model.knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=50, intensity_memory=60), calibration=val)
    save_model(tmp_path / "m.safetensors", model, {"threshold": 1.0, "val_stats": {}})
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    del meta["knn"]["relative_sigma"]  # what such a file holds
    save_tensors(tmp_path / "old.safetensors", tensors, meta)
    old, _ = load_model(tmp_path / "old.safetensors")
    assert old.knn.settings.relative_sigma == 0.0
    with torch.no_grad():
        torch.testing.assert_close(old.knn.distances(first_level(model, x), x),
                                   model.knn.distances(first_level(model, x), x))


def test_intensity_memory_and_the_statistics_of_both_parts():
    model = model_fixtures.make(isize=32, nc=2, width=4)
    train, val = model_fixtures.images(6, 2, 32, seed=0), model_fixtures.images(4, 2, 32, seed=1)
    knn = PatchKnn.fit(model, train, KnnSettings(window=3, memory_size=100, intensity_memory=150, coreset=1.0),
                       seed=2,
                       calibration=val)
    assert knn.intensity.shape == (150, 32)  # 2 channels x 4 x 4
    mean, w = knn.whitening
    white = lambda p: torch.mm(p.permute(0, 2, 3, 1).reshape(-1, 32) - mean, w).double()  # noqa: E731
    d = torch.cdist(knn.intensity.double(), white(pixel_patches(train)))
    assert float(d.amin(1).max()) < 1e-5 and len(torch.unique(d.argmin(1))) == 150
    # the statistics are those of each part's distances over the calibration images' valid positions
    with torch.no_grad():
        level0 = first_level(model, val)
    tex = torch.cdist(descriptors(level0, 3).permute(0, 2, 3, 1).reshape(-1, 4).double(), knn.memory.double())
    pix = torch.cdist(white(pixel_patches(val)), knn.intensity.double())
    for part, dist in (("texture", tex), ("intensity", pix)):
        want = dist.amin(1)
        assert knn.stats[part] == pytest.approx((float(want.mean()), float(want.std())), rel=1e-4)
    # with the intensity part the normal calibration images sit around 0 on the joined map (units of spread)
    assert abs(float(knn.distances(level0, val).mean())) < 2.0
    with pytest.raises(ValueError, match="intensity memory holds 32-value patches, the images give 16"):
        knn.distances(level0, val[:, :1])


def test_without_calibration_images_a_tenth_is_held_out_for_the_statistics():
    """A memory that holds every training patch puts the training images at distance 0: their spread cannot
    calibrate the intensity part, so fit holds out a seeded tenth of the images instead."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x = model_fixtures.images(10, 1, 32)
    knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=10_000, intensity_memory=10_000, coreset=1.0),
                       seed=3)
    assert knn.intensity.shape == (9 * 14 * 14, 16) and knn.memory.shape == (9 * 14 * 14, 4)  # one image held out
    assert all(sd > 1e-3 for _, sd in knn.stats.values())
    with pytest.raises(ValueError, match="needs at least 2 normal images"):
        PatchKnn.fit(model, x[:1], KnnSettings(window=3))


@pytest.mark.parametrize("kw,msg", [({"window": 4}, "knn_window=4: must be an odd positive integer"),
                                    ({"window": 0}, "knn_window=0"),
                                    ({"memory_size": 0}, "knn_memory=0: must be a positive integer"),
                                    ({"power": 0}, r"knn_power=0: must be in \(0, 4\]"),
                                    ({"power": -1.0}, "knn_power=-1.0"),
                                    ({"border": "same"}, "knn border='same': expected one of valid, cut"),
                                    ({"intensity_memory": -1}, "knn_intensity_memory=-1: must be a non-negative"),
                                    ({"intensity_whiten": 1}, "knn_intensity_whiten=1: must be True or False"),
                                    ({"relative_sigma": -1.0}, r"knn_relative_sigma=-1.0: must be in \[0, 64\]"),
                                    ({"relative_sigma": "4"}, "knn_relative_sigma='4'"),
                                    ({"relative_sigma": True}, "knn_relative_sigma=True")])
def test_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        KnnSettings(**kw)


@pytest.mark.parametrize("kw,msg", [({"knn_window": 4}, "knn_window=4: must be an odd positive integer"),
                                    ({"knn_power": 0.0}, r"knn_power=0.0: must be in \(0, 4\]"),
                                    ({"knn_intensity_memory": -1}, "knn_intensity_memory=-1: must be a non-negative"),
                                    ({"knn_memory": 0, "knn_window": 4}, "knn_window=4")])
def test_train_config_checks_the_knn_settings_when_it_is_made(kw, msg):
    """Not at the end of a training (where the trainer first builds them), and with --knn-memory 0 too."""
    from skipgan.train import TrainConfig

    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_knn_finds_a_smooth_blob_in_noise_that_the_error_map_misses():
    """The point of the map: normal = fine noise texture, abnormal = a flat grey disc. A reconstruction that is
    flat grey (what a short training gives) has *less* error on the disc than on the texture; the knn map,
    even with an untrained discriminator, puts the disc far from every normal descriptor."""
    model = model_fixtures.make(isize=32, nc=1, width=8)
    g = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 1, 32, 32, generator=g) * 2 - 1) * 0.8
    normal = (torch.rand(8, 1, 32, 32, generator=g) * 2 - 1) * 0.8
    abnormal = (torch.rand(8, 1, 32, 32, generator=g) * 2 - 1) * 0.8
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    abnormal[:, :, ((yy - 16) ** 2 + (xx - 16) ** 2) < 36] = 0.0
    knn = PatchKnn.fit(model, train, KnnSettings(window=3, memory_size=5000))
    test = torch.cat([normal, abnormal])
    kmap = knn.raw_maps(first_level(model, test), 32, test)
    flat_error = test.pow(2).mean(1)  # the error map of a flat-grey reconstruction
    st = MapSettings(sigma=1.0)
    s = Scores(torch.zeros(16), torch.zeros(16), torch.zeros(16), None, flat_error, kmap)
    by_knn, by_error = image_scores(s, "knn", st), image_scores(s, "max", st)
    assert by_knn[8:].min() > by_knn[:8].max()  # every disc above every normal
    assert by_error[8:].mean() < by_error[:8].mean() + 0.05  # the error map does not see it


# ------------------------------------------------------------------------------------------------ engine, files
@needs_ops
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("probes", [0, 2])
@pytest.mark.parametrize("relative", [0.0, 4.0])
def test_engine_knn_map_equals_the_eager_model(dtype, tol, probes, relative):
    from skipgan.engine import Screener
    from skipgan.engine.cpu import bf16_restriction

    if dtype == torch.bfloat16 and bf16_restriction():
        pytest.skip(f"no fast bf16: {bf16_restriction()}")

    model = model_fixtures.make(isize=32, nc=1, probes=probes, width=8)
    model.knn = PatchKnn.fit(model, model_fixtures.images(10, 1, 32, seed=3),
                             KnnSettings(window=5, memory_size=500, relative_sigma=relative))
    x = model_fixtures.images(5, 1, 32, seed=4)
    want = score_in_batches(model, x, with_error_map=True)
    sc = Screener.from_model(model, dtype=dtype, max_batch=3)  # two batches: 3 + 2
    got = sc.score(x, error_map=True)
    assert got.knn_map.shape == (5, 32, 32)
    torch.testing.assert_close(got.knn_map, want.knn_map, rtol=tol, atol=tol * float(want.knn_map.abs().max()))
    assert sc.score(x).knn_map is None  # no maps asked for: no knn work
    assert Screener.from_model(model, knn=None).score(x, error_map=True).knn_map is None


@needs_ops
@pytest.mark.cuda
def test_engine_knn_map_on_cuda_from_images_on_the_cpu():
    """The knn map reads the engine's device copy of x (its intensity part too), not the caller's tensor: CPU
    images into a CUDA engine give the eager model's map."""
    from skipgan.engine import Screener

    model = model_fixtures.make(isize=32, nc=1, width=8)
    model.knn = PatchKnn.fit(model, model_fixtures.images(10, 1, 32, seed=3),
                             KnnSettings(window=5, memory_size=500, relative_sigma=relative))
    x = model_fixtures.images(5, 1, 32, seed=4)
    want = score_in_batches(model, x, with_error_map=True)
    got = Screener.from_model(model, device="cuda", max_batch=3).score(x, error_map=True)
    torch.testing.assert_close(got.knn_map.cpu(), want.knn_map, rtol=1e-4, atol=1e-4 * float(want.knn_map.abs().max()))


def test_model_file_round_trip_and_files_without_memory(tmp_path):
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x = model_fixtures.images(4, 1, 32)
    model.knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=50, intensity_memory=60),
                             calibration=model_fixtures.images(2, 1, 32, seed=1))
    cal = {"threshold": 1.0, "val_stats": {}}
    save_model(tmp_path / "m.safetensors", model, cal)
    loaded, meta = load_model(tmp_path / "m.safetensors")
    assert torch.equal(loaded.knn.memory, model.knn.memory) and loaded.knn.settings == model.knn.settings
    assert torch.equal(loaded.knn.intensity, model.knn.intensity) and loaded.knn.stats == model.knn.stats
    assert all(torch.equal(a, b) for a, b in zip(loaded.knn.whitening, model.knn.whitening))
    assert {k: v for k, v in meta["knn"].items() if k != "stats"} == {
        "window": 3, "memory_size": 50, "power": 0.5, "border": "valid", "intensity_memory": 60, "coreset": 0.1,
        "intensity_whiten": True, "relative_sigma": 0.0}
    with torch.no_grad():
        torch.testing.assert_close(loaded.knn.distances(first_level(model, x), x),
                                   model.knn.distances(first_level(model, x), x))
    model.knn = None
    save_model(tmp_path / "plain.safetensors", model, cal)
    tensors, _ = load_tensors(tmp_path / "plain.safetensors")
    assert KNN_MEMORY not in tensors and KNN_INTENSITY not in tensors
    assert load_model(tmp_path / "plain.safetensors")[0].knn is None
    with pytest.raises(InputError, match="--aggregation knn: m.safetensors holds no calibration for it"):
        scoring_choice({"calibration": cal, "calibrations": {"mean": cal}}, "knn", "m.safetensors")


def test_files_from_before_the_power_setting_keep_their_descriptor(tmp_path):
    """Files written before `power`, `border` and the intensity part existed stored {"window", "memory_size"} and
    a memory of energy averages (power 1) over windows cut at the border: they must go on computing those, not the
    descriptors of the new defaults."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x = model_fixtures.images(4, 1, 32)
    model.knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=50, power=1.0, border="cut",
                                                   intensity_memory=0, coreset=1.0))
    save_model(tmp_path / "m.safetensors", model, {"threshold": 1.0, "val_stats": {}})
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    meta["knn"] = {"window": 3, "memory_size": 50}  # what such a file holds
    save_tensors(tmp_path / "old.safetensors", tensors, meta)
    old, _ = load_model(tmp_path / "old.safetensors")
    assert old.knn.settings == KnnSettings(window=3, memory_size=50, power=1.0, border="cut", intensity_memory=0,
                                           coreset=1.0, intensity_whiten=False)
    assert old.knn.intensity is None and old.knn.stats == {}
    with torch.no_grad():
        torch.testing.assert_close(old.knn.distances(first_level(model, x)), model.knn.distances(first_level(model, x)))


def test_files_from_before_whitening_keep_their_raw_pixel_patches(tmp_path):
    """Files written before the intensity part was whitened hold raw patches and no whitening tensors: they go on
    scoring by the Euclidean distance of raw patches. A file whose settings whiten but whose tensors are missing is
    refused with one line naming it."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x, val = model_fixtures.images(4, 1, 32), model_fixtures.images(2, 1, 32, seed=1)
    model.knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=50, intensity_memory=60,
                                                   intensity_whiten=False), calibration=val)
    assert model.knn.whitening is None
    save_model(tmp_path / "m.safetensors", model, {"threshold": 1.0, "val_stats": {}})
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    assert not any(k.startswith("knn_intensity_") and k != KNN_INTENSITY for k in tensors)
    del meta["knn"]["intensity_whiten"]  # what such a file holds
    save_tensors(tmp_path / "old.safetensors", tensors, meta)
    old, _ = load_model(tmp_path / "old.safetensors")
    assert old.knn.settings.intensity_whiten is False and old.knn.whitening is None
    with torch.no_grad():
        torch.testing.assert_close(old.knn.distances(first_level(model, x), x), model.knn.distances(first_level(model, x), x))
    meta["knn"]["intensity_whiten"] = True
    save_tensors(tmp_path / "torn.safetensors", tensors, meta)
    with pytest.raises(InputError, match=r"torn.safetensors: .*comes with its whitening"):
        load_model(tmp_path / "torn.safetensors")
    save_tensors(tmp_path / "half.safetensors", {**tensors, "knn_intensity_mean": torch.zeros(16)}, meta)
    with pytest.raises(InputError, match=r"half.safetensors: .*needs both knn_intensity_mean and "
                                         r"knn_intensity_whitening"):
        load_model(tmp_path / "half.safetensors")


def test_whitening_gives_normal_patches_identity_covariance():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(5000, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0  # correlated, off-centre
    mean, w = whitening(rows, ridge=0.0)
    white = torch.mm(rows - mean, w).double()
    torch.testing.assert_close(white.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(white.T), torch.eye(6, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(w, w.T)
    # the ridge bounds a direction without variation (a constant value in every patch) instead of dividing by zero
    flat = torch.cat([rows, torch.full((5000, 1), 0.5)], 1)
    mean, w = whitening(flat)
    assert torch.isfinite(w).all()
    assert float(w[-1, -1]) == pytest.approx((WHITEN_RIDGE * float(torch.cov(flat.T).diagonal().mean())) ** -0.5,
                                             rel=1e-3)
    mean, w = whitening(torch.ones(10, 3))  # constant patches: distances as they are
    assert torch.equal(w, torch.eye(3))
    with pytest.raises(ValueError, match=r"whitening must be \[16\] and \[16, 16\]"):
        PatchKnn(torch.ones(3, 4), KnnSettings(), torch.ones(5, 16), {"texture": (0, 1), "intensity": (0, 1)},
                 whitening=(torch.zeros(16), torch.eye(15)))
    with pytest.raises(ValueError, match="comes with its whitening"):
        PatchKnn(torch.ones(3, 4), KnnSettings(), torch.ones(5, 16), {"texture": (0, 1), "intensity": (0, 1)})


def test_calibration_gives_the_knn_map_its_own_statistics():
    g = torch.Generator().manual_seed(0)
    err, knn = torch.rand(12, 16, 16, generator=g), 5 + 3 * torch.rand(12, 16, 16, generator=g)
    st, cals = calibrate_maps(err, torch.rand(12, generator=g), MapSettings(sigma=1.0), 0.1, knn)
    assert set(cals) == {"mean", "max", "topk", "knn"}
    assert st.knn_threshold == cals["knn"]["threshold"] and st.knn_mean > 4 and st.knn_std > 0
    s = Scores(torch.zeros(12), torch.zeros(12), torch.zeros(12), None, err, knn)
    km = model_maps(s, "knn", st)
    inner = km.reshape(-1)
    assert abs(inner.mean()) < 1e-4 and abs(inner.std() - 1) < 1e-3  # normalised by its own μ, σ
    assert (image_scores(s, "knn", st) > st.knn_threshold).mean() <= 0.1
    with pytest.raises(ValueError, match="the knn maps are missing"):
        image_scores(Scores(s.score, s.pixel, s.feature, None, err), "knn", st)


# ------------------------------------------------------------------------------------------------ command line


def _texture_dataset(root, n_train=24, size=32):
    """Normals: fine noise; abnormal: a flat grey disc in it (mask beside it)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]

    def normal():
        return rng.integers(40, 216, (size, size)).astype(np.uint8)

    def defect(i):
        img, disc = normal(), (yy - 16) ** 2 + (xx - 10 - 3 * i) ** 2 < 30
        img[disc] = 128
        return img, disc.astype(np.uint8) * 255

    return write_masked_set(root, normal, defect, n_train)


@pytest.fixture(scope="module")
def knn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("knn")
    return train_run(tmp, _texture_dataset(tmp / "data"), "--aggregation", "knn", "--knn-window", "3",
                     "--knn-memory", "2000")


def test_train_with_knn_records_memory_calibration_and_pixel_metrics(knn_run):
    data, out = knn_run
    model, meta = load_model(out / "model.safetensors")
    assert meta["aggregation"] == "knn" and meta["calibration"] == meta["calibrations"]["knn"]
    assert set(meta["calibrations"]) == {"mean", "max", "topk", "knn"}
    assert {k: v for k, v in meta["knn"].items() if k != "stats"} == {
        "window": 3, "memory_size": 2000, "power": 0.5, "border": "valid", "intensity_memory": 30000, "coreset": 0.1,
        "intensity_whiten": True, "relative_sigma": 0.0}
    # the default coreset keeps a tenth of each draw (the draw: min(2000, all positions) texture descriptors)
    assert model.knn.memory.shape == (200, 4) and set(model.knn.stats) == {"texture", "intensity"}
    # fewer inner 4 x 4 patches than the intensity memory holds: all of them are drawn (the training share, 14 x 14
    # each), and the coreset keeps a tenth of those (rounded up)
    n = model.knn.intensity.shape[0]
    assert model.knn.intensity.shape[1] == 16 and any(n == -(-196 * k // 10) for k in range(1, 100))
    am = meta["anomaly_map"]
    assert am["knn_threshold"] == meta["calibrations"]["knn"]["threshold"] and am["knn_std"] > 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["auroc_by_aggregation"]) == {"mean", "max", "topk", "knn"}
    assert m["auroc"] == pytest.approx(m["auroc_by_aggregation"]["knn"])
    assert set(m["pixel_by_map"]) == {"error", "knn"}
    assert m["pixel_auroc"] == m["pixel_by_map"]["knn"]["pixel_auroc"]  # the model's own map at the top level
    assert m["auroc_by_aggregation"]["knn"] == 1.0  # flat discs in noise: the knn map cannot miss them


def test_score_by_knn_equals_evaluation_and_writes_knn_overlays(knn_run, tmp_path, capsys):
    data, out = knn_run
    maps = tmp_path / "maps"
    assert main(["score", str(out / "model.safetensors"), str(data / "test/abnormal"), str(data / "test/normal"),
                 "--device", "cpu", "--maps", str(maps), "--raw-maps", "npy"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [ln["verdict"] for ln in lines[:4]] == ["abnormal"] * 4
    model, meta = load_model(out / "model.safetensors")
    # the raw map written is the knn map (normalised), brightest inside the disc
    raw = np.load(maps / "abnormal" / "a0.png.map.npy")
    yy, xx = np.mgrid[0:32, 0:32]
    assert raw[(yy - 16) ** 2 + (xx - 10) ** 2 < 30].mean() > raw.mean() + 1.0
    # the eager engine scores the same
    assert main(["score", str(out / "model.safetensors"), str(data / "test/abnormal"), "--device", "cpu",
                 "--engine", "eager"]) == 0
    eager = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(eager, [ln["score"] for ln in lines[:4]], rtol=1e-4)


def test_knn_flag_errors(tmp_path, capsys):
    assert main(["train", "--knn-window", "4", "--data", "digits", "--out", str(tmp_path / "r"), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knn-window 4: must be an odd positive integer" in err
    assert main(["train", "--knn-power", "0", "--data", "digits", "--out", str(tmp_path / "r"), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knn-power 0.0: must be in (0, 4]" in err
    assert main(["train", "--knn-window", "17", "--data", "digits", "--out", str(tmp_path / "r"), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knn-window 17: must be at most 16 at isize 32" in err
    assert main(["train", "--knn-intensity-memory", "-1", "--data", "digits", "--out", str(tmp_path / "r"),
                 *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knn-intensity-memory -1: must be a non-negative integer" in err
    assert main(["train", "--knn-relative-sigma", "-2", "--data", "digits", "--out", str(tmp_path / "r"),
                 *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knn-relative-sigma -2.0: must be in [0, 64] pixels" in err
    assert main(["train", "--aggregation", "knn", "--knn-memory", "0", "--data", "digits", "--out",
                 str(tmp_path / "r"), *TINY_TRAIN]) == 2
    assert "--aggregation 'knn': must be 'mean', 'max' or 'topk' with --knn-memory 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_knn_border_and_intensity_flags_reach_the_model_file(tmp_path):
    """The earlier defaults stay one flag away: windows cut at the border, no intensity part."""
    data = _texture_dataset(tmp_path / "data", n_train=8)
    assert main(["train", "--data", f"folder:{data}", "--out", str(tmp_path / "r"), "--knn-border", "cut",
                 "--knn-intensity-memory", "0", "--knn-window", "3", "--val-fraction", "0.25", *TINY_TRAIN]) == 0
    model, meta = load_model(tmp_path / "r" / "model.safetensors")
    assert model.knn.settings == KnnSettings(window=3, border="cut", intensity_memory=0)
    assert model.knn.intensity is None and "stats" not in meta["knn"]
    assert main(["train", "--data", f"folder:{data}", "--out", str(tmp_path / "rel"), "--knn-relative-sigma", "4",
                 "--val-fraction", "0.25", *TINY_TRAIN]) == 0
    model, meta = load_model(tmp_path / "rel" / "model.safetensors")
    assert model.knn.settings == KnnSettings(relative_sigma=4.0) and meta["knn"]["relative_sigma"] == 4.0


def test_knn_memory_zero_trains_without_a_knn_map(tmp_path):
    data = _texture_dataset(tmp_path / "data", n_train=8)
    assert main(["train", "--data", f"folder:{data}", "--out", str(tmp_path / "r"), "--knn-memory", "0",
                 "--val-fraction", "0.25", *TINY_TRAIN]) == 0
    model, meta = load_model(tmp_path / "r" / "model.safetensors")
    assert model.knn is None and "knn" not in meta["calibrations"] and "knn" not in meta


def test_knn_refit_with_the_runs_settings_is_the_memory_the_trainer_fitted(knn_run):
    """`refit_knn` (local_defects.py `knn`: settings chosen on the development split) must score what training with
    those settings would: with the run's own settings and seed its re-fitted memory, and so its metrics, are the
    run's."""
    from sklearn.metrics import roc_auc_score

    from skipgan.anomaly_map import kind_maps
    from skipgan.data.datasets import load_splits
    from skipgan.engine import Screener
    from skipgan.metrics import pixel_metrics
    from skipgan.train.knn_refit import refit_knn

    data, out = knn_run
    model, meta = load_model(out / "model.safetensors")
    trained = model.knn
    s = load_splits(f"folder:{data}", isize=meta["architecture"]["isize"], channels=1)
    refit_knn(model, meta, s.train, KnnSettings(window=3, memory_size=2000), seed=0)
    assert model.knn.settings == trained.settings
    assert torch.equal(model.knn.memory, trained.memory) and torch.equal(model.knn.intensity, trained.intensity)
    st = MapSettings.from_meta(meta)
    res = Screener.from_model(model, max_batch=64).score(s.test, error_map=True)
    maps = kind_maps(res, "knn", st)
    m = json.loads((out / "metrics.json").read_text())
    assert roc_auc_score(s.test_labels.numpy(), image_scores(res, "knn", st, maps)) == pytest.approx(
        m["auroc_by_aggregation"]["knn"])
    pm = pixel_metrics(maps, s.test_masks.numpy())
    assert pm["pixel_auroc"] == pytest.approx(m["pixel_by_map"]["knn"]["pixel_auroc"], abs=1e-4)
    assert pm["pro"] == pytest.approx(m["pixel_by_map"]["knn"]["pro"], abs=1e-4)
    # other settings give another memory: the energy itself (power 1) over 5 x 5 cells
    refit_knn(model, meta, s.train, KnnSettings(window=5, memory_size=2000, power=1.0, intensity_memory=0), seed=0)
    assert model.knn.settings == KnnSettings(window=5, memory_size=2000, power=1.0, border="valid", intensity_memory=0)
    assert model.knn.intensity is None and not torch.equal(model.knn.memory, trained.memory)


def test_greedy_coreset_keeps_the_rows_that_cover_the_draw():
    """k-centre greedy: the share asked for, each kept row the farthest from those before it, every dropped row
    within the last pick's distance of a kept one; share 1 keeps the draw as it is; seeded."""
    from skipgan.model.patch_knn import greedy_coreset

    rows = torch.rand(500, 8, generator=torch.Generator().manual_seed(0))
    kept = greedy_coreset(rows, 0.1, torch.Generator().manual_seed(1))
    assert kept.shape == (50, 8)
    assert torch.equal(kept, greedy_coreset(rows, 0.1, torch.Generator().manual_seed(1)))
    d = torch.cdist(rows.double(), kept.double())
    radius = float(torch.cdist(kept[-1:].double(), kept[:-1].double()).min())  # the last pick's distance to the rest
    assert float(d.amin(1).max()) <= radius + 1e-6
    # each pick is a row of the draw, none twice
    assert len({tuple(r.tolist()) for r in kept}) == 50 and bool((kept[:, None] == rows[None]).all(2).any(1).all())
    assert greedy_coreset(rows, 1.0, torch.Generator()) is rows
    assert greedy_coreset(rows, 1e-9, torch.Generator()).shape == (1, 8)


def test_fit_with_a_coreset_keeps_that_share_of_each_memory():
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x = model_fixtures.images(6, 1, 32)
    knn = PatchKnn.fit(model, x, KnnSettings(window=3, memory_size=200, intensity_memory=300, coreset=0.25))
    assert knn.memory.shape[0] == 50 and knn.intensity.shape[0] == 75
    with pytest.raises(ValueError, match="knn_coreset=0: must be in"):
        KnnSettings(coreset=0)


@pytest.mark.parametrize("relative", [0.0, 2.0])
def test_whitened_intensity_part_stays_fp32_under_autocast(relative):
    """A bf16-AMP training scores its validation normals' knn maps inside an autocast region: the whitening product
    and the local mean's convolution must not come out in bf16 (the native search takes fp32, and bf16 would move
    the distances); the memory fitted inside one is the one fitted outside."""
    model = model_fixtures.make(isize=32, nc=1, width=4)
    x, val = model_fixtures.images(4, 1, 32), model_fixtures.images(2, 1, 32, seed=1)
    st = KnnSettings(window=3, memory_size=50, intensity_memory=60, relative_sigma=relative)
    knn = PatchKnn.fit(model, x, st, calibration=val)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = PatchKnn.fit(model, x, st, calibration=val)
    assert torch.equal(amp.intensity, knn.intensity)
    with torch.no_grad():
        level0 = first_level(model, x)
        want = knn.module().parts(level0, x)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = knn.module().parts(level0, x)[1]
    assert got.dtype == torch.float32 and torch.equal(got, want)
