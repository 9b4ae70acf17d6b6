"""Classical baselines with anomaly maps, for the local-defect benchmark (family A) and benchmark families B, C, D.

Every baseline is fitted on the normal training images of one category and gives a raw map per test image
[N, S, S] (images [N, C, S, S] in [-1, 1], any channel count); maps are smoothed by skipgan's one smoothing
(σ 2, as the models' maps) and the image score is the map's max (PCA also its mean error, the global form).
Settings are fixed here, never chosen on a benchmark's test split.

* PCA reconstruction error (95 % of the variance), per pixel, mean over channels.
* patch-kNN: raw 8x8xC patches at stride 2, distance to the nearest of 30,000 seeded training patches.
* filter-bank kNN (the stronger classical one): per pixel, a rotation-invariant multi-scale filter bank in the
  manner of Varma & Zisserman's MR8 (edge and bar filters at three scales and six orientations, the largest
  response over orientations; a Gaussian and a Laplacian of Gaussian), rectified and averaged over a Gaussian
  window (σ 3: the local texture statistics), plus the locally smoothed intensity; per channel. Each feature is
  standardised on the training pixels; a pixel's distance to the nearest of 30,000 seeded training pixels' features
  (stride-2 grid, upsampled), the same search as the patch-kNN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MEMORY = 30000
STRIDE = 2
SIGMA = 2.0


def metrics(scores, labels, maps, masks) -> dict:
    """Image AUROC, pixel AUROC and PRO of scores [N] and maps [N, S, S] against labels [N] and masks [N, S, S]."""
    from sklearn.metrics import roc_auc_score

    from skipgan.metrics import pixel_metrics

    pm = pixel_metrics(maps, masks)
    return {"image_auroc": float(roc_auc_score(labels, scores)), "pixel_auroc": pm["pixel_auroc"], "pro": pm["pro"]}


def _nearest(memory: torch.Tensor, queries: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Euclidean distance of each query row to its nearest memory row (exact, float64 re-check not needed for a
    baseline: cdist's matrix form is accurate to ~1e-6 relative at these magnitudes)."""
    out = [torch.cdist(queries[i : i + block], memory).amin(1) for i in range(0, len(queries), block)]
    return torch.cat(out) if out else torch.empty(0)


