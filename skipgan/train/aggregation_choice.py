"""The model chooses its own image score (`--aggregation auto`), from normal images alone.

At training time there is no abnormal example and no test data, so each aggregation (skipgan/anomaly_map.py) is
judged on defects the trainer makes itself in its validation normals: every validation image is scored as it is
and once per synthetic kind below, and the aggregation whose scores separate the two best (AUROC, normals against
all synthetic images) becomes the model's score. The kinds are generic, written before any benchmark family was
scored with them, and none re-spells a benchmark's defects:

    paste    an elliptical region (2-15 % of the image) of ANOTHER training image, taken from elsewhere in it:
             wrong content of the right statistics (local, low contrast)
    blur     an elliptical region (5-20 %) of the image itself, Gaussian-blurred: missing detail
    line     a straight line 30-70 % of the image long, 1/32 of its side wide, 2 standard deviations above or below
             the image's mean: a thin structural defect
    turned   a rectangle (25-50 %) of another training image turned a quarter: wrong shape over a large area
             (the whole-object end: a digit of the wrong form)

The paper's mean stays the model's score unless another aggregation beats it by more than PREFER_PAPER_BY on
these (switching away from the paper's score needs clear evidence; the margin was fixed before any measurement).
The choice, every candidate's synthetic AUROC (pooled and per kind) and the counts are stored in the model file
and metrics.json, so a user can see why; `--aggregation` at scoring still overrides.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..anomaly_map import AGGREGATIONS, MAP_OF, PAPER_AGGREGATION, MapSettings, all_maps, image_scores, smooth_maps
from ..data.synthetic_defects import ellipse_mask
from ..scoring import Scores

AUTO = "auto"
SYNTHETIC_KINDS = ("paste", "blur", "line", "turned")
PREFER_PAPER_BY = 0.02


def _line(side: int, rng: np.random.Generator) -> torch.Tensor:
    """A bool [side, side] mask: a straight line 30-70 % of the side long and max(1, side/32) pixels wide."""
    yy, xx = np.mgrid[0:side, 0:side]
    width, length = max(1.0, side / 32), rng.uniform(0.3, 0.7) * side
    cy, cx = rng.uniform(0.3 * side, 0.7 * side, 2)
    t = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return torch.from_numpy((np.abs(u) <= length / 2) & (np.abs(v) <= width / 2))


def _rectangle(side: int, area: float, rng: np.random.Generator) -> torch.Tensor:
    """A bool [side, side] mask: an axis-aligned rectangle of about `area` of the image, aspect 1:2 to 2:1."""
    aspect = rng.uniform(0.5, 2.0)
    h = int(round(min(side, np.sqrt(area * side * side * aspect))))
    w = int(round(min(side, area * side * side / max(h, 1))))
    y, x = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    m = torch.zeros(side, side, dtype=torch.bool)
    m[y : y + h, x : x + w] = True
    return m


def synthetic_defects(normals: torch.Tensor, donors: torch.Tensor, seed: int = 0
                      ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """(images [len(normals)·len(SYNTHETIC_KINDS), C, S, S], the kind of each, their masks [.., S, S] bool): every
    normal image once per kind, in kind-major order. `normals`, `donors` [N, C, S, S] in [-1, 1] (donors: other
    normal images, the training split); seeded, deterministic."""
    if normals.ndim != 4 or normals.shape[-1] != normals.shape[-2] or len(normals) == 0:
        raise ValueError(f"synthetic defects need square normal images [N, C, S, S], N > 0; got "
                         f"{tuple(normals.shape)}")
    if len(donors) == 0 or donors.shape[1:] != normals.shape[1:]:
        raise ValueError(f"donor images {tuple(donors.shape)} must be of the normals' shape {tuple(normals.shape)}")
    rng = np.random.default_rng(seed)
    x = normals.detach().float().cpu()
    d = donors.detach().float().cpu()
    side = x.shape[-1]
    blurred = smooth_maps(x.flatten(0, 1), 1.5 * max(1.0, side / 32)).view_as(x)
    images, kinds, masks = [], [], []
    for kind in SYNTHETIC_KINDS:
        for i in range(len(x)):
            img = x[i].clone()
            donor = d[int(rng.integers(len(d)))]
            if kind == "paste":
                m = torch.from_numpy(ellipse_mask(rng, rng.uniform(0.02, 0.15) * side * side, side))
                shift = [int(v) for v in rng.integers(side // 4, 3 * side // 4, 2)]
                src = torch.roll(donor, shift, dims=(1, 2))
            elif kind == "blur":
                m = torch.from_numpy(ellipse_mask(rng, rng.uniform(0.05, 0.20) * side * side, side))
                src = blurred[i]
            elif kind == "line":
                m = _line(side, rng)
                level = img.mean((1, 2), keepdim=True) + (1 if rng.random() < 0.5 else -1) * 2 * img.std()
                src = level.clamp(-1, 1).expand_as(img)
            else:  # turned
                m = _rectangle(side, rng.uniform(0.25, 0.50), rng)
                src = torch.rot90(donor, 1, dims=(1, 2))
            img[:, m] = src[:, m]
            images.append(img)
            kinds.append(kind)
            masks.append(m)
    return torch.stack(images).to(normals.dtype), kinds, torch.stack(masks)


def aggregation_aurocs(normal: Scores, synthetic: Scores, kinds: list[str], settings: MapSettings,
                       candidates: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{aggregation: {"all": AUROC, kind: AUROC, ...}} of normal against synthetic images, for each candidate
    aggregation whose map the scores hold."""
    from sklearn.metrics import roc_auc_score

    maps_n, maps_s = all_maps(normal, settings), all_maps(synthetic, settings)
    kinds_a = np.asarray(kinds)
    out: dict[str, dict[str, float]] = {}
    for how in candidates:
        if how != PAPER_AGGREGATION and MAP_OF[how] not in maps_n:
            continue
        sn = image_scores(normal, how, settings, maps_n.get(MAP_OF[how]))
        ss = image_scores(synthetic, how, settings, maps_s.get(MAP_OF[how]))

        def auroc(sel):
            y = np.r_[np.zeros(len(sn)), np.ones(int(sel.sum()))]
            return float(roc_auc_score(y, np.r_[sn, ss[sel]]))

        out[how] = {"all": auroc(np.ones(len(ss), bool)),
                    **{k: auroc(kinds_a == k) for k in SYNTHETIC_KINDS if (kinds_a == k).any()}}
    return out


