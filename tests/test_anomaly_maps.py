"""Anomaly maps, map aggregations, pixel metrics in reports, `score --maps`, and the export refusal."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import write_masked_set
from model_fixtures import TINY_TRAIN, train_run
from skipgan.anomaly_map import (MapSettings, aggregate, all_maps, anomaly_maps, image_scores, smooth, smooth_maps,
                                  upsample)
from skipgan.cli import main
from skipgan.errors import InputError
from skipgan.modelfile import load_model, scoring_choice
from skipgan.scoring import Scores
from skipgan.train.calibrate import calibrate_maps


# ------------------------------------------------------------------------------------------------ the maps
@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 5, 7), (1, 1, 9), (1, 3, 3), (2, 64, 48)])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.3, 8.0])
def test_smoothing_is_scipys_gaussian_filter(shape, sigma):
    """The one smoothing (a torch convolution, which the exports can run too) gives scipy.ndimage.gaussian_filter's
    numbers (mode reflect, truncate 4: the maps and calibrations of existing model files), kernels wider than the
    map included."""
    from scipy.ndimage import gaussian_filter

    e = np.random.default_rng(0).random(shape, dtype=np.float32) * 3
    want = gaussian_filter(e, sigma=(0, sigma, sigma), mode="reflect")
    np.testing.assert_allclose(smooth(e, sigma), want, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(smooth_maps(torch.from_numpy(e), sigma), torch.from_numpy(want), rtol=2e-6, atol=2e-6)


def test_smoothing_keeps_images_apart_and_mass():
    e = np.zeros((2, 16, 16), np.float32)
    e[0, 8, 8] = 1.0
    s = smooth(e, 1.5)
    assert s[1].max() == 0 and s[0, 8, 8] < 1 and s[0].sum() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(smooth(e, 0), e)


def test_normalisation_and_aggregations():
    st = MapSettings(sigma=0, mean=1.0, std=2.0, topk_percent=25.0, margin=1)
    e = torch.ones(1, 6, 6)
    e[0, 0, 0] = 100.0  # in the border: left out
    e[0, 2:4, 2:4] = torch.tensor([[3.0, 5.0], [7.0, 9.0]])
    m = anomaly_maps(e, st)
    assert m[0, 2, 2] == pytest.approx(1.0) and m[0, 3, 3] == pytest.approx(4.0)
    assert aggregate(m, "max", st)[0] == pytest.approx(4.0)
    # interior 4x4 = 16 pixels, top 25 % = 4: (1 + 2 + 3 + 4) / 4
    assert aggregate(m, "topk", st)[0] == pytest.approx(2.5)
    s = Scores(torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([0.0]), error_map=e)
    assert image_scores(s, "mean", st)[0] == 0.5 and image_scores(s, "max", st)[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="the error maps are missing"):
        image_scores(Scores(s.score, s.pixel, s.feature), "topk", st)


def test_all_maps_holds_every_map_of_the_results_each_with_its_own_statistics():
    st = MapSettings(sigma=0, mean=1.0, std=2.0, knn_mean=3.0, knn_std=4.0)
    e, k = torch.full((2, 4, 4), 5.0), torch.full((2, 4, 4), 7.0)
    z = torch.zeros(2)
    only_error = all_maps(Scores(z, z, z, error_map=e), st)
    assert set(only_error) == {"error"} and np.allclose(only_error["error"], 2.0)  # (5 - 1) / 2
    both = all_maps(Scores(z, z, z, error_map=e, knn_map=k), st)
    assert set(both) == {"error", "knn"} and np.allclose(both["knn"], 1.0)  # (7 - 3) / 4


def test_upsample_to_image_size():
    m = np.arange(4, dtype=np.float32).reshape(2, 2)
    assert upsample(m, 2, 2).tolist() == m.tolist()
    u = upsample(m, 5, 7)
    assert u.shape == (5, 7) and u.min() >= -1e-5 and u.max() <= 3 + 1e-5


def test_calibrate_maps_puts_validation_normals_at_zero_mean_unit_std():
    g = torch.Generator().manual_seed(0)
    e = torch.rand(20, 16, 16, generator=g) * 3 + 1
    st, cals = calibrate_maps(e, torch.rand(20, generator=g), MapSettings(sigma=1.0), target_fpr=0.1)
    m = anomaly_maps(e, st)
    assert abs(m.mean()) < 1e-4 and m.std() == pytest.approx(1.0, rel=1e-3)
    assert set(cals) == {"mean", "max", "topk"}
    assert st.threshold == cals["max"]["threshold"]
    assert (aggregate(m, "max", st) > st.threshold).mean() <= 0.1


def test_bad_map_settings_are_flag_errors(capsys):
    assert main(["train", "--map-sigma", "-1", *TINY_TRAIN]) == 2
    assert "--map-sigma -1.0: must be non-negative" in capsys.readouterr().err
    assert main(["train", "--topk-percent", "0", *TINY_TRAIN]) == 2
    assert "--topk-percent 0.0: must be in (0, 100]" in capsys.readouterr().err


def test_old_model_files_score_by_the_mean():
    meta = {"calibration": {"threshold": 1.0, "val_stats": {}}, "score_margin": 2}
    how, cal, st = scoring_choice(meta, None, "m.safetensors")
    assert how == "mean" and cal["threshold"] == 1.0 and st.margin == 2 and st.threshold is None
    with pytest.raises(InputError, match="--aggregation max: m.safetensors holds no calibration for it"):
        scoring_choice(meta, "max", "m.safetensors")


# ------------------------------------------------------------------------------------------------ end to end
def _dataset(root, n_train=24, size=40):
    """Smooth gradients as normals; abnormal = a bright square (its mask beside it)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]

    def normal():
        a, b = rng.uniform(0.5, 2.0, 2)
        return (80 + 40 * np.sin(xx / size * a * 3) + 40 * np.cos(yy / size * b * 3)).astype(np.uint8)

    def defect(i):
        img, mask = normal(), np.zeros((size, size), np.uint8)
        r, c = rng.integers(4, size - 14, 2)
        img[r : r + 10, c : c + 10] = 255
        mask[r : r + 10, c : c + 10] = 255
        return img, mask

    return write_masked_set(root, normal, defect, n_train)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maps")
    return train_run(tmp, _dataset(tmp / "data"), "--aggregation", "max")


