"""knn-map variants that need more than a setting, tried on trained runs without retraining (eager, no product code):
for choosing on family A's development split only (docs/accuracy.md, "How the knn settings were chosen").

    python benchmarks/accuracy/knn_variants.py --data /tmp/local_defects_dev --runs runs/dev \
        --variants base,white_all,level1,window15 --json knn_variants_dev.json

Each variant is the default map (texture energy^0.5 over 7-cell valid windows, whitened 4 x 4 pixel patches,
memories drawn and thinned by the coreset as skipgan draws them, parts in σ units of the validation normals joined by
their maximum) with one change:
    white_all  the texture descriptors whitened too (skipgan.model.patch_knn.whitening)
    level1     a third part: D's second pyramid level's energy^0.5 over 5-cell valid windows (scale)
    window15   a third part: the first level's texture over 15-cell windows (scale)
    patch8     the intensity part on 8 x 8 pixel patches (at the cells' stride) instead of 4 x 4
    coarse     a third part: whitened 4 x 4 patches of the image averaged 2 x 2 (8 x 8 pixels at half the
               resolution and half the noise; on D's second-level grid) (scale)
    context    a third part: whitened 4 x 4 patches of the image less its local mean (Gaussian, σ 4 pixels): a
               patch against its surroundings rather than against the whole training set (a tint or a level
               within the normal range overall but not where it sits)
    relative   the intensity part on those relative patches instead of the patches themselves (what skipgan's
               --knn-relative-sigma 4 does)
Its own memory draw: 'base' is within ~0.003 of `local_defects.py knn` with the defaults on family A, up to 0.03 on
a held-out category (fundus), not equal to it: compare a variant with the script's own base, over several --seed
(one draw moves a family mean by up to 0.009).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_defects import TEXTURES, _trained  # noqa: E402
from map_baselines import metrics  # noqa: E402

VARIANTS = ("base", "white_all", "level1", "window15", "patch8", "coarse", "context", "relative")
MEMORY = {"texture": 10000, "intensity": 30000, "level1": 10000, "window15": 10000,  # skipgan's draws
          "coarse": 30000, "context": 30000}
PIXEL_PARTS = ("intensity", "coarse", "context")  # whitened, as skipgan whitens its pixel patches
HALF_GRID = ("level1", "coarse")  # on D's second-level grid (isize / 4 cells a side)


def parts(model, x: torch.Tensor, variant: str) -> dict[str, torch.Tensor]:
    from skipgan.model.patch_knn import (KnnSettings, descriptors, energy_descriptors, first_level,
                                         intensity_patches, pixel_patches)
    from skipgan.model.unet import LEAKY_SLOPE

    l0 = first_level(model, x)
    out = {"texture": descriptors(l0, 7), "intensity": pixel_patches(x)}
    if variant == "patch8":  # 8 x 8 pixel patches at the cells' stride 2, whole patches only, in place of 4 x 4
        xf = x.float()
        h = (xf.shape[-1] - 8) // 2 + 1
        out["intensity"] = F.unfold(xf, 8, stride=2).view(x.shape[0], -1, h, h)
    if variant == "level1":
        out["level1"] = energy_descriptors(model.discriminator.pyramid[1](l0), 5, 0.5, True, LEAKY_SLOPE)
    if variant == "window15":
        out["window15"] = descriptors(l0, 15)
    if variant == "coarse":
        out["coarse"] = pixel_patches(F.avg_pool2d(x.float(), 2))
    if variant in ("context", "relative"):  # skipgan's --knn-relative-sigma 4 patches
        out["context" if variant == "context" else "intensity"] = intensity_patches(x, KnnSettings(relative_sigma=4.0))
    return out


@torch.no_grad()
def all_parts(model, images: torch.Tensor, variant: str) -> dict[str, torch.Tensor]:
    got = [parts(model, images[i : i + 64], variant) for i in range(0, len(images), 64)]
    return {k: torch.cat([g[k] for g in got]) for k in got[0]}


@torch.no_grad()
def variant_map(model, meta, splits, variant: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image scores, smoothed maps) of the test set."""
    from skipgan.anomaly_map import MapSettings, aggregate, smooth
    from skipgan.model.patch_knn import _rows, _to_grid, greedy_coreset, nearest_distances, whiten, whitening
    from skipgan.train.trainer import split_validation

    run = meta["train"]
    train, val = split_validation(splits.train, run["val_fraction"], run.get("seed", 0))
    gen = torch.Generator().manual_seed(seed)
    memories, white = {}, {}
    for k, d in all_parts(model, train, variant).items():
        r = _rows(d)
        r = r[torch.randperm(len(r), generator=gen)[: MEMORY[k]]]
        if k in PIXEL_PARTS or variant == "white_all":
            white[k] = whitening(r)
            r = whiten(r, *white[k])
        memories[k] = greedy_coreset(r.contiguous(), 0.1, gen)

    def distances(images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for k, d in all_parts(model, images, variant).items():
            if k in white:
                n, c, h, w = d.shape
                d = whiten(_rows(d), *white[k]).view(n, h, w, c).permute(0, 3, 1, 2)
            grid = splits.test.shape[-1] // (4 if k in HALF_GRID else 2)
            dd = _to_grid(nearest_distances(d, memories[k]), grid, grid)
            out[k] = F.interpolate(dd[:, None], size=[splits.test.shape[-1] // 2] * 2, mode="bilinear",
                                   align_corners=False)[:, 0] if k in HALF_GRID else dd
        return out

    stats = {k: (float(v.mean()), float(v.std())) for k, v in distances(val).items()}
    z = torch.stack([(v - stats[k][0]) / stats[k][1] for k, v in distances(splits.test).items()]).amax(0)
    raw = F.interpolate(z[:, None], size=list(splits.test.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    st = MapSettings.from_meta(meta).for_map("knn")
    maps = smooth(raw, st.sigma)
    return aggregate(maps, "knn", st), maps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--textures", nargs="+", default=list(TEXTURES))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0, help="the memory draws' seed (their spread is the measurement's noise)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(2)
    results: dict = {}
    for tex in a.textures:
        model, meta, s = _trained(Path(a.data), Path(a.runs), tex)
        for v in a.variants.split(","):
            scores, maps = variant_map(model, meta, s, v, a.seed)
            results.setdefault(v, {})[tex] = metrics(scores, s.test_labels.numpy(), maps, s.test_masks.numpy())
            print(tex, v, {k: round(x, 4) for k, x in results[v][tex].items()}, flush=True)
    for v, per in results.items():
        per["mean"] = {k: float(np.mean([r[k] for r in per.values()])) for k in ("image_auroc", "pixel_auroc", "pro")}
        print("mean", v, {k: round(x, 4) for k, x in per["mean"].items()})
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": vars(a), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