def _draw(rows: torch.Tensor, memory: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return rows[torch.from_numpy(rng.choice(len(rows), size=min(memory, len(rows)), replace=False))]


def _grid_to_image(d: torch.Tensor, n: int, gh: int, gw: int, size: int) -> torch.Tensor:
    """Distances on a patch or pixel grid [n·gh·gw] -> maps [n, size, size] (bilinear)."""
    g = d.reshape(n, 1, gh, gw).float()
    return F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def patch_knn_maps(train, *image_sets, seed: int = 0, k: int = 8, stride: int = STRIDE, memory: int = MEMORY) -> list:
    """The patch-kNN baseline's raw maps, one [N, S, S] float32 tensor per image set: every k x k x C patch at
    `stride`, its distance to the nearest of `memory` seeded training patches, the grid upsampled to the image."""
    c = train.shape[1]
    tr = _draw(F.unfold(train.float(), k, stride=stride).transpose(1, 2).reshape(-1, k * k * c), memory, seed)
    out = []
    for images in image_sets:
        te = F.unfold(images.float(), k, stride=stride).transpose(1, 2)  # [N, L, k*k*C]
        n, L = te.shape[:2]
        side = int(math.isqrt(L))
        out.append(_grid_to_image(_nearest(tr, te.reshape(-1, k * k * c)), n, side, side, images.shape[-1]))
    return out


# ---------------------------------------------------------------------------------------------------- filter bank
SCALES = ((0.5, 1.5), (1.0, 3.0), (2.0, 6.0))  # (σ across, σ along) of the edge and bar filters: MR8's at half size
ORIENTATIONS = 6
WINDOW = 3.0  # σ of the Gaussian window the rectified responses are averaged over


def _kernel(sx: float, sy: float, theta: float, order: int, radius: int) -> torch.Tensor:
    """An anisotropic Gaussian derivative of `order` (1: edge, 2: bar) across the direction theta, zero mean, unit
    L1 norm."""
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    u = xx * math.cos(theta) + yy * math.sin(theta)  # across
    v = -xx * math.sin(theta) + yy * math.cos(theta)  # along
    g = torch.exp(-0.5 * (u / sx) ** 2 - 0.5 * (v / sy) ** 2)
    k = -u / sx**2 * g if order == 1 else (u**2 / sx**4 - 1 / sx**2) * g
    k = k - k.mean()
    return k / k.abs().sum()


def _isotropic(sigma: float, radius: int, log: bool) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    q = (xx**2 + yy**2) / sigma**2
    g = torch.exp(-0.5 * q)
    if not log:
        return g / g.sum()
    k = (q - 2) * g
    k = k - k.mean()
    return k / k.abs().sum()


def filter_bank() -> tuple[torch.Tensor, int]:
    """(kernels [2·len(SCALES)·ORIENTATIONS + 2, 1, K, K] float32, radius): edge and bar filters per scale and
    orientation (scale-major, edge before bar), then a Gaussian (σ 2) and a Laplacian of Gaussian (σ 2)."""
    radius = int(math.ceil(3 * max(sy for _, sy in SCALES)))
    ks = [_kernel(sx, sy, math.pi * o / ORIENTATIONS, order, radius)
          for sx, sy in SCALES for order in (1, 2) for o in range(ORIENTATIONS)]
    ks += [_isotropic(2.0, radius, log=False), _isotropic(2.0, radius, log=True)]
    return torch.stack(ks)[:, None].float(), radius


def filter_bank_features(images: torch.Tensor) -> torch.Tensor:
    """[N, C, S, S] -> [N, 8·C, S, S]: per channel MR8's eight: the 6 largest edge and bar responses over
    orientations and the |LoG|, rectified and window-averaged, and the Gaussian-smoothed intensity."""
    bank, radius = filter_bank()
    n, c, s, _ = images.shape
    x = F.pad(images.float().reshape(n * c, 1, s, s), 4 * [radius], mode="reflect")
    r = F.conv2d(x, bank)  # [N·C, 2·3·6 + 2, S, S]
    edge_bar = r[:, : 2 * len(SCALES) * ORIENTATIONS].reshape(n * c, 2 * len(SCALES), ORIENTATIONS, s, s)
    mr = edge_bar.abs().amax(2)  # rotation invariance: the largest response over orientations
    rect = torch.cat([mr, r[:, -1:].abs()], 1)  # 6 max responses and |LoG|: rectified
    w, wr = _isotropic(WINDOW, int(math.ceil(3 * WINDOW)), log=False).float()[None, None], int(math.ceil(3 * WINDOW))
    avg = F.conv2d(F.pad(rect.reshape(-1, 1, s, s), 4 * [wr], mode="reflect"), w).reshape(n * c, rect.shape[1], s, s)
    feats = torch.cat([avg, r[:, -2:-1]], 1)  # + the Gaussian-smoothed intensity
    return feats.reshape(n, c * feats.shape[1], s, s)


def filter_bank_knn_maps(train, *image_sets, seed: int = 0, stride: int = STRIDE, memory: int = MEMORY) -> list:
    """The filter-bank kNN baseline's raw maps, one [N, S, S] tensor per image set."""
    ft = filter_bank_features(train)
    mu, sd = ft.mean((0, 2, 3), keepdim=True), ft.std((0, 2, 3), keepdim=True).clamp_min(1e-6)

    def rows(f):
        f = ((f - mu) / sd)[:, :, ::stride, ::stride]
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]), f.shape[2], f.shape[3]

    mem = _draw(rows(ft)[0], memory, seed)
    out = []
    for images in image_sets:
        q, gh, gw = rows(filter_bank_features(images))
        out.append(_grid_to_image(_nearest(mem, q), len(images), gh, gw, images.shape[-1]))
    return out


# ---------------------------------------------------------------------------------------------------- all of them
def baselines(splits, sigma: float = SIGMA, seed: int = 0) -> dict[str, dict]:
    """{method: metrics} of every baseline on a category's splits (skipgan.data.datasets.load_splits, with masks)."""
    from sklearn.decomposition import PCA

    from skipgan.anomaly_map import smooth

    n_tr, n_te = len(splits.train), len(splits.test)
    train = splits.train.float().numpy().reshape(n_tr, -1)
    test = splits.test.float().numpy().reshape(n_te, -1)
    y, masks = splits.test_labels.numpy(), splits.test_masks.numpy()
    shape = splits.test.shape
    out = {}
    pca = PCA(n_components=0.95, svd_solver="full", random_state=seed).fit(train)
    err = ((test - pca.inverse_transform(pca.transform(test))) ** 2).reshape(shape).mean(1)
    maps = smooth(err, sigma)
    out["PCA (max of map)"] = metrics(maps.reshape(n_te, -1).max(1), y, maps, masks)
    out["PCA (mean error)"] = metrics(err.reshape(n_te, -1).mean(1), y, maps, masks)
    for name, fn in (("patch-kNN (max)", patch_knn_maps), ("filter-bank kNN (max)", filter_bank_knn_maps)):
        maps = smooth(fn(splits.train, splits.test, seed=seed)[0], sigma)
        out[name] = metrics(maps.reshape(n_te, -1).max(1), y, maps, masks)
    return out
