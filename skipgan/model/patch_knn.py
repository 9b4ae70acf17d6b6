"""The 'knn' anomaly map: how far each patch lies from the nearest normal one, by its discriminator texture
descriptor and by its pixel intensities.

Why: the reconstruction error cannot see a defect that is *smoother* than its background. After a short training
the generator's reconstruction of a fine texture (grass, gravel) is nearly flat, so the error map measures local
contrast, and a smooth blob or a pasted low-contrast texture scores *below* the normal texture around it
(benchmarks/accuracy/local_defects.py breakdown). The discriminator, trained to tell real texture from blurry
reconstructions, has first-level filters tuned to exactly that difference. Their local energy, compared with a
memory of normal patches, finds both kinds of defect.

    a        = D's first pyramid level on x: LeakyReLU(conv(x)), [N, ndf, isize/2, isize/2] (the engine already
               computes it for the score: no second pass)
    energy   = |conv(x)|, recovered exactly from a (negative values were scaled by the LeakyReLU slope)
    texture  = energy ** `power` averaged over a `window` x `window` neighbourhood, stride 1, only where the whole
               window lies on the grid (border 'valid')
    pixels   = the 4 x 4 patch of x under each inner cell of that grid (the cell's own receptive field), in
               whitened coordinates: (p − μ) W with μ, W = Σ^(−1/2) of the drawn normal patches (ridge WHITEN_RIDGE);
               with relative_sigma > 0 (not the default), the patches of x less its local mean (the maps' smoothing)
    distance = per part, the Euclidean distance to the nearest row of its memory: `memory_size` texture
               descriptors and `intensity_memory` pixel patches drawn (seeded, without replacement) from every
               position of every normal training image; each cell of the grid without a valid position of its own
               reads the nearest one's (whose window covers it too)
    joined   = max over the parts of (distance − μ) / σ, μ and σ of that part's distances over held-out normal
               images (the trainer's validation share), so that neither part's scale decides
    raw map  = joined upsampled (bilinear) to isize x isize

The raw map is then smoothed and normalised like the error map (skipgan/anomaly_map.py, statistics of its own from
the validation normals, which are not in the memories) and the 'knn' aggregation scores an image by its maximum.

Settings chosen on the development split of the local-defect benchmark (`make --dev`: train and test crops both
from the training columns; `local_defects.py knn` re-fits memories with other settings), never on its reported test
split (docs/scoring-and-maps.md, "The knn map"): the first level rather than deeper levels or the generator's encoder, its energy
rather than signed activations, k = 1, power 0.5, window 7. Why the square root: the energy is heavy-tailed, so in
a Euclidean distance a few high-contrast edges outweigh everything else; its square root (the variance-stabilising
transform of a magnitude) lets the quiet regions count, where smooth blobs and low-contrast foreign textures sit.
Why valid windows: a window cut at the border averages fewer cells, so its descriptor is noisier than any in the
memory and the image maximum lands on the border of normal images (dev mean image AUROC 0.929 -> 0.961). Why the
intensity part: the discriminator's filters are tuned to fine contrast and compress the intensity geometry that
separates a mid-grey blob or a pasted texture from a regular pattern like brick (dev brick 0.928 -> 0.986;
mean 0.961 / 0.949 / 0.871 -> 0.979 / 0.958 / 0.896 image / pixel AUROC / PRO). Why whitened pixel patches (a
Mahalanobis distance): raw patches vary most along a few directions (the patch's mean level, its gradient), so a
Euclidean distance between them is those directions' and a defect that differs in fine structure or in colour at the
same brightness counts for little; whitening gives every direction of normal variation the same weight. Taken on
the development split, where it changes nothing (0.980 / 0.958 / 0.895 -> 0.980 / 0.958 / 0.892; whitening the
texture part too lowered it: not taken), then measured once on the held-out families B, C, D: image AUROC 0.71 /
0.88 / 0.77 -> 0.78 / 0.92 / 0.79, pixel AUROC 0.65 / 0.81 / 0.80 -> 0.66 / 0.82 / 0.87 (docs/accuracy.md,
"Benchmark families").
"""

import dataclasses
import math
import time
from typing import Any, Final, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..anomaly_map import gaussian_kernel, reflect_index, smooth_with
from .unet import LEAKY_SLOPE

