"""Ground-truth masks in folder data sets (skipgan.data.masks via load_splits)."""

import numpy as np
import pytest

from data_fixtures import gray8, make_folder_dataset, write_png
from skipgan.data.datasets import load_splits
from skipgan.errors import InputError


def _skipgan_set(root, n_abn=2, size=(40, 40)):
    for i in range(3):
        write_png(root / "train/normal" / f"n{i}.png", gray8(*size, seed=i))
    write_png(root / "test/normal/t0.png", gray8(*size, seed=10))
    for i in range(n_abn):
        write_png(root / "test/abnormal" / f"a{i}.png", gray8(*size, seed=20 + i))
    return root


def _mask(size, box):
    m = np.zeros(size, np.uint8)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = 255
    return m


def test_skipgan_layout_masks_resized_to_isize(tmp_path):
    root = _skipgan_set(tmp_path / "d")
    write_png(root / "test/abnormal_mask/a0.png", _mask((40, 40), (0, 20, 0, 20)))  # top-left quarter
    write_png(root / "test/abnormal_mask/a1.png", _mask((40, 40), (20, 40, 20, 40)))  # bottom-right quarter
    s = load_splits(f"folder:{root}", isize=32)
    assert s.test_masks is not None and s.test_masks.shape == (3, 32, 32)
    assert s.test_masks[0].sum() == 0  # the normal test image
    assert s.test_masks[1, :16, :16].all() and s.test_masks[1].sum() == 256
    assert s.test_masks[2, 16:, 16:].all() and s.test_masks[2].sum() == 256
    assert "masks for all 2 abnormal images" in s.description
    assert not any("abnormal_mask" in n for n in s.test_names)


def test_mvtec_layout_masks(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "mvtec", n_train=3, n_test=1, n_abn=1, size=(32, 32))
    # the fixture wrote ground_truth/crack/img000_mask.png (all zero); add the scratch one, non-zero
    write_png(root / "ground_truth/scratch/img000_mask.png", _mask((32, 32), (4, 8, 4, 12)))
    s = load_splits(f"folder:{root}", isize=32)
    assert s.test_masks is not None
    assert s.test_names[-1].endswith("scratch/img000.png") and s.test_masks[-1].sum() == 32
    assert s.test_masks[:-1].sum() == 0


def test_no_masks_gives_none_and_no_note(tmp_path):
    s = load_splits(f"folder:{_skipgan_set(tmp_path / 'd')}", isize=32)
    assert s.test_masks is None and s.mask_note == ""


def test_some_masks_missing_skips_pixel_metrics_with_a_note(tmp_path):
    root = _skipgan_set(tmp_path / "d")
    write_png(root / "test/abnormal_mask/a0.png", _mask((40, 40), (0, 5, 0, 5)))
    s = load_splits(f"folder:{root}", isize=32)
    assert s.test_masks is None
    assert "1 of 2 abnormal test images have no mask" in s.mask_note and "a1.png" in s.mask_note


def test_mask_matching_no_image_is_an_error_naming_it(tmp_path):
    root = _skipgan_set(tmp_path / "d")
    write_png(root / "test/abnormal_mask/zz.png", _mask((40, 40), (0, 5, 0, 5)))
    with pytest.raises(InputError, match=r"zz\.png: mask matches no abnormal test image"):
        load_splits(f"folder:{root}", isize=32)


def test_mask_of_wrong_size_is_an_error_naming_it(tmp_path):
    root = _skipgan_set(tmp_path / "d")
    write_png(root / "test/abnormal_mask/a0.png", _mask((40, 30), (0, 5, 0, 5)))
    with pytest.raises(InputError, match=r"a0\.png: mask is 30x40 but its image .*a0\.png is 40x40"):
        load_splits(f"folder:{root}", isize=32)


def test_mvtec_mask_without_suffix_is_an_error(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "mvtec", n_train=3, n_test=1, n_abn=1, size=(32, 32))
    write_png(root / "ground_truth/scratch/img000.png", _mask((32, 32), (4, 8, 4, 12)))
    with pytest.raises(InputError, match=r"img000\.png: an MVTec AD mask must be named"):
        load_splits(f"folder:{root}", isize=32)
