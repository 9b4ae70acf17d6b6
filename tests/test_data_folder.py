"""folder:PATH datasets: the three layouts, channels, bad inputs, --skip-bad."""

import numpy as np
import pytest
import torch

from skipgan.data import load_splits
from skipgan.errors import BadImageError, InputError

try:
    from data_fixtures import gray8, make_folder_dataset, rgb8, truncate, write_pil, write_png, write_tiff
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import gray8, make_folder_dataset, rgb8, truncate, write_pil, write_png, write_tiff


def _check(s, n_train, n_test_normal, n_abn, c, isize):
    assert s.train.shape == (n_train, c, isize, isize) and s.train.dtype == torch.float32
    assert s.test.shape == (n_test_normal + n_abn, c, isize, isize)
    assert s.test_labels.dtype == torch.int64
    assert s.test_labels.tolist() == [0] * n_test_normal + [1] * n_abn
    assert len(s.test_names) == n_test_normal + n_abn
    assert s.channels == c and s.isize == isize and s.skipped == 0
    assert s.train.min() >= -1 and s.train.max() <= 1
    assert s.description


def test_layout_skipgan(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan", n_train=3, n_test=2, n_abn=2)
    s = load_splits(f"folder:{root}", isize=32)
    _check(s, 3, 2, 2, 1, 32)
    assert s.test_names[0].endswith("test/normal/img000.png")
    assert s.test_names[-1].endswith("test/abnormal/img001.png")
    assert "skipgan layout" in s.description


def test_layout_official(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "official", n_train=4, n_test=1, n_abn=3, rgb=True)
    s = load_splits(f"folder:{root}", isize=32)
    _check(s, 4, 1, 3, 3, 32)
    assert "1.abnormal" in s.test_names[-1]


def test_layout_mvtec_ignores_ground_truth(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "mvtec", n_train=3, n_test=2, n_abn=2, rgb=True)
    s = load_splits(f"folder:{root}", isize=32)
    _check(s, 3, 2, 4, 3, 32)  # two defect folders x 2 images
    assert not any("ground_truth" in n for n in s.test_names)
    assert "/crack/" in s.test_names[2] and "/scratch/" in s.test_names[-1]
    assert "2 defect folders" in s.description


def test_values_match_images_and_sorted_order(tmp_path):
    root = tmp_path / "d"
    for name in ["b.png", "a.PNG", "c.png"]:
        write_png(root / "train/normal" / name, np.full((32, 32), {"a.PNG": 0, "b.png": 255, "c.png": 51}[name], np.uint8))
    (root / "train/normal/notes.txt").write_text("ignored")
    (root / "train/normal/.hidden.png").write_bytes(b"ignored")
    write_png(root / "test/normal/x.png", gray8(32, 32))
    write_png(root / "test/abnormal/y.png", gray8(32, 32))
    s = load_splits(f"folder:{root}", isize=32)
    assert s.train.shape[0] == 3
    assert torch.allclose(s.train[:, 0, 0, 0], torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))


def test_mixed_extensions_and_16bit_tiff(tmp_path):
    root = tmp_path / "d"
    write_tiff(root / "train/normal/a.tif", np.full((6, 6), 1000, np.uint16))
    write_tiff(root / "train/normal/b.TIFF", np.full((6, 6), 1001, np.uint16))
    write_pil(root / "test/normal/c.jpg", gray8(6, 6))
    write_pil(root / "test/abnormal/d.bmp", gray8(6, 6))
    s = load_splits(f"folder:{root}", isize=32)
    assert s.train[0, 0, 0, 0] < s.train[1, 0, 0, 0]


def test_dual_channel_tiff_folder(tmp_path):
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    for sub, n in (("train/normal", 3), ("test/normal", 1), ("test/abnormal", 1)):
        for i in range(n):
            write_tiff(root / sub / f"{i}.tif", rng.integers(0, 65536, (2, 12, 12), dtype=np.uint16))
    s = load_splits(f"folder:{root}", isize=32)
    _check(s, 3, 1, 1, 2, 32)


