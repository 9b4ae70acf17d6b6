"""cifar10:PATH: restricted unpickling and the GANomaly protocol, on a tiny fake batch set."""

import os
import pickle

import numpy as np
import pytest
import torch

from skipgan.data import load_splits
from skipgan.data.cifar import read_batch, restricted_load
from skipgan.errors import InputError

try:
    from data_fixtures import write_cifar
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import write_cifar


def test_read_batch(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    x, y = read_batch(folder / "data_batch_1")
    assert x.shape == (10, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == list(range(10))
    assert (x[3] == 3 * 20 + 0).all()


def test_protocol(tmp_path):
    n = 20
    folder = write_cifar(tmp_path / "c", n_per_batch=n)
    s = load_splits(f"cifar10:{folder}", isize=64, abnormal_class=2)
    # 5 train batches of 20 with labels cycling 0..9 -> 2 images of class 2 each
    assert s.train.shape == (5 * n - 10, 3, 64, 64)
    assert s.test.shape == (n - 2 + 10 + 2, 3, 64, 64)
    assert s.test_labels.tolist() == [0] * (n - 2) + [1] * 12
    assert s.channels == 3 and s.isize == 64
    # order: normal test images, abnormal train images, abnormal test images
    assert s.test_names[0].startswith("cifar10:test_batch[")
    assert s.test_names[n - 2].startswith("cifar10:data_batch_1[")
    assert s.test_names[-1].startswith("cifar10:test_batch[")
    # abnormal images really are class 2 (pixel value 40..42), normals are not
    abn = (s.test[s.test_labels == 1] + 1) / 2 * 255
    assert ((abn.round() >= 40) & (abn.round() <= 42)).all()
    nrm = ((s.train + 1) / 2 * 255).round()
    assert not ((nrm >= 40) & (nrm <= 42)).any()


def test_channels_and_native_size(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    s = load_splits(f"cifar10:{folder}", isize=32, abnormal_class=0, channels=1)
    assert s.train.shape == (45, 1, 32, 32) and s.channels == 1


def test_fixture_is_like_the_real_files(tmp_path):
    """The real batches were pickled by Python 2 / numpy 1.x: numpy.core.multiarray._reconstruct, py2 strings."""
    raw = (write_cifar(tmp_path / "c", n_per_batch=10) / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw


@pytest.mark.parametrize("protocol", [3, 4])
def test_python3_pickles_with_numpy2_names_accepted(tmp_path, protocol):
    folder = write_cifar(tmp_path / "c", n_per_batch=10, protocol=protocol)
    assert b"numpy._core.multiarray" in (folder / "data_batch_1").read_bytes()
    x, y = read_batch(folder / "data_batch_1")
    assert x.shape == (10, 3, 32, 32) and y.tolist() == list(range(10))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=4)
    with pytest.raises(InputError) as ei:
        load_splits(f"cifar10:{folder}")
    msg = str(ei.value)
    assert "data_batch_3" in msg and "system" in msg and "\n" not in msg
    assert not marker.exists()


@pytest.mark.parametrize("target", [("builtins", "eval"), ("numpy", "load"), ("numpy.core.multiarray", "scalar")])
def test_other_globals_refused(tmp_path, target):
    p = tmp_path / "b"
    # protocol-0 style GLOBAL opcode: c<module>\n<name>\n ... then call it
    p.write_bytes(f"c{target[0]}\n{target[1]}\n(S'1'\ntR.".encode())
    with pytest.raises(InputError, match="refusing to unpickle"):
        restricted_load(p)


def test_truncated_and_wrong_content(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="test_batch.*truncated or corrupt"):
        load_splits(f"cifar10:{folder}")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": [1, 2, 3]}, f, protocol=4)
    with pytest.raises(InputError, match="test_batch: not a CIFAR-10 batch"):
        load_splits(f"cifar10:{folder}")


def test_missing_batch_and_folder(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    (folder / "data_batch_4").unlink()
    with pytest.raises(InputError, match="data_batch_4: missing"):
        load_splits(f"cifar10:{folder}")
    with pytest.raises(InputError, match="nowhere"):
        load_splits(f"cifar10:{tmp_path / 'nowhere'}")


def test_bad_abnormal_class(tmp_path):
    folder = write_cifar(tmp_path / "c", n_per_batch=10)
    with pytest.raises(InputError, match="--abnormal-class"):
        load_splits(f"cifar10:{folder}", abnormal_class=10)


def test_labels_dtype(tmp_path):
    s = load_splits(f"cifar10:{write_cifar(tmp_path / 'c', n_per_batch=10)}", isize=32)
    assert s.test_labels.dtype == torch.int64
