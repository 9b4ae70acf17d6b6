"""mnist:PATH: idx parsing (plain and .gz), magic checks, protocol."""

import gzip

import numpy as np
import pytest

from skipgan.data import load_splits
from skipgan.data.mnist import IMAGES_MAGIC, read_idx
from skipgan.errors import InputError

try:
    from data_fixtures import idx_bytes, write_mnist
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import idx_bytes, write_mnist


def test_read_idx(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x").write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(read_idx(tmp_path / "x", IMAGES_MAGIC), a)


@pytest.mark.parametrize("gz", [False, True])
def test_protocol(tmp_path, gz):
    folder = write_mnist(tmp_path / "m", n_train=30, n_test=20, gz=gz)
    s = load_splits(f"mnist:{folder}", isize=32, abnormal_class=3)
    assert s.train.shape == (27, 1, 32, 32) and s.channels == 1
    assert s.test.shape == (18 + 3 + 2, 1, 32, 32)
    assert s.test_labels.tolist() == [0] * 18 + [1] * 5
    assert s.test_names[0] == "mnist:t10k[0]" and s.test_names[18] == "mnist:train[3]"
    abn = ((s.test[s.test_labels == 1] + 1) / 2 * 255).round()
    assert (abn == 75).all()


def test_channels_and_isize_rule(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10)
    s = load_splits(f"mnist:{folder}", isize=64, channels=3)
    assert s.train.shape == (9, 3, 64, 64)
    with pytest.raises(InputError, match="isize=28: must be a power of two"):  # MNIST's native size: no model takes it
        load_splits(f"mnist:{folder}", isize=28)


def test_bad_magic(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10)
    p = folder / "train-labels-idx1-ubyte"
    p.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8)))  # an images file in place of labels
    with pytest.raises(InputError, match="train-labels-idx1-ubyte: bad idx magic"):
        load_splits(f"mnist:{folder}")
    p.write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 20)
    with pytest.raises(InputError, match="train-labels-idx1-ubyte: bad idx magic"):
        load_splits(f"mnist:{folder}")


def test_truncated(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10)
    p = folder / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte: idx file has"):
        load_splits(f"mnist:{folder}")


def test_truncated_gz(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10, gz=True)
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz"):
        load_splits(f"mnist:{folder}")


def test_label_count_mismatch(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(InputError, match="7 labels for 10 images"):
        load_splits(f"mnist:{folder}")


def test_missing(tmp_path):
    folder = write_mnist(tmp_path / "m", n_train=10, n_test=10)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte: missing"):
        load_splits(f"mnist:{folder}")
    with pytest.raises(InputError, match="nowhere"):
        load_splits(f"mnist:{tmp_path / 'nowhere'}")
