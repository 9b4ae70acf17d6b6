"""skipgan.report: files exist, are valid PNGs / JSON, and nothing is half-written or left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import skipgan.report as report
from skipgan.report import plot_examples, plot_histogram, plot_pr, plot_roc, write_report


def _data(n=12, c=3, hw=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    scores = rng.normal(size=n) + 1.5 * labels
    images = rng.uniform(-1, 1, size=(n, c, hw, hw)).astype(np.float32)
    recs = np.clip(images + rng.normal(scale=0.1, size=images.shape), -1, 1).astype(np.float32)
    errs = ((images - recs) ** 2).mean(axis=1)
    return scores, labels, images, recs, errs


def _assert_png(path):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 50 and im.size[1] > 50


def _no_temp_files(d):
    leftovers = [p.name for p in d.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_single_plots(tmp_path):
    scores, labels, images, recs, errs = _data()
    plot_roc(tmp_path / "roc.png", scores, labels)
    plot_pr(tmp_path / "pr.png", scores, labels)
    plot_histogram(tmp_path / "hist.png", scores, labels, threshold=0.7)
    plot_histogram(tmp_path / "hist_normals.png", scores[labels == 0], np.zeros(6, int))  # one class is fine
    plot_histogram(tmp_path / "hist_nolabels.png", scores, None)
    plot_examples(tmp_path / "ex.png", images, recs, errs, scores, labels=labels, names=[f"img_{i}.png" for i in range(12)], k=2)
    for name in ("roc.png", "pr.png", "hist.png", "hist_normals.png", "hist_nolabels.png", "ex.png"):
        _assert_png(tmp_path / name)
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_examples_channels_and_torch_inputs(tmp_path, c):
    scores, labels, images, recs, errs = _data(n=5, c=c)  # n < 2k: split between the groups
    plot_examples(
        tmp_path / "ex.png",
        torch.from_numpy(images),
        torch.from_numpy(recs),
        torch.from_numpy(errs).unsqueeze(1),  # [N, 1, H, W] accepted too
        torch.from_numpy(scores),
        k=8,
    )
    _assert_png(tmp_path / "ex.png")


def test_examples_rows_are_top_and_bottom_k():
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0])
    _, _, images, recs, errs = _data(n=7, c=1)
    fig = report._examples_figure(images, recs, errs, scores, None, None, k=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith(("most", "least"))]
    assert [t.split("score ")[1] for t in titles] == ["9", "8", "1", "0"]
    assert [t.split("\n")[0] for t in titles] == ["most anomalous"] * 2 + ["least anomalous"] * 2


def test_examples_rejects_mismatched_shapes(tmp_path):
    scores, labels, images, recs, errs = _data()
    with pytest.raises(ValueError, match="reconstructions"):
        plot_examples(tmp_path / "ex.png", images, recs[:, :1], errs, scores)
    with pytest.raises(ValueError, match="same length"):
        plot_examples(tmp_path / "ex.png", images, recs, errs[:3], scores)
    assert list(tmp_path.iterdir()) == []


def test_write_report_full(tmp_path):
    scores, labels, images, recs, errs = _data()
    out = tmp_path / "report"
    m = write_report(
        out, scores, labels, 0.5, images=images, reconstructions=recs, error_maps=errs,
        names=[f"n{i}" for i in range(12)], k=2, extra={"epoch": np.int64(7), "model": "skipgan", "val_fpr": np.float32(0.25)},
    )
    assert sorted(p.name for p in out.iterdir()) == ["examples.png", "histogram.png", "metrics.json", "pr.png", "roc.png"]
    for name in ("examples.png", "histogram.png", "pr.png", "roc.png"):
        _assert_png(out / name)
    text = (out / "metrics.json").read_text()
    assert text.startswith('{\n  "auroc"')  # indent 2
    on_disk = json.loads(text)
    assert on_disk == m
    assert m["epoch"] == 7 and m["model"] == "skipgan" and m["val_fpr"] == 0.25
    assert m["threshold"] == 0.5 and set(m["confusion_matrix"]) == {"tn", "fp", "fn", "tp"}
    _no_temp_files(tmp_path)


def test_write_report_without_images_or_threshold(tmp_path):
    scores, labels, *_ = _data()
    m = write_report(tmp_path, scores, labels, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["histogram.png", "metrics.json", "pr.png", "roc.png"]
    assert "threshold" not in m and "auroc" in m
    _no_temp_files(tmp_path)


def test_write_report_failure_midway_writes_nothing(tmp_path, monkeypatch):
    scores, labels, images, recs, errs = _data()
    out = tmp_path / "report"

    def boom(*args, **kwargs):
        raise RuntimeError("plotting exploded")

    # the examples grid is the last figure rendered, after ROC / PR / histogram succeeded
    monkeypatch.setattr(report, "_examples_figure", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        write_report(out, scores, labels, 0.5, images=images, reconstructions=recs, error_maps=errs)
    assert not out.exists() or list(out.iterdir()) == []


def test_write_failure_during_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    scores, labels, *_ = _data()
    target = tmp_path / "roc.png"
    target.write_bytes(b"old")

    def broken_write(path, data):  # fail after part of the bytes reached the temp file
        with report.atomic_path(path) as tmp:
            tmp.write_bytes(data[:10])
            raise OSError("disk full")

    monkeypatch.setattr(report, "_write_bytes_atomic", broken_write)
    with pytest.raises(OSError, match="disk full"):
        plot_roc(target, scores, labels)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]


def test_write_report_rejects_bad_input_before_writing(tmp_path):
    scores, labels, images, recs, errs = _data()
    with pytest.raises(ValueError, match="only"):
        write_report(tmp_path / "a", scores, np.zeros(12, int), 0.5)
    with pytest.raises(ValueError, match="together"):
        write_report(tmp_path / "b", scores, labels, 0.5, images=images)
    with pytest.raises(ValueError, match="collide"):
        write_report(tmp_path / "c", scores, labels, 0.5, extra={"auroc": 1.0})
    with pytest.raises(ValueError, match="NaN"):
        write_report(tmp_path / "d", scores, labels, 0.5, extra={"loss": float("nan")})
    with pytest.raises(TypeError, match="serialisable"):
        write_report(tmp_path / "e", scores, labels, 0.5, extra={"obj": object()})
    assert list(tmp_path.iterdir()) == []


def test_layering_no_high_level_imports_no_pyplot():
    # static check (cheap): metrics / report import only low-level modules, and never pyplot (global state)
    import ast
    from pathlib import Path

    import skipgan

    forbidden = ("skipgan.model", "skipgan.train", "skipgan.cli", "skipgan.engine", "matplotlib.pyplot")
    for mod in ("metrics.py", "report.py"):
        tree = ast.parse((Path(skipgan.__file__).parent / mod).read_text())
        names = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names += [base] + [f"{base}.{a.name}" for a in node.names]
        assert not any(n.startswith(".") for n in names), (mod, names)  # keep imports absolute so this check holds
        bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]
        assert bad == [], (mod, bad)
