"""Development-split experiment (not a product path): would joining the knn map with a raw-patch map close brick?

    python benchmarks/accuracy/experiments/knn_plus_patches.py --data /tmp/local_defects_dev --runs runs/local_defects_dev

For each texture of a `local_defects.py run` on the development split: the knn map (default settings, memory
re-fitted from the trainer's training share), the patch-kNN baseline's raw 8x8 map (local_defects.patch_knn_maps,
fitted on the same share), each z-normalised by the held-out validation share of the training normals, and the two
joined by their maximum. Prints
image AUROC / pixel AUROC / PRO of each and the means. Result (README "Where is the anomaly"): the join lifts dev
image AUROC to 0.981 (brick 0.990) but drops pixel AUROC to 0.872: raw patches are noise on grass and gravel.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from skipgan.anomaly_map import smooth
from skipgan.data.datasets import load_splits
from skipgan.metrics import pixel_metrics
from skipgan.model.patch_knn import KnnSettings, PatchKnn, first_level
from skipgan.modelfile import load_model
from skipgan.train.trainer import split_validation

sys.path.insert(0, str(Path(__file__).parents[1]))
from local_defects import TEXTURES, patch_knn_maps  # noqa: E402  (the baseline's own map, not a copy)

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--runs", required=True)
p.add_argument("--textures", nargs="+", default=list(TEXTURES))
a = p.parse_args()


def smoothed(m: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(smooth(m, 2.0)))


def z(m: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """In units of the validation normals' spread, as skipgan normalises each map."""
    return (m - ref.mean()) / ref.std()


rows_out = []
for tex in a.textures:
    model, meta = load_model(f"{a.runs}/{tex}/model.safetensors")
    model.eval()
    s = load_splits(f"folder:{a.data}/{tex}", isize=64, channels=1)
    train, val = split_validation(s.train, meta["train"]["val_fraction"], meta["train"]["seed"])
    knn = PatchKnn.fit(model, train, KnnSettings(), seed=meta["train"]["seed"])
    with torch.no_grad():
        kv, kt = (smoothed(knn.raw_maps(first_level(model, x), 64)) for x in (val, s.test))
    rv, rt = (smoothed(m) for m in patch_knn_maps(train, val, s.test))
    y, masks = s.test_labels.numpy(), s.test_masks.numpy()
    for name, m in [("knn", z(kt, kv)), ("raw", z(rt, rv)), ("max", torch.maximum(z(kt, kv), z(rt, rv)))]:
        pm = pixel_metrics(m.numpy(), masks)
        rows_out.append((tex, name, roc_auc_score(y, m.reshape(len(m), -1).amax(1).numpy()), pm["pixel_auroc"],
                         pm["pro"]))
        print(tex, name, "image %.3f pixel %.3f PRO %.3f" % rows_out[-1][2:], flush=True)
for name in ["knn", "raw", "max"]:
    print("mean", name, "image %.3f pixel %.3f PRO %.3f" % tuple(np.mean([r[2:] for r in rows_out if r[1] == name], 0)))
