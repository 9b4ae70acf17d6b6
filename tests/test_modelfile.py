"""Model files: safetensors + JSON metadata, bit-exact round trip, no pickle, clear errors."""

import json

import pytest
import torch
from safetensors import safe_open

from skipgan.errors import InputError
from skipgan.model import Architecture, SkipGANomaly
from skipgan.modelfile import FORMAT_VERSION, load_model, save_model
from skipgan.tensorfile import save_tensors

CAL = {"threshold": 0.25, "target_fpr": 0.01, "val_stats": {"mean": 0.1, "std": 0.05}}


def trained_like_model():
    torch.manual_seed(0)
    m = SkipGANomaly(Architecture(isize=32, nc=2, ngf=4, ndf=4, nz=8), lam=0.8)
    m.train()
    with torch.no_grad():  # move BN running stats away from their defaults
        m.score(torch.randn(4, 2, 32, 32))
    return m.eval()


def test_round_trip_is_bit_exact(tmp_path):
    m = trained_like_model()
    path = tmp_path / "model.safetensors"
    save_model(path, m, CAL, {"run_info": {"data": "digits"}})
    m2, meta = load_model(path)
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert meta["calibration"] == CAL and meta["lam"] == 0.8 and meta["format_version"] == FORMAT_VERSION
    assert meta["architecture"] == {"isize": 32, "nc": 2, "ngf": 4, "ndf": 4, "nz": 8}
    x = torch.randn(3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert not m2.training


def test_file_is_plain_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, trained_like_model(), CAL)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["skipgan"])
        assert "generator.down.0.conv.weight" in f.keys()
    assert meta["format"] == "skipgan-model"
    assert path.read_bytes()[:8] != b"\x80\x04\x95"[:8]  # not a pickle


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x80\x04\x95garbage-pickle"])
def test_unreadable_file_is_input_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"{path}: not a readable model file"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")


def test_other_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {"format": "something-else"})
    with pytest.raises(InputError, match="not a skipgan model file"):
        load_model(path)


def test_wrong_version_and_mismatched_weights(tmp_path):
    m = trained_like_model()
    path = tmp_path / "m.safetensors"
    save_model(path, m, CAL, {"format_version": 99})
    with pytest.raises(InputError, match="format version 99 is not supported"):
        load_model(path)
    sd = m.state_dict()
    sd.pop("generator.down.0.conv.weight")
    meta = {"format": "skipgan-model", "format_version": FORMAT_VERSION, "lam": 0.9, "calibration": CAL,
            "architecture": {"isize": 32, "nc": 2, "ngf": 4, "ndf": 4, "nz": 8}}
    save_tensors(path, sd, meta)
    with pytest.raises(InputError, match="weights do not match the stored architecture"):
        load_model(path)


def test_score_margin_round_trip(tmp_path):
    m = SkipGANomaly(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8), margin=3).eval()
    save_model(tmp_path / "m.safetensors", m, CAL)
    m2, meta = load_model(tmp_path / "m.safetensors")
    assert m2.margin == 3 and meta["score_margin"] == 3