def choose(aurocs: dict[str, dict[str, float]]) -> str:
    """The aggregation with the highest pooled synthetic AUROC; the paper's mean unless another beats it by more
    than PREFER_PAPER_BY (ties: the order of AGGREGATIONS)."""
    best = max(aurocs, key=lambda how: (aurocs[how]["all"], -AGGREGATIONS.index(how)))
    paper = aurocs.get(PAPER_AGGREGATION)
    if paper is not None and aurocs[best]["all"] - paper["all"] <= PREFER_PAPER_BY:
        return PAPER_AGGREGATION
    return best


def choose_aggregation(score: Callable[[torch.Tensor], Scores], normal: Scores, val: torch.Tensor,
                       donors: torch.Tensor, settings: MapSettings, seed: int = 0,
                       candidates: tuple[str, ...] = AGGREGATIONS) -> dict[str, Any]:
    """The model's own aggregation, chosen on synthetic defects in its validation normals `val` (scored already:
    `normal`, maps included, its `score` the model's final mean score). `score(images)` scores images with their
    maps, as `normal` was scored; `donors`: the training images. Returns the record stored in the model file:
    {"chosen", "synthetic_auroc": {aggregation: {"all", kind...}}, "n_normal", "n_synthetic", "kinds",
    "prefer_paper_by"}."""
    images, kinds, _ = synthetic_defects(val, donors, seed)
    aurocs = aggregation_aurocs(normal, score(images), kinds, settings, candidates)
    return {"chosen": choose(aurocs), "synthetic_auroc": aurocs, "n_normal": len(val), "n_synthetic": len(images),
            "kinds": list(SYNTHETIC_KINDS), "prefer_paper_by": PREFER_PAPER_BY}
