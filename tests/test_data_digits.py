"""digits (scikit-learn 8x8) split protocol and spec dispatch."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skipgan.data import digits_split_indices, load_splits
from skipgan.errors import InputError


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data, d.target


@pytest.mark.parametrize("abnormal", [0, 7])
def test_split_indices(digits, abnormal):
    x, y = digits
    train_idx, test_idx, labels = digits_split_indices(abnormal, seed=0)
    normal = np.flatnonzero(y != abnormal)
    abn = np.flatnonzero(y == abnormal)
    n_train = int(0.8 * len(normal))
    assert len(train_idx) == n_train
    assert len(test_idx) == len(normal) - n_train + len(abn)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert set(abn) <= set(test_idx)
    assert not (y[train_idx] == abnormal).any()
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, (y[test_idx] == abnormal).astype(np.int64))
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(len(y)))


def test_split_is_exactly_the_documented_protocol(digits):
    _, y = digits
    normal = np.flatnonzero(y != 4)
    perm = normal[np.random.default_rng(5).permutation(len(normal))]
    n = int(0.8 * len(normal))
    train_idx, test_idx, _ = digits_split_indices(4, seed=5)
    np.testing.assert_array_equal(train_idx, perm[:n])
    np.testing.assert_array_equal(test_idx[: len(normal) - n], perm[n:])


def test_same_seed_same_split_other_seed_differs():
    a = digits_split_indices(1, seed=3)
    b = digits_split_indices(1, seed=3)
    c = digits_split_indices(1, seed=4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_load_splits_matches_indices(digits):
    x, _ = digits
    s = load_splits("digits", isize=32, abnormal_class=2, seed=1)
    train_idx, test_idx, labels = digits_split_indices(2, seed=1)
    assert s.train.shape == (len(train_idx), 1, 32, 32) and s.train.dtype == torch.float32
    native = torch.from_numpy(x[train_idx] / 16 * 2 - 1).float().view(-1, 1, 8, 8)
    # the 8x8 images, upsampled bilinearly to the model's size
    expected = torch.nn.functional.interpolate(native, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(s.train, expected, atol=1e-6)
    assert s.test_labels.tolist() == labels.tolist()
    assert s.test_names[0] == f"digits[{test_idx[0]}]"
    assert s.channels == 1 and s.isize == 32 and s.skipped == 0


def test_default_isize_and_channels():
    s = load_splits("digits")
    assert s.train.shape[1:] == (1, 32, 32) and s.isize == 32
    assert s.train.min() >= -1 and s.train.max() <= 1
    s3 = load_splits("digits", isize=64, channels=3)
    assert s3.train.shape[1:] == (3, 64, 64) and s3.channels == 3
    assert torch.equal(s3.train[:, 0], s3.train[:, 2])


def test_bad_arguments():
    with pytest.raises(InputError, match="--abnormal-class"):
        load_splits("digits", abnormal_class=10)
    with pytest.raises(InputError, match="--abnormal-class"):
        digits_split_indices(-1)
    for bad in (0, 8, 48):  # the model's isize rule: splits at sizes no model can take are refused
        with pytest.raises(InputError, match=f"isize={bad}: must be a power of two from 32 to 512"):
            load_splits("digits", isize=bad)
    with pytest.raises(InputError, match="--channels"):
        load_splits("digits", channels=0)


@pytest.mark.parametrize("spec", ["imagenet", "folder", "folder:", "digits:foo", "", "cifar100:/x"])
def test_unknown_spec(spec):
    with pytest.raises(InputError) as ei:
        load_splits(spec)
    msg = str(ei.value)
    assert "\n" not in msg
    if spec not in ("folder", "folder:"):
        assert "digits, folder:PATH, cifar10:PATH, mnist:PATH" in msg
