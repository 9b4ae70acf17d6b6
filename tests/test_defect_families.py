"""The test-only defect families B, C, D (skipgan/data/defect_families.py): layout, masks, bit depths,
determinism, that load_splits reads them, and that each defect is what it claims to be. Tiny sets only."""

import hashlib

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from skipgan.data import defect_families as df
from skipgan.data.datasets import load_splits

N_TRAIN, N_NORMAL, N_DEFECT = 4, 2, 2


def _write(root, family, seed=0):
    return df.write_family(family, root / family, seed=seed, n_train=N_TRAIN, n_test_normal=N_NORMAL,
                           n_per_defect=N_DEFECT)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: _write(root, family) for family in df.FAMILIES}


def _hashes(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("family", sorted(df.FAMILIES))
def test_layout_counts_and_masks(written, family):
    roots = written[family]
    assert [r.name for r in roots] == list(df.FAMILIES[family])
    for root in roots:
        kinds = df.FAMILIES[family][root.name]
        assert _names(root) == ["ground_truth", "test", "train"]
        assert _names(root / "train") == ["good"]
        assert _names(root / "train/good") == [f"{i:03d}.png" for i in range(N_TRAIN)]
        assert _names(root / "test/good") == [f"{i:03d}.png" for i in range(N_NORMAL)]
        assert _names(root / "test") == sorted(("good",) + kinds)
        assert _names(root / "ground_truth") == sorted(kinds)  # normal images have no masks
        for kind in kinds:
            assert _names(root / "test" / kind) == [f"{i:03d}.png" for i in range(N_DEFECT)]
            assert _names(root / "ground_truth" / kind) == [f"{i:03d}_mask.png" for i in range(N_DEFECT)]
            for i in range(N_DEFECT):
                img = Image.open(root / "test" / kind / f"{i:03d}.png")
                mask = Image.open(root / "ground_truth" / kind / f"{i:03d}_mask.png")
                assert mask.mode == "L" and mask.size == img.size == (df.PATCH, df.PATCH)
                m = np.asarray(mask)
                assert set(np.unique(m)) == {0, 255}  # binary and non-empty (and not everything)


@pytest.mark.parametrize("family", sorted(df.FAMILIES))
def test_bit_depth(written, family):
    for root in written[family]:
        for p in sorted(root.glob("t*/*/*.png")):
            img = Image.open(p)
            if family == "D":
                assert img.mode == "RGB"
            else:
                assert img.mode == "I;16", p
                v = np.asarray(img).astype(np.int64)
                assert (v % 257 != 0).mean() > 0.9, p  # genuine 16-bit values, not 8-bit ones scaled up


@pytest.mark.parametrize("family", sorted(df.FAMILIES))
def test_deterministic_per_seed(written, tmp_path, family):
    again = _write(tmp_path / "again", family, seed=0)
    other = _write(tmp_path / "other", family, seed=1)
    for first, same, diff in zip(written[family], again, other):
        h = _hashes(first)
        assert h == _hashes(same)
        hd = _hashes(diff)
        assert hd.keys() == h.keys()
        assert all(hd[k] != h[k] for k in h if k.parts[0] != "ground_truth")  # every image differs


@pytest.mark.parametrize("family", sorted(df.FAMILIES))
def test_load_splits_reads_every_category_with_masks(written, family):
    channels = 3 if family == "D" else 1
    for root in written[family]:
        n_abnormal = N_DEFECT * len(df.FAMILIES[family][root.name])
        s = load_splits(f"folder:{root}", isize=64, channels=channels)
        assert tuple(s.train.shape) == (N_TRAIN, channels, 64, 64)
        assert s.test_labels.tolist() == [0] * N_NORMAL + [1] * n_abnormal
        assert s.test_masks is not None, s.mask_note
        per_image = s.test_masks.flatten(1).sum(1)
        assert (per_image[:N_NORMAL] == 0).all() and (per_image[N_NORMAL:] > 0).all()


def test_written_images_are_the_samples(written):
    """What the tests below check on _samples() is what write_family wrote."""
    for family, category in (("B", "clouds"), ("C", "tiles"), ("D", "fundus")):
        root = written[family][list(df.FAMILIES[family]).index(category)]
        for rel, img, mask, _ in df._samples(family, category, 0, N_TRAIN, N_NORMAL, N_DEFECT):
            stored = np.asarray(Image.open(root / rel))
            if family == "D":
                np.testing.assert_array_equal(stored, img)
            else:
                np.testing.assert_allclose(stored / 65535.0 * 255.0, np.clip(img, 0, 255), atol=0.5 / 257)


def _abnormal(family, category, n):
    return [(rel, img, mask, base) for rel, img, mask, base in df._samples(family, category, 0, 0, 0, n)]


@pytest.mark.parametrize("category", list(df.FAMILIES["B"]))
def test_b_pasted_texture_matches_mean_and_std(category):
    for _, img, mask, base in _abnormal("B", category, 8):
        np.testing.assert_array_equal(img[~mask], base[~mask])
        # matched to the base pixels it replaced (see _paste: local statistics, because clouds are not stationary)
        pasted, replaced = img[mask], base[mask]
        assert abs(pasted.mean() - replaced.mean()) <= 0.15 * replaced.mean()
        assert abs(pasted.std() - replaced.std()) <= 0.15 * replaced.std()
        assert not np.allclose(pasted, replaced)  # another texture, not the same one
        assert 0.04 <= mask.mean() <= 0.20


@pytest.mark.parametrize("category", list(df.FAMILIES["C"]))
def test_c_defects_change_pixels_only_in_their_mask(category):
    for rel, img, mask, base in _abnormal("C", category, 3):
        near = ndimage.binary_dilation(mask, np.ones((3, 3), bool))
        np.testing.assert_array_equal(img[~near], base[~near], err_msg=rel)
        lo, hi = np.percentile(base, [1, 99])
        change = np.abs(img - base)[mask].mean() / (hi - lo)
        if rel.split("/")[1] in ("crack", "scratch"):  # low contrast: 10-30 % of the patch's range
            assert 0.09 <= change <= 0.31, rel
        else:
            assert change >= df.C_MIN_CHANGE, rel


@pytest.mark.parametrize("category", list(df.FAMILIES["D"]))
def test_d_stain_keeps_luma_and_shifts_chroma(category):
    for rel, img, mask, base in _abnormal("D", category, 6):
        assert img.dtype == base.dtype == np.uint8
        d = df.to_ycbcr(img.astype(np.float64))[mask] - df.to_ycbcr(base.astype(np.float64))[mask]
        assert abs(d[:, 0].mean()) < 2.0, rel
        assert np.hypot(d[:, 1].mean(), d[:, 2].mean()) > 8.0, rel
        assert 0.01 <= mask.mean() <= 0.08
        # outside the mask: at most the soft edge's weaker half
        far = ~ndimage.binary_dilation(mask, np.ones((5, 5), bool))
        np.testing.assert_array_equal(img[far], base[far])


def test_train_and_test_columns_are_disjoint():
    for family, cats in df.FAMILIES.items():
        for category in cats:
            src = df._source(family, category, np.random.default_rng(0))
            assert src.train_cols[1] <= src.test_cols[0]
            assert src.test_cols[1] <= src.img.shape[1]
            assert min(np.diff(src.train_cols)[0], np.diff(src.test_cols)[0]) >= src.size


def test_unknown_family_and_stray_files(tmp_path):
    with pytest.raises(ValueError, match="'E'.*B, C, D"):
        df.write_family("E", tmp_path)
    roots = _write(tmp_path, "B")
    before = _hashes(roots[0])
    assert _write(tmp_path, "B") == roots and _hashes(roots[0]) == before  # the same set again: overwritten
    with pytest.raises(ValueError, match="not part of this set"):  # a smaller set would leave files behind
        df.write_family("B", tmp_path / "B", n_train=1, n_test_normal=N_NORMAL, n_per_defect=N_DEFECT)
    (roots[1] / "test" / "good" / "old.png").write_bytes(b"")
    with pytest.raises(ValueError, match="old.png"):
        _write(tmp_path, "B")
