"""Development-split experiment (not a product path): would joining the knn map with a raw-patch map close brick?

    python benchmarks/accuracy/experiments/knn_plus_patches.py --data /tmp/local_defects_dev --runs runs/local_defects_dev

For each texture of a `local_defects.py run` on the development split: the knn map (default settings, memory
re-fitted from the trainer's training share), the patch-kNN baseline's raw 8x8 map (30,000 training patches), each
z-normalised by the held-out validation share of the training normals, and the two joined by their maximum. Prints
image AUROC / pixel AUROC / PRO of each and the means. Result (README "Where is the anomaly"): the join lifts dev
image AUROC to 0.978 (brick 0.983) but drops pixel AUROC to 0.872: raw patches are noise on grass and gravel.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from skipgan.anomaly_map import smooth
from skipgan.data.datasets import load_splits
from skipgan.metrics import pixel_metrics
from skipgan.model.patch_knn import KnnSettings, PatchKnn, first_level
from skipgan.modelfile import load_model
from skipgan.train.trainer import split_validation

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--runs", required=True)
p.add_argument("--textures", nargs="+", default=["brick", "grass", "gravel"])
a = p.parse_args()


def raw_patch_maps(rows: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The patch-kNN baseline's map (local_defects.baselines): 8x8 patches at stride 2, nearest-row distance, upsampled."""
    te = F.unfold(images, 8, stride=2).transpose(1, 2)
    n, L = te.shape[:2]
    q = te.reshape(-1, 64)
    d = torch.cat([torch.cdist(q[i : i + 8192], rows).amin(1) for i in range(0, len(q), 8192)])
    s = int(np.sqrt(L))
    return F.interpolate(d.view(n, 1, s, s), size=(64, 64), mode="bilinear", align_corners=False)[:, 0]


def smoothed(m: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(smooth(m, 2.0)))


def z(m: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """In units of the validation normals' spread, as skipgan normalises each map."""
    return (m - ref.mean()) / ref.std()


torch.manual_seed(0)
rows_out = []
for tex in a.textures:
    model, meta = load_model(f"{a.runs}/{tex}/model.safetensors")
    model.eval()
    s = load_splits(f"folder:{a.data}/{tex}", isize=64, channels=1)
    train, val = split_validation(s.train, meta["train"]["val_fraction"], meta["train"]["seed"])
    knn = PatchKnn.fit(model, train, KnnSettings(), seed=meta["train"]["seed"])
    patches = F.unfold(train, 8, stride=2).transpose(1, 2).reshape(-1, 64)
    patches = patches[torch.randperm(len(patches))[:30000]]
    with torch.no_grad():
        kv, kt = (smoothed(knn.raw_maps(first_level(model, x), 64)) for x in (val, s.test))
    rv, rt = (smoothed(raw_patch_maps(patches, x)) for x in (val, s.test))
    y, masks = s.test_labels.numpy(), s.test_masks.numpy()
    for name, m in [("knn", z(kt, kv)), ("raw", z(rt, rv)), ("max", torch.maximum(z(kt, kv), z(rt, rv)))]:
        pm = pixel_metrics(m.numpy(), masks)
        rows_out.append((tex, name, roc_auc_score(y, m.reshape(len(m), -1).amax(1).numpy()), pm["pixel_auroc"],
                         pm["pro"]))
        print(tex, name, "image %.3f pixel %.3f PRO %.3f" % rows_out[-1][2:], flush=True)
for name in ["knn", "raw", "max"]:
    print("mean", name, "image %.3f pixel %.3f PRO %.3f" % tuple(np.mean([r[2:] for r in rows_out if r[1] == name], 0)))
