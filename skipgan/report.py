"""Evaluation report: metrics.json plus ROC / PR / histogram / example-grid PNGs.

Plots are built on ``matplotlib.figure.Figure`` objects directly (Agg canvas, no pyplot, no global state, safe
from worker threads). Every figure is rendered completely to PNG bytes in memory *before* anything touches the
disk, and each file is then written through :func:`skipgan.fileio.atomic_path`: if plotting raises, no file is
created or replaced; no temporary file is ever left behind.

Low-level module: numpy, scikit-learn, matplotlib, Pillow and :mod:`skipgan.metrics` / :mod:`skipgan.fileio` /
:mod:`skipgan.overlay` (the map overlays, drawn without matplotlib) only.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from PIL import Image

from skipgan.fileio import atomic_path
from skipgan.overlay import render_overlay
from skipgan.metrics import _check_labels, _check_scores, _check_scores_labels, _check_threshold, _to_numpy
from skipgan.metrics import evaluate_scores, sk_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_roc", "plot_pr", "plot_histogram", "plot_examples", "plot_overlay", "write_report"]

_DPI = 100
_NORMAL_COLOR = "tab:blue"
_ABNORMAL_COLOR = "tab:red"

# file names written by write_report
METRICS_FILE = "metrics.json"
ROC_FILE = "roc.png"
PR_FILE = "pr.png"
HISTOGRAM_FILE = "histogram.png"
EXAMPLES_FILE = "examples.png"


# ---------------------------------------------------------------------------------------------------------------
# rendering / writing helpers
# ---------------------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    # matplotlib (0.4 s to import) loads with the first figure, not with every `skipgan` command that imports this
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)  # attach an Agg canvas explicitly; no pyplot / backend switching involved
    return fig


def _render_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------------------------------------------
# figures (pure: build a Figure, write nothing)
# ---------------------------------------------------------------------------------------------------------------


def _roc_figure(scores: Any, labels: Any) -> Figure:
    s, y = _check_scores_labels(scores, labels)
    fpr, tpr, _ = sk_metrics().roc_curve(y, s, drop_intermediate=False)
    auroc = sk_metrics().roc_auc_score(y, s)
    fig = _new_figure(5, 5)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color=_ABNORMAL_COLOR, lw=2, label=f"ROC (AUROC = {auroc:.4f})")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="chance (AUROC = 0.5)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC  (normal n={int((y == 0).sum())}, abnormal n={int(y.sum())})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _pr_figure(scores: Any, labels: Any) -> Figure:
    s, y = _check_scores_labels(scores, labels)
    precision, recall, _ = sk_metrics().precision_recall_curve(y, s)
    ap = sk_metrics().average_precision_score(y, s)
    prevalence = float(y.mean())
    fig = _new_figure(5, 5)
    ax = fig.add_subplot()
    # step plot: matches how average precision is computed (no linear interpolation between points)
    ax.step(recall, precision, where="post", color=_ABNORMAL_COLOR, lw=2, label=f"PR (AP = {ap:.4f})")
    ax.axhline(prevalence, color="gray", ls="--", lw=1, label=f"chance (AP = {prevalence:.3f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall (abnormal = positive)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def _histogram_figure(scores: Any, labels: Any | None, threshold: float | None) -> Figure:
    s = _check_scores(scores)
    y = None if labels is None else _check_labels(labels, s.size)
    t = None if threshold is None else _check_threshold(threshold)
    edges = np.histogram_bin_edges(s, bins="auto")
    if edges.size > 101:  # "auto" can explode on heavy tails; cap at 100 shared bins
        edges = np.histogram_bin_edges(s, bins=100)
    fig = _new_figure(7, 4.5)
    ax = fig.add_subplot()
    if y is None:
        ax.hist(s, bins=edges, color="gray", alpha=0.7, label=f"all (n={s.size})")
    else:
        # density=True: classes are usually very unbalanced, so compare shapes, not raw counts
        for cls, name, color in ((0, "normal", _NORMAL_COLOR), (1, "abnormal", _ABNORMAL_COLOR)):
            sel = s[y == cls]
            if sel.size:
                ax.hist(sel, bins=edges, density=True, color=color, alpha=0.55, label=f"{name} (n={sel.size})")
    if t is not None:
        ax.axvline(t, color="black", ls="--", lw=1.5, label=f"threshold = {t:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("count" if y is None else "density")
    ax.set_title("score distribution")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _image_for_display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """[C, H, W] in [-1, 1] -> (array for imshow in [0, 1], cmap). C=1 gray, C=3 RGB, otherwise channel-mean gray."""
    x = np.clip((img.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)
    if x.shape[0] == 3:
        return np.transpose(x, (1, 2, 0)), None
    if x.shape[0] == 1:
        return x[0], "gray"
    return x.mean(axis=0), "gray"


def _examples_figure(
    images: Any,
    reconstructions: Any,
    error_maps: Any,
    scores: Any,
    labels: Any | None,
    names: Sequence[str] | None,
    k: int,
    masks: Any | None = None,
) -> Figure:
    s = _check_scores(scores)
    n = s.size
    imgs = _to_numpy(images)
    recs = _to_numpy(reconstructions)
    errs = _to_numpy(error_maps)
    if imgs.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(imgs.shape)}")
    if recs.shape != imgs.shape:
        raise ValueError(f"reconstructions shape {tuple(recs.shape)} differs from images shape {tuple(imgs.shape)}")
    if errs.ndim == 4 and errs.shape[1] == 1:
        errs = errs[:, 0]
    if errs.ndim != 3:
        raise ValueError(f"error_maps must have shape [N, H, W], got {tuple(errs.shape)}")
    if imgs.shape[0] != n or errs.shape[0] != n:
        raise ValueError(
            f"images ({imgs.shape[0]}), error_maps ({errs.shape[0]}) and scores ({n}) must have the same length"
        )
    y = None if labels is None else _check_labels(labels, n)
    gt = None if masks is None else _to_numpy(masks)
    if gt is not None and gt.shape != errs.shape:
        raise ValueError(f"masks must have the error maps' shape {tuple(errs.shape)}, got {tuple(gt.shape)}")
    if names is not None:
        names = [str(v) for v in names]
        if len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} scores")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    # Most anomalous first. With fewer than 2k images, split them so each is shown once.
    order = np.argsort(-s, kind="stable")
    n_top = min(int(k), (n + 1) // 2)
    n_bottom = min(int(k), n - n_top)
    rows = [(int(i), "most anomalous") for i in order[:n_top]]
    rows += [(int(i), "least anomalous") for i in order[n - n_bottom :]]

    shown = errs[[i for i, _ in rows]].astype(np.float64)
    finite = shown[np.isfinite(shown)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-12  # constant maps: avoid a degenerate colour scale

    fig = _new_figure(3 * 2.4 + 0.8, len(rows) * 2.5, layout="constrained")  # constrained: room for the colorbar
    axes = fig.subplots(len(rows), 3, squeeze=False)
    heat = None
    for r, (i, group) in enumerate(rows):
        img, cmap = _image_for_display(imgs[i])
        rec, rcmap = _image_for_display(recs[i])
        title = f"{group}\nscore {s[i]:.4g}"
        if y is not None:
            title += f" | {'abnormal' if y[i] else 'normal'}"
        if names is not None:
            name = names[i] if len(names[i]) <= 28 else "…" + names[i][-27:]
            title += f"\n{name}"
        axes[r, 0].imshow(img, cmap=cmap, vmin=0.0, vmax=1.0)
        axes[r, 0].set_title(title, fontsize=7)
        axes[r, 1].imshow(rec, cmap=rcmap, vmin=0.0, vmax=1.0)
        axes[r, 1].set_title("reconstruction", fontsize=7)
        heat = axes[r, 2].imshow(errs[i], cmap="inferno", vmin=vmin, vmax=vmax)
        axes[r, 2].set_title("error (shared scale)", fontsize=7)
        if gt is not None and gt[i].any():  # ground truth outlined on the input and on the error
            for c in (0, 2):
                axes[r, c].contour(gt[i].astype(np.float32), levels=[0.5], colors="lime", linewidths=0.8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if heat is not None:
        fig.colorbar(heat, ax=list(axes[:, 2]), shrink=min(1.0, 4.0 / len(rows)), label="error")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------------


def plot_roc(path: str | os.PathLike, scores: Any, labels: Any) -> None:
    """Write the ROC curve as a PNG at `path` (AUROC in the legend). Needs both classes (ValueError otherwise)."""
    _write_bytes_atomic(path, _render_png(_roc_figure(scores, labels)))


def plot_pr(path: str | os.PathLike, scores: Any, labels: Any) -> None:
    """Write the precision-recall curve (abnormal = positive) as a PNG at `path`, average precision in the legend."""
    _write_bytes_atomic(path, _render_png(_pr_figure(scores, labels)))


def plot_histogram(path: str | os.PathLike, scores: Any, labels: Any | None, threshold: float | None = None) -> None:
    """Write normal-vs-abnormal score histograms (shared bins, density-normalised) as a PNG at `path`.

    A dashed vertical line marks `threshold` if given. One-class labels are allowed (e.g. validation normals);
    ``labels=None`` plots all scores as one histogram of counts.
    """
    _write_bytes_atomic(path, _render_png(_histogram_figure(scores, labels, threshold)))


def plot_examples(
    path: str | os.PathLike,
    images: Any,
    reconstructions: Any,
    error_maps: Any,
    scores: Any,
    labels: Any | None = None,
    names: Sequence[str] | None = None,
    k: int = 8,
    masks: Any | None = None,
) -> None:
    """Write a PNG grid of the k most and the k least anomalous images (by score).

    Rows are ordered by descending score; columns are input / reconstruction / error heatmap ('inferno', one
    colour scale shared by all rows so heatmaps are comparable). `images` and `reconstructions` are [N, C, H, W]
    arrays or tensors in [-1, 1]: C=1 shown gray, C=3 RGB, any other C as the channel mean in gray.
    `error_maps` is [N, H, W] (or [N, 1, H, W]). If N < 2k, the images are split between the two groups so none
    is shown twice. `masks` [N, H, W] (ground truth, non-zero = abnormal): outlined in green on the input and
    the error heatmap.
    """
    fig = _examples_figure(images, reconstructions, error_maps, scores, labels, names, k, masks)
    _write_bytes_atomic(path, _render_png(fig))


def plot_overlay(path: str | os.PathLike, image: Any, amap: Any, threshold: float | None = None,
                 vmax: float | None = None) -> None:
    """Write a PNG (atomically) of the image with its anomaly map as a heatmap and the map's contour at `threshold`:
    skipgan.overlay.render_overlay, the definition the C++ scanner draws too.

    image: [C, H, W] in [0, 1]; amap: [H, W] at the image's size (skipgan.anomaly_map: σ units)."""
    img = torch.as_tensor(_to_numpy(image), dtype=torch.float32)
    m = torch.as_tensor(_to_numpy(amap), dtype=torch.float32)
    if img.ndim != 3 or m.ndim != 2:
        raise ValueError(f"image must be [C, H, W] and the map [H, W], got {tuple(img.shape)} and {tuple(m.shape)}")
    buf = io.BytesIO()
    Image.fromarray(render_overlay(img, m, threshold, vmax).numpy()).save(buf, format="PNG")
    _write_bytes_atomic(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensor
        return obj.detach().cpu().tolist()
    raise TypeError(f"value of type {type(obj).__name__} in `extra` is not JSON-serialisable")


def write_report(
    out_dir: str | os.PathLike,
    scores: Any,
    labels: Any,
    threshold: float | None,
    images: Any | None = None,
    reconstructions: Any | None = None,
    error_maps: Any | None = None,
    names: Sequence[str] | None = None,
    extra: dict | None = None,
    k: int = 8,
) -> dict:
    """Write a full evaluation report into `out_dir` and return the metrics.

    Files: ``metrics.json`` (indent 2; :func:`skipgan.metrics.evaluate_scores` output merged with `extra`),
    ``roc.png``, ``pr.png``, ``histogram.png``, and ``examples.png`` when `images` are given (then
    `reconstructions` and `error_maps` are required too).

    Everything is validated, computed and rendered in memory first; only then are the files written, each
    atomically, with metrics.json last (so its presence means the report is complete). A failure while computing
    or plotting therefore writes nothing. Keys in `extra` must not collide with metric names (ValueError), and its
    values must be JSON-serialisable (numpy scalars/arrays and tensors are converted; NaN/inf are rejected).

    Returns the metrics dict exactly as written to metrics.json (i.e. ``json.loads`` of the file).
    """
    out_dir = Path(out_dir)
    parts = (images is None, reconstructions is None, error_maps is None)
    if any(parts) and not all(parts):
        raise ValueError("images, reconstructions and error_maps must be given together (or all omitted)")

    metrics = evaluate_scores(scores, labels, threshold)
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValueError(f"extra must be a dict, got {type(extra).__name__}")
        clash = sorted(set(extra) & set(metrics))
        if clash:
            raise ValueError(f"extra keys collide with metric names: {clash}")
        metrics.update(extra)
    try:
        text = json.dumps(metrics, indent=2, allow_nan=False, default=_json_default) + "\n"
    except ValueError as exc:  # NaN / inf in extra
        raise ValueError(f"metrics are not valid JSON (NaN or infinite value in extra?): {exc}") from None

    pngs: dict[str, bytes] = {
        ROC_FILE: _render_png(_roc_figure(scores, labels)),
        PR_FILE: _render_png(_pr_figure(scores, labels)),
        HISTOGRAM_FILE: _render_png(_histogram_figure(scores, labels, threshold)),
    }
    if images is not None:
        fig = _examples_figure(images, reconstructions, error_maps, scores, labels, names, k)
        pngs[EXAMPLES_FILE] = _render_png(fig)

    for name, data in pngs.items():
        _write_bytes_atomic(out_dir / name, data)
    with atomic_path(out_dir / METRICS_FILE) as tmp:
        tmp.write_text(text)
    return json.loads(text)