def test_channels_given_converts(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan")
    write_png(root / "train/normal/zz_rgb.png", rgb8())  # mixed 1 and 3 channels
    s = load_splits(f"folder:{root}", isize=32, channels=3)
    assert s.channels == 3 and s.train.shape == (4, 3, 32, 32)
    s = load_splits(f"folder:{root}", isize=32, channels=1)
    assert s.channels == 1 and s.train.shape == (4, 1, 32, 32)


# ----------------------------------------------------------------------------------------------- bad inputs


def test_mixed_channels_without_flag_names_file(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan")
    bad = write_png(root / "test/normal/zz_rgb.png", rgb8())
    with pytest.raises(InputError) as ei:
        load_splits(f"folder:{root}", isize=32)
    msg = str(ei.value)
    assert str(bad) in msg and "--channels" in msg and "\n" not in msg


def test_incompatible_channels_flag_names_file(tmp_path):
    root = tmp_path / "d"
    for sub in ("train/normal", "test/normal", "test/abnormal"):
        write_tiff(root / sub / "a.tif", np.zeros((2, 12, 12), np.uint16))
    with pytest.raises(InputError, match=r"train/normal/a.tif.*--channels 3"):
        load_splits(f"folder:{root}", isize=32, channels=3)


def test_empty_folder(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan", n_abn=0)
    (root / "test/abnormal").mkdir(parents=True, exist_ok=True)
    with pytest.raises(InputError, match=r"test/abnormal: no images"):
        load_splits(f"folder:{root}")


def test_unknown_layout(tmp_path):
    (tmp_path / "d/stuff").mkdir(parents=True)
    with pytest.raises(InputError) as ei:
        load_splits(f"folder:{tmp_path / 'd'}")
    msg = str(ei.value)
    assert "unknown folder layout" in msg and "train/good" in msg and "0.normal" in msg and "\n" not in msg


def test_partial_layout_names_missing_folder(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "official")
    import shutil

    shutil.rmtree(root / "test/1.abnormal")
    with pytest.raises(InputError, match=r"test/1.abnormal: missing folder"):
        load_splits(f"folder:{root}")


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="nowhere"):
        load_splits(f"folder:{tmp_path / 'nowhere'}")


def test_corrupt_image_raises_then_skip_bad_counts(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan", n_train=4, n_test=2, n_abn=2, size=(32, 32))
    bad1 = truncate(root / "train/normal/img001.png", 0.5)
    (root / "test/abnormal/img000.png").write_bytes(b"garbage")
    with pytest.raises(InputError) as ei:
        load_splits(f"folder:{root}", isize=32)
    assert str(bad1) in str(ei.value) and "--skip-bad" in str(ei.value)
    s = load_splits(f"folder:{root}", isize=32, skip_bad=True)
    assert s.skipped == 2
    assert s.train.shape[0] == 3 and s.test.shape[0] == 3
    assert s.test_labels.tolist() == [0, 0, 1]
    assert not any("abnormal/img000" in n for n in s.test_names)
    assert "2 skipped" in s.description


def test_skip_bad_skips_every_kind_of_bad_image(tmp_path):
    """Not only corrupt files: float values outside [0, 1], an image over a cap, a PGM whose header lies."""
    root = make_folder_dataset(tmp_path / "d", "skipgan", n_train=5, n_test=2, n_abn=2, size=(32, 32))
    write_tiff(root / "train/normal/z_float.tif", np.full((32, 32), 5.0, np.float32))
    (root / "train/normal/z_huge.pgm").write_bytes(b"P5\n60000 60000\n255\n" + bytes(10))
    (root / "train/normal/z_short.pgm").write_bytes(b"P5\n32 32\n255\n" + bytes(10))
    with pytest.raises(BadImageError, match="z_float.tif: float image values span"):
        load_splits(f"folder:{root}", isize=32)
    s = load_splits(f"folder:{root}", isize=32, skip_bad=True)
    assert s.skipped == 3 and s.train.shape[0] == 5


def test_skip_bad_whole_folder_unreadable(tmp_path):
    root = make_folder_dataset(tmp_path / "d", "skipgan", n_abn=1)
    (root / "test/abnormal/img000.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="test/abnormal: every image was unreadable"):
        load_splits(f"folder:{root}", skip_bad=True)