# Distance blocks: QUERY_BLOCK queries x MEMORY_BLOCK memory rows (16 MB of fp32 partial distances at most; 12 MB for
# the default intensity memory of 3,000 rows) stay in the last-level cache between the GEMM that writes them and the
# scan that reads them. Measured on the 2-core CPU, 16,384 queries against 30,000 x 64: 0.56 s, against 1.77 s for
# whole 4096-query rows of the distance matrix; with the coreset's memories, 1,024 queries a block ran 5-10 % faster
# than 512 (AMD Zen 5, oneDNN's GEMM), 256 15 % slower.
QUERY_BLOCK, MEMORY_BLOCK = 1024, 4096
# Nearest candidates by the GEMM's distance whose exact distance is computed (nearest_distances): the GEMM's rounding
# error in |q − m|² is ~1e-7 of |q|² + |m|², so only rows that near-tie with the nearest can swap places with it.
RERANK = 8
# The whitening's ridge, as a share of the patches' mean variance: directions of (nearly) no variation in the normal
# patches (a constant border, a saturated channel) are scaled by at most 1/sqrt(ridge) of a typical one instead of
# without bound. Fixed a priori, not tuned.
WHITEN_RIDGE = 0.01


BORDERS = ("valid", "cut")


@dataclasses.dataclass(frozen=True)
class KnnSettings:
    window: int = 7  # descriptor neighbourhood, in cells of D's first level (2 x 2 input pixels each)
    memory_size: int = 10000  # texture descriptors kept from the normal training images
    # exponent of the energy before averaging; model files written before it was a setting used 1 (from_file)
    power: float = 0.5
    # "valid": texture descriptors only where the whole window lies on D's grid; "cut": windows cut at the border
    # (fewer cells, so noisier: what files from before this setting hold)
    border: str = "valid"
    # 4 x 4 pixel patches kept for the intensity part (0: texture part only, as files from before it)
    intensity_memory: int = 30000
    # the share of each drawn memory kept by a greedy coreset (k-centre, as PatchCore): the rows that cover the
    # draw best, so the search is 10x cheaper at the same distances to the nearest normal patch (1: the draw itself,
    # what files from before this setting hold). 0.1 chosen on the local-defect development split (mean image /
    # pixel AUROC / PRO 0.979 / 0.958 / 0.896 with the whole draw, 0.980 / 0.958 / 0.895 at 0.1, 0.976 / 0.959 /
    # 0.895 at 0.05; docs/accuracy.md)
    coreset: float = 0.1
    # the intensity part's pixel patches compared in whitened coordinates (a Mahalanobis distance; files from before
    # this setting: raw patches)
    intensity_whiten: bool = True
    # > 0: the intensity part's patches are taken from the image less its local mean (a Gaussian of this σ, in
    # pixels at isize): a patch is compared by how it differs from its surroundings, so a tint or a level that is
    # normal somewhere in the training set but not where it sits shows (stains on colour data whose tint varies
    # across images: held-out family D 0.79 / 0.87 -> 0.86 / 0.92 image / pixel AUROC). 0, the default: the patches
    # themselves. Not the default because family C's pixel AUROC fell by 0.003 (mean of three memory draws), and a
    # change that lowers any held-out family is not taken (docs/accuracy.md, "Relative pixel patches"). σ 4 was
    # fixed a priori (about a stain's radius at isize 64), not tuned
    relative_sigma: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.window, int) and self.window >= 1 and self.window % 2 == 1):
            raise ValueError(f"knn_window={self.window!r}: must be an odd positive integer (cells of the "
                             "discriminator's first level)")
        if not (isinstance(self.memory_size, int) and self.memory_size >= 1):
            raise ValueError(f"knn_memory={self.memory_size!r}: must be a positive integer (descriptors kept)")
        if not (isinstance(self.power, (int, float)) and 0 < self.power <= 4):
            raise ValueError(f"knn_power={self.power!r}: must be in (0, 4] (0.5 = square root of the energy)")
        if self.border not in BORDERS:
            raise ValueError(f"knn border={self.border!r}: expected one of {', '.join(BORDERS)}")
        if not (isinstance(self.intensity_memory, int) and self.intensity_memory >= 0):
            raise ValueError(f"knn_intensity_memory={self.intensity_memory!r}: must be a non-negative integer "
                             "(0 = no intensity part)")
        if not (isinstance(self.coreset, (int, float)) and 0 < self.coreset <= 1):
            raise ValueError(f"knn_coreset={self.coreset!r}: must be in (0, 1] (the share of each memory kept; 1 = "
                             "all of the draw)")
        if not isinstance(self.intensity_whiten, bool):
            raise ValueError(f"knn_intensity_whiten={self.intensity_whiten!r}: must be True or False")
        if not (isinstance(self.relative_sigma, (int, float)) and not isinstance(self.relative_sigma, bool)
                and 0 <= self.relative_sigma <= 64):
            raise ValueError(f"knn_relative_sigma={self.relative_sigma!r}: must be in [0, 64] pixels (0 = the pixel "
                             "patches themselves; 4 = less their local mean over about 8 pixels)")

    def check(self, isize: int) -> None:
        """The settings at image size `isize`: the window must fit on D's first level (isize/2 cells a side)."""
        check_window(self.window, isize // 2)


def check_window(window: int, cells: int) -> None:
    """The one window rule: a descriptor window fits on D's first level, `cells` a side (isize/2)."""
    if window > cells:
        raise ValueError(f"knn_window={window!r}: must be at most {cells} at isize {2 * cells} (the "
                         "discriminator's first level has isize/2 cells a side)")


def first_level(model, x: torch.Tensor) -> torch.Tensor:
    """D's first pyramid level on x, as the eager model computes it (the engine taps its own buffer instead)."""
    return model.discriminator.pyramid[0](x)


def descriptors(level0: torch.Tensor, window: int, power: float = KnnSettings.power,
                border: str = KnnSettings.border) -> torch.Tensor:
    """First-level activations [N, C, h, w] (any float dtype and layout) -> fp32 texture descriptors [N, C, h', w']:
    h' = h - window + 1 for border 'valid', h for 'cut'."""
    if border == "valid" and window > 1:
        check_window(window, min(level0.shape[-2:]))
    return energy_descriptors(level0, window, power, border == "valid", LEAKY_SLOPE)


def energy_descriptors(level0: torch.Tensor, window: int, power: float, valid: bool, slope: float) -> torch.Tensor:
    """descriptors without the argument checks, in the form graphs hold (TorchScript, torch.export: constants such
    as D's LeakyReLU `slope` are arguments)."""
    a = level0.float()
    # |pre-activation|: a where a >= 0, else a / slope negated; as a maximum, since -a/slope <= 0 <= a for a >= 0
    energy = torch.maximum(a, a * (-1.0 / slope))
    if power != 1.0:
        energy = energy.pow(power)
    if window == 1:
        return energy.contiguous()
    # channels_last (the engine's layout already; pooling runs 4x faster there), the window as two 1-D passes
    energy = energy.contiguous(memory_format=torch.channels_last)
    if valid:
        return F.avg_pool2d(F.avg_pool2d(energy, [window, 1], 1, 0), [1, window], 1, 0)
    pad = window // 2
    return F.avg_pool2d(F.avg_pool2d(energy, [window, 1], 1, [pad, 0], count_include_pad=False), [1, window], 1,
                        [0, pad], count_include_pad=False)


def pixel_patches(x: torch.Tensor) -> torch.Tensor:
    """Images [N, nc, H, W] in [-1, 1] -> fp32 intensity descriptors [N, nc·16, H/2 − 2, W/2 − 2]: the 4 x 4 pixel
    patch under each cell of D's first level (kernel 4, stride 2, padding 1), border cells left out (their patch
    reaches into the zero padding)."""
    x = x.float()[..., 1:-1, 1:-1]
    h, w = (x.shape[-2] - 4) // 2 + 1, (x.shape[-1] - 4) // 2 + 1
    return F.unfold(x, 4, stride=2).view(x.shape[0], -1, h, w)


def relative_to_local_mean(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Images [N, nc, H, W] -> fp32 images less their local mean: each channel smoothed by the maps' one smoothing
    (skipgan.anomaly_map: `kernel` = gaussian_kernel(σ) in fp32, its border rule computed here for this size), so
    the fit, the map and every export take the same patches."""
    x = x.float()
    n, c, h, w = x.shape
    r = (kernel.shape[0] - 1) // 2
    mean = smooth_with(x.reshape(n * c, h, w), kernel, reflect_index(h, r, x.device), reflect_index(w, r, x.device))
    return x - mean.view(n, c, h, w)


def intensity_patches(x: torch.Tensor, settings: KnnSettings) -> torch.Tensor:
    """The intensity part's pixel patches of images x under `settings` (relative_sigma), before any whitening."""
    if settings.relative_sigma > 0:
        x = relative_to_local_mean(x, local_mean_kernel(settings.relative_sigma).to(x.device))
    return pixel_patches(x)


def local_mean_kernel(sigma: float) -> torch.Tensor:
    """The local mean's kernel for relative_sigma σ: the smoothing's Gaussian in fp32 ([1] for σ 0: unused)."""
    return gaussian_kernel(sigma).float() if sigma > 0 else torch.ones(1)


@torch.no_grad()
def whitening(rows: torch.Tensor, ridge: float = WHITEN_RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal descriptors [N, C] -> (μ [C], W [C, C]) fp32 with (rows − μ) W of identity covariance: W = (Σ + r·I)^(−1/2),
    r = ridge × the mean variance (computed in fp64); constant rows (no variance at all) get W = I."""
    x = rows.double()
    mu = x.mean(0)
    c = (x - mu).T @ (x - mu) / max(len(x) - 1, 1)
    var = float(c.diagonal().mean())
    if var <= 0:  # constant patches: nothing to weigh, distances stay as they are
        return mu.float(), torch.eye(c.shape[0])
    ev, vec = torch.linalg.eigh(c + ridge * var * torch.eye(c.shape[0], dtype=c.dtype))
    return mu.float(), ((vec * ev.rsqrt()) @ vec.T).float()


def whiten(rows: torch.Tensor, mean: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Descriptors [N, C] in the whitened coordinates of `whitening`'s (μ, W): (rows − μ) W. The one spelling of it
    (the fitted memory, the queries of every path)."""
    return torch.mm(rows - mean, w)


def _rows(desc: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] -> [N·h·w, C] (one descriptor per position)."""
    return desc.permute(0, 2, 3, 1).reshape(-1, desc.shape[1])


class _Sample:
    """`size` of `total` rows drawn without replacement (all of them when there are fewer), gathered batch by batch
    as the rows are computed: memory O(size), not O(total) (at isize 256 every descriptor of a few thousand
    images would be tens of GB). Row k of the result is row perm[k] of all rows in order, perm the generator's
    randperm(total)[:size]: the same draw as sampling the concatenated rows."""

    def __init__(self, total: int, size: int, channels: int, gen: torch.Generator):
        self.pick = torch.randperm(total, generator=gen)[:size] if total > size else None
        self.out = torch.empty(min(total, size), channels)
        self.seen = 0

    def add(self, rows: torch.Tensor) -> None:
        lo, hi = self.seen, self.seen + len(rows)
        if self.pick is None:
            self.out[lo:hi] = rows
        else:
            k = ((self.pick >= lo) & (self.pick < hi)).nonzero()[:, 0]
            self.out[k] = rows[self.pick[k].to(rows.device) - lo].cpu()
        self.seen = hi


@torch.no_grad()
def greedy_coreset(rows: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """The rows [N, C] a greedy k-centre coreset keeps (k = ceil(share · N), at least 1), in the order chosen: start
    at a seeded random row, then repeatedly the row farthest from every row kept so far (PatchCore's selection,
    without its random projection: these descriptors have 16-64 values already). share 1: all rows, unchanged."""
    n = rows.shape[0]
    k = max(1, math.ceil(share * n))
    if k >= n:
        return rows
    x = rows.float()
    pick = torch.empty(k, dtype=torch.long)
    i = int(torch.randint(n, (1,), generator=gen))
    nearest = torch.full((n,), float("inf"))
    for j in range(k):
        pick[j] = i
        nearest = torch.minimum(nearest, (x - x[i]).pow(2).sum(1))
        i = int(nearest.argmax())
    return rows[pick]


def _to_grid(d: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Distances [N, h', w'] on the centred sub-grid of valid positions -> [N, h, w]: each border cell takes the
    distance of the nearest valid position (whose window covers it too)."""
    top, left = (h - d.shape[1]) // 2, (w - d.shape[2]) // 2
    if top == 0 and left == 0:
        return d
    return F.pad(d[:, None], [left, w - d.shape[2] - left, top, h - d.shape[1] - top], mode="replicate")[:, 0]


def nearest_in_memory(b: torch.Tensor, mem: torch.Tensor, mem_sq: torch.Tensor, rerank: int = RERANK,
                      memory_block: int = MEMORY_BLOCK, part: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Queries [Q, C] fp32 -> the exact Euclidean distance of each to its nearest row of `mem` [M, C] [Q]
    (mem_sq: the rows' squared norms). The memory is walked in `memory_block`-row blocks (a fixed count: graphs
    unroll it), the `rerank` nearest by the GEMM re-ranked exactly; `part` [>= Q, >= memory_block], when given,
    holds each block's partial distances (no allocation per block)."""
    k = min(rerank, mem.shape[0])
    cand_d: List[torch.Tensor] = []
    cand_i: List[torch.Tensor] = []
    for j in range(0, mem.shape[0], memory_block):
        m = mem[j : j + memory_block]
        if part is None:
            d = torch.addmm(mem_sq[j : j + memory_block][None], b, m.T, alpha=-2.0)
        else:
            d = part[: b.shape[0], : m.shape[0]]
            torch.addmm(mem_sq[j : j + memory_block][None], b, m.T, alpha=-2.0, out=d)
        v, idx = d.topk(min(k, m.shape[0]), 1, largest=False, sorted=False)
        cand_d.append(v)
        cand_i.append(idx + j)
    idx = torch.cat(cand_i, 1)
    if idx.shape[1] > k:  # the k best of the blocks' candidates
        idx = idx.gather(1, torch.cat(cand_d, 1).topk(k, 1, largest=False, sorted=False).indices)
    return (mem[idx] - b[:, None, :]).pow(2).sum(2).amin(1).sqrt()


_GEMM_CHOICE: dict[tuple[int, int, int], int] = {}  # (rows, width, threads) -> the faster GEMM, once per process


def choose_search_gemm(mem: torch.Tensor, mem_sq: torch.Tensor, query_block: int = QUERY_BLOCK) -> int:
    """The GEMM skipgan::nearest_distances searches `mem` with on this CPU (0: at::addmm, MKL here; 1: oneDNN's
    matmul), by measurement: each times one block of `query_block` queries (the best of 3) and the faster is kept,
    once per memory shape and thread count in a process (a few milliseconds). Which is faster depends on the CPU: on
    an AMD Zen 5, oneDNN ran these shapes at twice MKL's speed. addmm where oneDNN is absent, or where fp32 matmuls
    may run in lower precision (torch.set_float32_matmul_precision), which the search's error bound does not
    cover."""
    if mem.is_cuda or not (ops.AVAILABLE and torch.backends.mkldnn.is_available()) \
            or torch.get_float32_matmul_precision() != "highest":
        return 0
    key = (mem.shape[0], mem.shape[1], torch.get_num_threads())
    if key not in _GEMM_CHOICE:
        g = torch.Generator().manual_seed(0)
        q = mem[torch.randint(mem.shape[0], (query_block,), generator=g)] + 0.01 * torch.randn(
            query_block, mem.shape[1], generator=g)
        best = []
        for gemm in (0, 1):
            times = []
            for _ in range(4):  # the first call warms up
                t0 = time.perf_counter()
                torch.ops.skipgan.nearest_distances(q, mem, mem_sq, query_block, MEMORY_BLOCK, gemm)
                times.append(time.perf_counter() - t0)
            best.append(min(times[1:]))
        _GEMM_CHOICE[key] = int(best[1] < best[0])
    return _GEMM_CHOICE[key]


def nearest_rows(q: torch.Tensor, mem: torch.Tensor, mem_sq: torch.Tensor, query_block: int = QUERY_BLOCK,
                 rerank: int = RERANK, memory_block: int = MEMORY_BLOCK, native: bool = False,
                 gemm: int = 0) -> torch.Tensor:
    """The exact distance of each query [Q, C] to its nearest memory row. native (CPU tensors, query_block > 0): the
    op skipgan::nearest_distances with GEMM `gemm` (choose_search_gemm), whose scan re-ranks only the rows within the
    GEMM's error bound of the nearest (a min and a compare per value); otherwise nearest_in_memory's fixed top-k, in
    `query_block`-row blocks (> 0: one block's partial distances stay in cache) or all at once (0: graphs whose query
    count is symbolic, torch.export and ONNX)."""
    if native and query_block > 0 and not q.is_cuda:
        return torch.ops.skipgan.nearest_distances(q, mem, mem_sq, query_block, memory_block, gemm)
    if query_block <= 0:
        return nearest_in_memory(q, mem, mem_sq, rerank, memory_block)
    out = torch.empty(q.shape[0], device=q.device)
    part = torch.empty(min(q.shape[0], query_block), min(mem.shape[0], memory_block), device=q.device)
    for i in range(0, q.shape[0], query_block):
        out[i : i + query_block] = nearest_in_memory(q[i : i + query_block], mem, mem_sq, rerank, memory_block, part)
    return out


@torch.no_grad()
def nearest_distances(desc: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Descriptors [N, C, h, w] -> Euclidean distance of each to its nearest memory row [N, h, w] fp32.

    The one distance definition of every path (eager model, engine, exports: nearest_rows / nearest_in_memory).
    Two steps, because the fast form is not a stable one: a GEMM gives |m|² − 2 q·m for every pair, which ranks the
    memory rows but cancels badly where q lies close to a row (|q|² and |m|² are large, their difference is not),
    and different GEMM kernels round it differently: on an AMD Zen 4 the engine's and the eager model's maps parted
    by 1.6 % there. So the GEMM only picks candidates — the rows within its error bound of each query's nearest
    (the native op) or its RERANK nearest (the torch form) — and the distance itself is summed exactly as
    Σ (q − m)² over them: it moves by at most |δq| when q moves by δq, whatever the kernel (and however the blocks
    are cut).
    """
    n, c, h, w = desc.shape
    mem = memory.float()
    return nearest_rows(_rows(desc).float(), mem, mem.pow(2).sum(1), QUERY_BLOCK, native=ops.AVAILABLE).view(n, h, w)


class KnnMap(nn.Module):
    """A PatchKnn's map as a module: the memories as buffers, the settings as constants. What every path runs: the
    eager model and the engine (PatchKnn.raw_maps) and the exports (skipgan/export/maps.py: TorchScript with
    query blocks, torch.export / ONNX without, query_block = 0)."""

    window: Final[int]
    power: Final[float]
    slope: Final[float]
    rerank: Final[int]
    memory_block: Final[int]
    valid: Final[bool]
    joined: Final[bool]
    whitened: Final[bool]
    relative: Final[bool]
    query_block: Final[int]
    native: Final[bool]
    gemm_texture: Final[int]
    gemm_intensity: Final[int]
    t_mean: Final[float]
    t_std: Final[float]
    i_mean: Final[float]
    i_std: Final[float]

    def __init__(self, knn: "PatchKnn", query_block: int = QUERY_BLOCK):
        super().__init__()
        st = knn.settings
        self.window, self.power, self.valid = st.window, float(st.power), st.border == "valid"
        self.query_block, self.rerank, self.memory_block, self.slope = query_block, RERANK, MEMORY_BLOCK, LEAKY_SLOPE
        self.native = ops.AVAILABLE and query_block > 0  # skipgan::nearest_distances (CPU)
        self.joined = knn.intensity is not None
        (self.t_mean, self.t_std), (self.i_mean, self.i_std) = (
            tuple(float(v) for v in knn.stats.get(k, (0.0, 1.0))) for k in ("texture", "intensity"))
        intensity = knn.intensity if knn.intensity is not None else torch.zeros(0, 16)
        for name, m in (("memory", knn.memory), ("intensity", intensity)):
            self.register_buffer(name, m)
            self.register_buffer(f"{name}_sq", m.pow(2).sum(1))
        # the intensity part's whitening (its memory rows are stored whitened); identity placeholders without one
        self.whitened = knn.whitening is not None
        mean, w = knn.whitening if knn.whitening is not None else (torch.zeros(intensity.shape[1]),
                                                                   torch.eye(intensity.shape[1]))
        self.register_buffer("intensity_mean", mean)
        self.register_buffer("intensity_whitening", w)
        # the local mean's kernel when the pixel patches are relative to it (settings.relative_sigma)
        self.relative = st.relative_sigma > 0
        self.register_buffer("relative_kernel", local_mean_kernel(st.relative_sigma))
        # the search's GEMM, measured on this machine for each memory (an export carries the exporter's choice)
        self.gemm_texture = choose_search_gemm(self.memory, self.memory_sq, query_block) if self.native else 0
        self.gemm_intensity = choose_search_gemm(self.intensity, self.intensity_sq, query_block) \
            if self.native and self.joined else 0

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The intensity part's pixel patches of x (intensity_patches, with this module's kernel)."""
        if self.relative:
            x = relative_to_local_mean(x, self.relative_kernel)
        return pixel_patches(x)

    def _nearest(self, desc: torch.Tensor, mem: torch.Tensor, mem_sq: torch.Tensor, gemm: int,
                 whitened: bool = False) -> torch.Tensor:
        n, c, h, w = desc.shape
        q = desc.permute(0, 2, 3, 1).reshape(-1, c)
        if whitened:  # the coordinates the intensity memory is stored in
            q = whiten(q, self.intensity_mean, self.intensity_whitening)
        return nearest_rows(q, mem, mem_sq, self.query_block, self.rerank, self.memory_block, self.native,
                            gemm).view(n, h, w)

    def parts(self, level0: torch.Tensor, x: torch.Tensor) -> List[torch.Tensor]:
        """[texture distances(, intensity distances)], each on its own grid of valid positions. In fp32 under
        autocast too: a bf16-AMP training's validation scores the knn map in an autocast region, which would run the
        local mean's convolution, the whitening product and the search's GEMM in bf16 (exports and the engine run
        without one)."""
        if torch.jit.is_scripting():
            return self._parts(level0, x)
        return self._parts_fp32(level0, x)

    @torch.jit.unused
    def _parts_fp32(self, level0: torch.Tensor, x: torch.Tensor) -> List[torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            return self._parts(level0, x)

    def _parts(self, level0: torch.Tensor, x: torch.Tensor) -> List[torch.Tensor]:
        out = [self._nearest(energy_descriptors(level0, self.window, self.power, self.valid, self.slope), self.memory,
                             self.memory_sq, self.gemm_texture)]
        if self.joined:
            out.append(self._nearest(self._pixels(x), self.intensity, self.intensity_sq, self.gemm_intensity,
                                     self.whitened))
        return out

    def distances(self, level0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The distance map on D's grid [N, h, w] fp32 (see PatchKnn.distances)."""
        h, w = level0.shape[-2], level0.shape[-1]
        p = self.parts(level0, x)
        texture = _to_grid(p[0], h, w)
        if not self.joined:
            return texture
        intensity = _to_grid(p[1], h, w)
        return torch.maximum((texture - self.t_mean) / self.t_std, (intensity - self.i_mean) / self.i_std)

    def forward(self, level0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """First-level activations [N, C, isize/2, isize/2] and the images [N, nc, isize, isize] -> the raw knn map
        [N, isize, isize] fp32 (upsampled bilinearly)."""
        d = self.distances(level0, x)[:, None]
        size = [x.shape[-2], x.shape[-1]]
        return F.interpolate(d, size=size, mode="bilinear", align_corners=False)[:, 0]


class PatchKnn:
    """Memories of normal descriptors and the distance maps against them. Plain data: the model carries it as
    `model.knn` (None when the model has none) and model files store the tensors `knn_memory` (texture) and
    `knn_intensity_memory`.

    `stats`: per part, the mean and std of its distances over held-out normal images (fit's `calibration`), which
    put the two parts on one scale before their maximum is taken; empty without an intensity part.
    `whitening`: the intensity part's (μ [C], W [C, C]) when settings.intensity_whiten (its memory rows are then
    stored whitened, (p − μ) W; files `knn_intensity_mean`, `knn_intensity_whitening`)."""

    def __init__(self, memory: torch.Tensor, settings: KnnSettings = KnnSettings(),
                 intensity: torch.Tensor | None = None, stats: dict[str, tuple[float, float]] | None = None,
                 whitening: tuple[torch.Tensor, torch.Tensor] | None = None):
        for name, m in (("knn", memory), ("knn intensity", intensity)):
            if m is not None and (m.dim() != 2 or m.shape[0] < 1):
                raise ValueError(f"{name} memory must be [M >= 1, C], got shape {tuple(m.shape)}")
        if (intensity is not None) != bool(stats):
            raise ValueError("a knn intensity memory comes with the statistics of both parts, and only with one")
        wants = intensity is not None and settings.intensity_whiten
        if (whitening is not None) != wants:
            raise ValueError("a knn intensity memory comes with its whitening (μ, W) when its settings whiten it, "
                             "and only then")
        if whitening is not None:
            c = intensity.shape[1]
            if tuple(whitening[0].shape) != (c,) or tuple(whitening[1].shape) != (c, c):
                raise ValueError(f"knn intensity whitening must be [{c}] and [{c}, {c}] for {c}-value patches, got "
                                 f"{tuple(whitening[0].shape)} and {tuple(whitening[1].shape)}")
            whitening = (whitening[0].float().contiguous(), whitening[1].float().contiguous())
        self.whitening = whitening
        self.memory = memory.float().contiguous()
        self.intensity = intensity.float().contiguous() if intensity is not None else None
        self.stats = dict(stats or {})
        self.settings = settings
        self._on: dict[tuple[torch.device, int], KnnMap] = {}

    @classmethod
    @torch.no_grad()
    def fit(cls, model, images: torch.Tensor, settings: KnnSettings = KnnSettings(), seed: int = 0,
            batch_size: int = 64, calibration: torch.Tensor | None = None) -> "PatchKnn":
        """The memories from normal training images [N, C, isize, isize] in [-1, 1] (model in eval mode), and with
        an intensity part the statistics of both parts' distances on `calibration`: held-out normal images (the
        trainer passes its validation share). Without them a seeded tenth of `images` is held out for it (their
        own positions, possibly all in the memory, would lie at distance 0)."""
        if settings.intensity_memory and calibration is None:
            if len(images) < 2:
                raise ValueError("a knn memory with an intensity part needs at least 2 normal images (one held out "
                                 "to calibrate it)")
            perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
            n_cal = max(1, len(images) // 10)
            images, calibration = images[perm[n_cal:]], images[perm[:n_cal]]
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        # fp32 whatever region it is called from (an AMP training's autocast would run the whitening product and the
        # local mean's convolution in bf16): a memory is the model's data, the same from any caller
        with torch.autocast(device.type, enabled=False):
            try:
                gen, samples = torch.Generator().manual_seed(seed), None
                for i in range(0, len(images), batch_size):
                    x = images[i : i + batch_size].to(device)
                    rows = [_rows(descriptors(first_level(model, x), settings.window, settings.power, settings.border))]
                    if settings.intensity_memory:
                        rows.append(_rows(intensity_patches(x, settings)))
                    if samples is None:  # positions per image are known now: draw both samples (texture first)
                        sizes = (settings.memory_size, settings.intensity_memory)
                        samples = [_Sample(len(images) * (len(r) // len(x)), size, r.shape[1], gen)
                                   for r, size in zip(rows, sizes)]
                    for sample, r in zip(samples, rows):
                        sample.add(r)
                white = None
                if settings.intensity_memory and settings.intensity_whiten:  # from the whole draw, before the coreset
                    white = whitening(samples[1].out)
                    samples[1].out = whiten(samples[1].out, *white)
                kept = [greedy_coreset(sample.out, settings.coreset, gen) for sample in samples]
                if not settings.intensity_memory:
                    return cls(kept[0], settings)
                knn = cls(kept[0], settings, kept[1], stats={"texture": (0.0, 1.0), "intensity": (0.0, 1.0)},
                          whitening=white)
                parts = [knn._part_distances(first_level(model, x), x) for x in
                         (calibration[i : i + batch_size].to(device) for i in range(0, len(calibration), batch_size))]
                dists = {k: torch.cat([p[k].flatten().cpu() for p in parts]) for k in parts[0]}
                # a spread floor keeps a degenerate part (constant images) from dividing by zero
                knn.stats = {k: (float(v.mean()), max(float(v.std()) if v.numel() > 1 else 0.0, 1e-6))
                             for k, v in dists.items()}
                knn._on.clear()  # the modules built for the calibration hold the placeholder statistics
                return knn
            finally:
                model.train(was_training)

    def module(self, device: torch.device | str = "cpu", query_block: int = QUERY_BLOCK) -> KnnMap:
        """This memory's KnnMap on `device` (built once per device and blocking, then reused)."""
        key = (torch.device(device), query_block)
        if key not in self._on:
            self._on[key] = KnnMap(self, query_block).to(key[0])
        return self._on[key]

    def _check(self, level0: torch.Tensor, x: torch.Tensor | None) -> None:
        """The inputs against the memories (one-line ValueErrors instead of a shape error deep in a GEMM)."""
        if self.settings.border == "valid" and self.settings.window > 1:
            check_window(self.settings.window, min(level0.shape[-2:]))
        if level0.shape[1] != self.memory.shape[1]:
            raise ValueError(f"knn memory holds {self.memory.shape[1]}-channel descriptors, the discriminator "
                             f"gives {level0.shape[1]}")
        if self.intensity is not None:
            if x is None:
                raise ValueError("this knn memory has an intensity part: pass the images too")
            if 16 * x.shape[1] != self.intensity.shape[1]:
                raise ValueError(f"knn intensity memory holds {self.intensity.shape[1]}-value patches, the images "
                                 f"give {16 * x.shape[1]} ({x.shape[1]} channels)")

    def _part_distances(self, level0: torch.Tensor, x: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """{part: nearest-memory distances on its own grid of valid positions}."""
        self._check(level0, x)
        parts = self.module(level0.device).parts(level0, x if x is not None else level0)
        return dict(zip(("texture", "intensity"), parts))

    @torch.no_grad()
    def distances(self, level0: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """First-level activations [N, C, h, w] (and the images x [N, nc, 2h, 2w] with an intensity part) -> the
        distance map on D's grid [N, h, w] fp32: the texture distance alone, or with an intensity part the larger
        of the two parts' distances, each in units of its own spread over normal images (KnnMap.distances)."""
        self._check(level0, x)
        return self.module(level0.device).distances(level0, x if x is not None else level0)

    def raw_maps(self, level0: torch.Tensor, isize: int, x: torch.Tensor | None = None) -> torch.Tensor:
        """First-level activations (and the images) -> raw knn maps [N, isize, isize] fp32 (upsampled bilinearly)."""
        d = self.distances(level0, x)[:, None]
        return F.interpolate(d, size=(isize, isize), mode="bilinear", align_corners=False)[:, 0]

    def to_meta(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.settings), **({"stats": self.stats} if self.stats else {})}

    @classmethod
    def from_file(cls, memory: torch.Tensor, meta: dict[str, Any], intensity: torch.Tensor | None = None,
                  whitening: tuple[torch.Tensor, torch.Tensor] | None = None) -> "PatchKnn":
        names = {f.name for f in dataclasses.fields(KnnSettings)}
        # files from before these settings: energy averages (power 1) over windows cut at the border, no intensity
        # part, the whole draw, raw pixel patches
        old = {"power": 1.0, "border": "cut", "intensity_memory": 0, "coreset": 1.0, "intensity_whiten": False}
        settings = KnnSettings(**{**old, **{k: v for k, v in meta.items() if k in names}})
        stats = {k: tuple(v) for k, v in (meta.get("stats") or {}).items()}
        return cls(memory, settings, intensity, stats, whitening)
