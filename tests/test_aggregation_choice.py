"""`--aggregation auto`: the synthetic defects, the AUROCs and the rule that choose a model's image score, and the
choice recorded by `skipgan train` (model file, metrics.json) and honoured by every later command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skipgan.anomaly_map import MapSettings
from skipgan.scoring import Scores
from skipgan.train.aggregation_choice import (PREFER_PAPER_BY, SYNTHETIC_KINDS, aggregation_aurocs, choose,
                                              synthetic_defects)

from model_fixtures import train_run
from test_anomaly_maps import _dataset


def _images(n=5, c=1, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, s, s, generator=g) * 1.6 - 0.8


@pytest.mark.parametrize("channels,side", [(1, 32), (3, 64), (2, 33)])
def test_synthetic_defects_change_only_their_masks(channels, side):
    normals, donors = _images(4, channels, side), _images(6, channels, side, seed=1)
    images, kinds, masks = synthetic_defects(normals, donors, seed=3)
    assert images.shape == (4 * len(SYNTHETIC_KINDS), channels, side, side) and images.dtype == normals.dtype
    assert kinds == [k for k in SYNTHETIC_KINDS for _ in range(4)]  # kind-major, every normal once per kind
    for j in range(len(images)):
        m, base = masks[j], normals[j % 4]
        assert m.any() and not m.all()
        assert torch.equal(images[j][:, ~m], base[:, ~m])  # nothing outside the mask moves
        assert not torch.equal(images[j][:, m], base[:, m])
        assert images[j].abs().max() <= 1.0


def test_synthetic_defects_are_seeded():
    normals, donors = _images(), _images(seed=1)
    a, b, c = (synthetic_defects(normals, donors, seed=s)[0] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_synthetic_defect_areas_are_as_documented():
    normals, donors = _images(40, 1, 64), _images(10, 1, 64, seed=1)
    _, kinds, masks = synthetic_defects(normals, donors)
    area = masks.flatten(1).float().mean(1).numpy()
    kinds = np.asarray(kinds)
    assert 0.01 <= area[kinds == "paste"].min() and area[kinds == "paste"].max() <= 0.18
    assert 0.03 <= area[kinds == "blur"].min() and area[kinds == "blur"].max() <= 0.23
    assert 0.2 <= area[kinds == "turned"].min() and area[kinds == "turned"].max() <= 0.55
    assert area[kinds == "line"].max() <= 0.1


@pytest.mark.parametrize("normals,donors,match", [
    (torch.zeros(0, 1, 8, 8), torch.zeros(2, 1, 8, 8), "square normal images"),
    (torch.zeros(2, 1, 8, 6), torch.zeros(2, 1, 8, 6), "square normal images"),
    (torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 8, 8), "donor images"),
    (torch.zeros(2, 1, 8, 8), torch.zeros(0, 1, 8, 8), "donor images"),
])
def test_synthetic_defects_refuse_bad_input(normals, donors, match):
    with pytest.raises(ValueError, match=match):
        synthetic_defects(normals, donors)


def test_the_rule_prefers_the_paper_score_unless_clearly_beaten():
    def a(**v):
        return {k: {"all": x} for k, x in v.items()}

    assert choose(a(mean=0.80, max=0.80 + PREFER_PAPER_BY / 2, topk=0.7)) == "mean"  # not clearly better
    assert choose(a(mean=0.80, max=0.80 + PREFER_PAPER_BY + 0.001, knn=0.5)) == "max"
    assert choose(a(mean=0.5, max=0.9, topk=0.9, knn=0.9)) == "max"  # ties: the order of AGGREGATIONS
    assert choose(a(max=0.6, knn=0.7)) == "knn"  # no mean among the candidates


def test_aggregation_aurocs_rank_normals_against_synthetic_images():
    """mean ranks the synthetic images first (AUROC 1), the error map's max last (0), per kind too; a candidate
    whose map the scores lack (knn here) is left out."""
    n, s = 6, 16
    normal_maps = torch.zeros(n, s, s)
    normal_maps[:, 5, 5] = 10.0  # one hot pixel in every normal: max high, mean low
    normal = Scores(torch.zeros(n), torch.zeros(n), torch.zeros(n), error_map=normal_maps)
    kinds = [k for k in SYNTHETIC_KINDS for _ in range(2)]
    m = len(kinds)
    synthetic = Scores(torch.ones(m), torch.ones(m), torch.ones(m), error_map=torch.full((m, s, s), 0.01))
    r = aggregation_aurocs(normal, synthetic, kinds, MapSettings(sigma=0), ("mean", "max", "knn"))
    assert set(r) == {"mean", "max"}
    assert r["mean"]["all"] == 1.0 and r["max"]["all"] == 0.0
    assert set(r["mean"]) == {"all", *SYNTHETIC_KINDS} and all(r["mean"][k] == 1.0 for k in SYNTHETIC_KINDS)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auto")
    return train_run(tmp, _dataset(tmp / "data"), "--aggregation", "auto")


def test_train_auto_records_its_choice_and_scores_by_it(auto_run):
    from skipgan.modelfile import load_model

    _, out = auto_run
    _, meta = load_model(out / "model.safetensors")
    m = json.loads((out / "metrics.json").read_text())
    choice = meta["aggregation_choice"]
    how = choice["chosen"]
    assert meta["train"]["aggregation"] == "auto" and meta["aggregation"] == how == m["aggregation"]
    assert m["aggregation_choice"] == choice
    assert set(choice["synthetic_auroc"]) == set(meta["calibrations"]) == {"mean", "max", "topk", "knn"}
    assert choice["n_synthetic"] == len(SYNTHETIC_KINDS) * choice["n_normal"] > 0
    assert choose(choice["synthetic_auroc"]) == how
    # the model's calibration and metrics are those of the chosen aggregation
    assert meta["calibration"]["threshold"] == meta["calibrations"][how]["threshold"]
    assert m["auroc"] == pytest.approx(m["auroc_by_aggregation"][how])


def test_auto_is_a_training_choice_only(auto_run, capsys):
    """score/evaluate/export read a model's stored aggregations: 'auto' is refused there with argparse's usage
    error (exit 2), naming the choices."""
    from skipgan.cli import main

    _, out = auto_run
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(out / "model.safetensors"), "--aggregation", "auto"])
    assert e.value.code == 2
    assert "invalid choice: 'auto'" in capsys.readouterr().err


def test_auto_without_a_knn_memory_chooses_among_the_error_maps(tmp_path):
    _, out = train_run(tmp_path, _dataset(tmp_path / "data"), "--aggregation", "auto", "--knn-memory", "0")
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["aggregation_choice"]["synthetic_auroc"]) == {"mean", "max", "topk"}