def test_train_records_aggregation_maps_and_pixel_metrics(run):
    data, out = run
    model, meta = load_model(out / "model.safetensors")
    assert meta["aggregation"] == "max" and set(meta["calibrations"]) == {"mean", "max", "topk", "knn"}
    assert meta["calibration"] == meta["calibrations"]["max"]
    am = meta["anomaly_map"]
    assert am["sigma"] == 2.0 and am["std"] > 0 and am["threshold"] == meta["calibrations"]["max"]["threshold"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["aggregation"] == "max" and m["threshold"] == meta["calibrations"]["max"]["threshold"]
    assert 0 <= m["pixel_auroc"] <= 1 and 0 <= m["pro"] <= 1 and m["regions"] == 4
    assert set(m["auroc_by_aggregation"]) == {"mean", "max", "topk", "knn"}
    assert m["auroc"] == pytest.approx(m["auroc_by_aggregation"]["max"])


def test_evaluate_paper_mean_is_one_flag_away(run, tmp_path, capsys):
    data, out = run
    assert main(["evaluate", str(out / "model.safetensors"), "--out", str(tmp_path), "--device", "cpu",
                 "--aggregation", "mean"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["aggregation"] == "mean" and m["auroc"] == pytest.approx(m["auroc_by_aggregation"]["mean"])
    _, meta = load_model(out / "model.safetensors")
    assert m["threshold"] == meta["calibrations"]["mean"]["threshold"]
    assert "pixel AUROC" in capsys.readouterr().out
    assert (tmp_path / "examples.png").exists()


def test_score_maps_writes_overlays_at_image_size(run, tmp_path, capsys):
    data, out = run
    maps = tmp_path / "maps"
    code = main(["score", str(out / "model.safetensors"), str(data / "test"), "--device", "cpu", "--maps", str(maps),
                 "--raw-maps", "npy"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 12  # test/normal, test/abnormal and the masks folder (images too)
    for line in lines:
        p = line["map"]
        assert p.endswith(".png.map.png")
        with Image.open(p) as im:
            assert im.size == (280, 280)  # 40x40 drawn at least 256 wide: an integer factor, 7
        raw = np.load(p[: -len(".png")] + ".npy")
        assert raw.shape == (40, 40) and raw.dtype == np.float32
    assert (maps / "abnormal" / "a0.png.map.png").exists() and (maps / "normal" / "t0.png.map.png").exists()
    assert not list(maps.rglob("*.tmp*"))


def test_score_by_model_aggregation_matches_evaluate(run, tmp_path, capsys):
    data, out = run
    assert main(["score", str(out / "model.safetensors"), str(data / "test/abnormal"), "--device", "cpu"]) == 0
    by_max = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    assert main(["score", str(out / "model.safetensors"), str(data / "test/abnormal"), "--device", "cpu",
                 "--aggregation", "mean"]) == 0
    by_mean = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    assert by_max != by_mean and len(by_max) == 4


def test_raw_maps_needs_maps(run, capsys):
    data, out = run
    assert main(["score", str(out / "model.safetensors"), str(data / "test"), "--raw-maps", "npy"]) == 2
    assert "--raw-maps npy: needs --maps DIR" in capsys.readouterr().err


def test_export_computes_the_models_own_aggregation(run, tmp_path, capsys):
    """A model trained with 'max' exports as it is (no --aggregation mean): the file's scores and verdicts are
    `skipgan score`'s on the same images, and its anomaly map is the one --maps draws."""
    from skipgan.data.images import read_image
    from skipgan.export import read_metadata, run_exported

    data, out = run
    pt = tmp_path / "m.pt"
    assert main(["export", str(out / "model.safetensors"), "--format", "torchscript", "--out", str(pt)]) == 0
    assert "score 'max'" in capsys.readouterr().err
    meta = read_metadata(pt)
    assert meta["aggregation"] == "max" and meta["anomaly_map"]["kind"] == "error"
    paths = sorted((data / "test").rglob("*.png"))[:6]
    assert main(["score", str(out / "model.safetensors"), *map(str, paths), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    images = torch.stack([torch.from_numpy(np.require(read_image(p), requirements="W")) for p in paths])
    s, z, v, amap = run_exported("torchscript", pt, images, torchscript_map="anomaly")
    want = torch.tensor([line["score"] for line in lines], dtype=torch.float32)
    torch.testing.assert_close(s, want, rtol=1e-4, atol=1e-5)
    assert [("abnormal" if x else "normal") for x in v.tolist()] == [line["verdict"] for line in lines]
    assert amap.shape == (len(paths), 32, 32) and float(amap.amax((1, 2)).sub(s).abs().max()) < 1e-4 * float(s.abs().max())


def test_export_aggregation_mean_exports_the_paper_score_with_its_own_calibration(run, tmp_path, capsys):
    """A model trained with another aggregation holds the mean's calibration too: `export --aggregation mean`
    exports that score without retraining, with the mean's threshold (not the model's own)."""
    data, out = run
    _, meta = load_model(out / "model.safetensors")
    mean_t, own_t = meta["calibrations"]["mean"]["threshold"], meta["calibration"]["threshold"]
    assert mean_t != own_t
    assert main(["export", str(out / "model.safetensors"), "--format", "torchscript", "--aggregation", "mean",
                 "--out", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "m.pt").is_file() and f"threshold {mean_t:.6g};" in err and "scores within" in err


def test_raw_maps_png16_round_trip(run, tmp_path, capsys):
    data, out = run
    maps = tmp_path / "m"
    for raw in ("npy", "png16"):
        assert main(["score", str(out / "model.safetensors"), str(data / "test/abnormal/a0.png"), "--device", "cpu",
                     "--maps", str(maps), "--raw-maps", raw]) == 0
    want = np.load(maps / "a0.png.map.npy")
    with Image.open(maps / "a0.png.raw.png") as im:
        got = (np.asarray(im).astype(np.float64) - 32768) / 1000.0
    assert got.shape == want.shape == (40, 40)
    np.testing.assert_allclose(got, np.clip(want, -32.768, 32.767), atol=0.0006)


def test_score_lists_regions_of_flagged_images_only(run, capsys):
    """A trained model's flagged lines carry `regions` (find_regions of the map its score reads, in the image's own
    pixels, largest peak first, at most --max-regions); normal lines none; --max-regions 0 none at all."""
    data, out = run
    paths = sorted((data / "test").rglob("*.png"))
    assert main(["score", str(out / "model.safetensors"), *map(str, paths), "--device", "cpu",
                 "--max-regions", "3"]) in (0, 1)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    flagged = [line for line in lines if line.get("verdict") == "abnormal"]
    assert flagged
    for line in lines:
        assert ("regions" in line) == (line.get("verdict") == "abnormal")
    for line in flagged:
        peaks = [r["peak"] for r in line["regions"]]
        assert 1 <= len(peaks) <= 3 and peaks == sorted(peaks, reverse=True)
        for r in line["regions"]:
            x, y, w, h = r["bbox"]
            assert 0 <= x < x + w <= 40 and 0 <= y < y + h <= 40 and 0 < r["area"] <= w * h
            assert r["mean"] <= r["peak"]
    assert main(["score", str(out / "model.safetensors"), *map(str, paths), "--device", "cpu",
                 "--max-regions", "0"]) in (0, 1)
    assert not any("regions" in json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert main(["score", str(out / "model.safetensors"), str(paths[0]), "--max-regions", "-1"]) == 2
    assert "--max-regions -1: must be 0" in capsys.readouterr().err
