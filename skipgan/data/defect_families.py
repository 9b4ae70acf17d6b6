"""Three more local-defect benchmark families (B, C, D), with exact pixel ground truth, for testing only.

Family A is skipgan/data/synthetic_defects.py: foreign regions pasted in 2x-downscaled photographs of brick, grass
and gravel. Its development split is the ONLY data on which settings are chosen; families B, C and D are held-out
test families: nothing is tuned on them, they show whether what was chosen on A carries over to other textures and
other kinds of defect. `write_family(family, out)` writes one family in the MVTec AD layout that
`skipgan.data.datasets.load_splits("folder:<out>/<category>")` reads:

    <category>/train/good/NNN.png, test/good/NNN.png, test/<defect>/NNN.png, ground_truth/<defect>/NNN_mask.png

Patches are PATCH x PATCH (64). As in family A, training crops come from the left columns of each source image and
test crops (normal and abnormal) from disjoint right columns (TRAIN_COLS / TEST_COLS scaled to the image's width).
Masks are 0/255 8-bit, 255 = changed pixel. Only data that installs here: scikit-image's bundled images and
procedural textures (numpy / scipy). Every random draw comes from one numpy Generator seeded from
(seed, family, category index), so the bytes written depend on those alone.

B, "texture in texture" (16-bit grayscale). A region (ellipse or irregular smooth blob, 4-20 % of the patch) is
  replaced by a crop of ANOTHER texture whose mean and standard deviation are matched to the replaced pixels of the
  base patch: the region differs in structure only, not in brightness or contrast. Unlike family A, every
  texture is at native scale (no 2x downscaling) and the pasted texture is never an obviously different photograph
  (moon, cameraman) of its own brightness. Categories: `grass` (foreign: gravel, or Gaussian noise with grass's own
  power spectrum), `gravel` (foreign: grass, or noise with gravel's spectrum), `clouds` (procedural isotropic
  1/f^beta noise, beta drawn near 2 once per set; foreign: the same noise stretched along a random direction, or
  with another beta). Defect folder: `texture`.

C, "structural and low-contrast defects" (16-bit grayscale) on regular and natural textures: `weave` (procedural
  woven pattern, period 8-12 px, slowly jittered phase, mild noise), `tiles` (procedural grid of tiles with grout
  lines, per-tile shading and noise), `brick` (scikit-image's brick at native scale). Nothing is pasted; the
  patch's own pixels are altered: `crack` (random-walk polyline 1-2 px wide) and `scratch` (straight line 1-2.5 px
  wide), both darker or brighter by only 10-30 % of the patch's p1-p99 range; `blur` (Gaussian blur, sigma 1.5-3,
  inside an ellipse of 5-20 %); `warp` (a swirl or a push, a smooth displacement of 2-4 px that is zero at the
  border of an ellipse of 5-20 %); `inpaint` (an ellipse of 3-10 % filled by biharmonic inpainting from its border).
  A blur, warp or inpaint region that would change almost nothing (a flat area: the inside of a brick) is drawn
  again, so that no defect is invisible. Pixels change only inside the mask.

D, "colour defects" (8-bit RGB). Categories: `tissue` (scikit-image's immunohistochemistry at native scale),
  `fundus` (the interior of scikit-image's retina, clear of the black border, 2x area-averaged), `coloured_noise`
  (1/f luminance texture under a smoothly varying chroma field). Defect `stain`: a region (ellipse or blob, 1-8 %)
  is tinted: in YCbCr (BT.601) Y is kept and (Cb, Cr) shifted by 12-30 in a random direction, with a soft 1-px
  edge. The texture stays and the brightness does not change, so a detector that sees only luminance (or reduces
  colour to gray) cannot find it. The mask is where the tint is more than half its peak (the weaker half of the
  soft edge, at most a pixel, lies outside it).

The photographs are 8-bit; they get +-0.5 uniform dequantisation noise before cropping, so that normal and abnormal
16-bit patches alike have continuous values (otherwise every untouched pixel would sit on a multiple of 257 and
every altered one would not: a give-away that has nothing to do with the defect).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from scipy import ndimage

from skipgan.data.synthetic_defects import (
    PATCH,
    TEST_COLS,
    TRAIN_COLS,
    _write16,
    _write_mask,
    crop,
    ellipse_mask,
    line_mask,
    photo,
)

C_DEFECTS = ("crack", "scratch", "blur", "warp", "inpaint")
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "B": {"grass": ("texture",), "gravel": ("texture",), "clouds": ("texture",)},
    "C": {"weave": C_DEFECTS, "tiles": C_DEFECTS, "brick": C_DEFECTS},
    "D": {"tissue": ("stain",), "fundus": ("stain",), "coloured_noise": ("stain",)},
}
# B and D have one defect kind each: 30 abnormal images per category rather than 15 keep their AUROCs less noisy
# (C has five kinds, 75 per category).
N_PER_DEFECT = {"B": 30, "C": 15, "D": 30}
B_AREA, D_AREA = (0.04, 0.20), (0.01, 0.08)
C_AREA = {"blur": (0.05, 0.20), "warp": (0.05, 0.20), "inpaint": (0.03, 0.10)}
C_MIN_CHANGE = 0.04  # blur / warp / inpaint: least mean |change| in the region, as a fraction of p99 - p1
FUNDUS_BOX = (240, 1170)  # rows and columns of retina() (1411 x 1411) inside the fundus disc, clear of its border
N = PATCH * PATCH


@dataclass
class _Source:
    """What one category's patches are cropped from, and how its abnormal patches are made."""

    img: np.ndarray  # [H, W] or [H, W, 3], float 0..255
    size: int  # crop size before area-averaging to PATCH (PATCH: native scale)
    defect: Callable  # (kind, base patch, rng) -> (abnormal patch, mask)
    train_cols: tuple[int, int] = field(init=False)
    test_cols: tuple[int, int] = field(init=False)

    def __post_init__(self):
        self.train_cols, self.test_cols = _columns(self.img.shape[1])


def _columns(width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(training columns, test columns): family A's split of a 512 wide image, scaled to `width`."""
    return (0, width * TRAIN_COLS[1] // 512), (width * TEST_COLS[0] // 512, width)


# ------------------------------------------------------------------------------------------ shared pieces


def _dequantised(name: str, rng) -> np.ndarray:
    """A scikit-image photograph plus uniform +-0.5 noise: continuous values (see the module docstring)."""
    img = photo(name)
    return img + rng.uniform(-0.5, 0.5, img.shape)


def _power_noise(rng, shape: tuple[int, int], beta: float, stretch: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f^beta, zero mean, unit std; `stretch` > 1 elongates its structures
    `stretch` times along `angle` (radians). Made larger and cut, so that it does not wrap around."""
    h, w = shape
    hh, ww = h + h // 4, w + w // 4
    fy = np.fft.fftfreq(hh)[:, None]
    fx = np.fft.rfftfreq(ww)[None, :]
    fu = (fx * np.cos(angle) + fy * np.sin(angle)) * stretch  # compressed frequencies = stretched structures
    fv = -fx * np.sin(angle) + fy * np.cos(angle)
    f = np.hypot(fu, fv)
    f[0, 0] = np.inf  # no DC term
    v = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(hh, ww))) * f ** (-beta / 2), s=(hh, ww))[:h, :w]
    return (v - v.mean()) / v.std()


def _blob(rng, area_px: float) -> np.ndarray:
    """An irregular smooth blob of about `area_px` pixels (a PATCH x PATCH boolean mask, one connected region)."""
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    r = np.sqrt(area_px / np.pi)
    cy, cx = rng.uniform(min(r, PATCH / 2), max(PATCH - r, PATCH / 2), 2)
    wobble = ndimage.gaussian_filter(rng.normal(size=(PATCH, PATCH)), max(r / 2.5, 1.0))
    # a disc whose border is pushed in and out by smooth noise, by about a third of its radius
    score = 1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2 + 0.6 * wobble / wobble.std()
    mask = score > np.quantile(score, 1.0 - area_px / N)
    lab, n = ndimage.label(mask)
    if n > 1:  # keep the largest piece: one region
        mask = lab == 1 + np.argmax(ndimage.sum(mask, lab, range(1, n + 1)))
    return mask


def _region(rng, area: tuple[float, float], blob: bool = True) -> np.ndarray:
    """An ellipse (or, with `blob`, half the time an irregular blob) covering `area` of the patch."""
    while True:
        frac = rng.uniform(*area)
        mask = _blob(rng, frac * N) if blob and rng.random() < 0.5 else ellipse_mask(rng, frac * N)
        if area[0] <= mask.mean() <= area[1]:
            return mask


def _match(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`values` shifted and scaled to the mean and standard deviation of `ref`."""
    return (values - values.mean()) / max(values.std(), 1e-9) * ref.std() + ref.mean()


# ------------------------------------------------------------------------------------ B: texture in texture


def _spectrum(img: np.ndarray, cols: tuple[int, int]) -> np.ndarray:
    """Mean amplitude spectrum (rfft2) of Hann-windowed PATCH x PATCH tiles of `img`'s columns `cols`: the
    texture's scale and orientation, without its structure. Training columns only: no test pixel is used."""
    win = np.outer(np.hanning(PATCH), np.hanning(PATCH))  # no leakage from the tile border
    sub = img[:, cols[0] : cols[1]]
    step = PATCH // 2
    tiles = np.stack([sub[r : r + PATCH, c : c + PATCH] for r in range(0, sub.shape[0] - PATCH + 1, step)
                      for c in range(0, sub.shape[1] - PATCH + 1, step)])
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * win
    return np.sqrt((np.abs(np.fft.rfft2(tiles)) ** 2).mean(axis=0))


def _b_photo(name: str, foreign_name: str, rng) -> _Source:
    img, other = _dequantised(name, rng), _dequantised(foreign_name, rng)
    amp = _spectrum(img, _columns(img.shape[1])[0])

    def foreign(rng) -> np.ndarray:
        if rng.random() < 0.5:  # the other photograph, anywhere in it (never normal in this category)
            return crop(other, (0, other.shape[1]), rng, PATCH)
        # Gaussian noise with this texture's own power spectrum: same scale, none of its edges and shapes
        return np.fft.irfft2(np.fft.rfft2(rng.normal(size=(PATCH, PATCH))) * amp, s=(PATCH, PATCH))

    return _Source(img, PATCH, lambda kind, patch, rng: _paste(patch, foreign(rng), rng))


def _b_clouds(rng) -> _Source:
    beta = rng.uniform(1.8, 2.2)  # of the power spectrum; fixed for the whole set
    img = 128.0 + 30.0 * _power_noise(rng, (512, 512), beta)

    def foreign(rng) -> np.ndarray:
        if rng.random() < 0.5:  # same spectrum slope, structures 2.5-4x longer along one direction
            return _power_noise(rng, (PATCH, PATCH), beta, rng.uniform(2.5, 4.0), rng.uniform(0, np.pi))
        # isotropic, but rougher or smoother
        return _power_noise(rng, (PATCH, PATCH), beta + rng.choice([-1, 1]) * rng.uniform(0.7, 1.0))

    return _Source(img, PATCH, lambda kind, patch, rng: _paste(patch, foreign(rng), rng))


def _paste(patch: np.ndarray, foreign: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """`foreign` pasted in a region of `patch`, matched to the mean and std of the pixels it replaces:
    matched to the region rather than the whole patch, because a patch of 1/f noise (clouds) is not
    stationary: its local contrast is lower than the whole patch's, and a whole-patch match would make
    the region stand out by its contrast alone."""
    mask = _region(rng, B_AREA)
    out = patch.copy()
    out[mask] = np.clip(_match(foreign[mask], patch[mask]), 0, 255)
    return out, mask


# ---------------------------------------------------------------------- C: structural and low-contrast defects


def _supersampled(fn, size: int) -> np.ndarray:
    """fn(y, x) (pixel coordinates) on a 2x finer grid, area-averaged to size x size: anti-aliased edges."""
    y, x = np.mgrid[0 : 2 * size, 0 : 2 * size] / 2.0 - 0.25
    return fn(y, x).reshape(size, 2, size, 2).mean(axis=(1, 3))


def _c_weave(rng, size: int = 512) -> np.ndarray:
    """A plain weave: threads of period 8-12 px going over and under, slowly wavering, with mild noise."""
    period = rng.uniform(8, 12)
    # slowly varying phase (in periods): the threads are not ruler-straight
    jit = [ndimage.zoom(ndimage.gaussian_filter(rng.normal(size=(size // 8, size // 8)), 2.0), 8, order=1)
           for _ in range(2)]
    jit = [0.15 * j / j.std() for j in jit]
    shade_v, shade_h = rng.uniform(0.85, 1.0, size), rng.uniform(0.85, 1.0, size)  # per-thread brightness

    def fn(y, x):
        iy, ix = np.clip(y.astype(int), 0, size - 1), np.clip(x.astype(int), 0, size - 1)
        u = x / period + jit[0][iy, ix]
        v = y / period + jit[1][iy, ix]
        ku, kv = np.round(u).astype(int), np.round(v).astype(int)
        pv = np.clip(np.cos(np.pi * (u - ku)), 0, 1)  # across a vertical thread: 1 at its middle, 0 at its edges
        ph = np.clip(np.cos(np.pi * (v - kv)), 0, 1)
        over = (ku + kv) % 2 == 0  # which thread is on top alternates from crossing to crossing
        vert = pv**0.6 * (0.55 + 0.45 * ph) * shade_v[ku % size]
        horiz = ph**0.6 * (0.55 + 0.45 * pv) * shade_h[kv % size]
        return np.where(over, vert, horiz)

    img = _supersampled(fn, size)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 0.7)
    return 40.0 + 170.0 * img + 6.0 * noise / noise.std()


def _c_tiles(rng, size: int = 512) -> np.ndarray:
    """A regular grid of tiles (period 18-24 px) with darker grout lines; each tile a little brighter or darker,
    with its own gentle gradient; fine noise on everything."""
    period, grout = rng.uniform(18, 24), rng.uniform(2.0, 3.0)
    n = int(size / period) + 2
    level = 165.0 + rng.normal(0, 6, (n, n))
    grad = rng.normal(0, 0.35, (n, n, 2))

    def fn(y, x):
        ty, tx = (y // period).astype(int), (x // period).astype(int)
        dy, dx = y - (ty + 0.5) * period, x - (tx + 0.5) * period  # from the tile's centre
        tile = level[ty, tx] + grad[ty, tx, 0] * dy + grad[ty, tx, 1] * dx
        edge = np.minimum(period / 2 - np.abs(dy), period / 2 - np.abs(dx))  # distance to the nearest grout line
        g = np.clip((grout / 2 - edge) / 0.7 + 0.5, 0, 1)  # grout coverage, with a soft edge
        return (1 - g) * tile + g * 95.0

    img = _supersampled(fn, size)
    coarse = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5)
    return img + 4.0 * coarse / coarse.std() + rng.normal(0, 1.5, (size, size))


def _crack(rng) -> np.ndarray:
    """A random-walk polyline 1-2 px wide, 5-9 steps of 4-7 px (a PATCH x PATCH boolean mask)."""
    yy, xx = np.mgrid[0:PATCH, 0:PATCH].astype(np.float64)
    width, step = rng.uniform(1.0, 2.0), rng.uniform(4.0, 7.0)
    p, ang = rng.uniform(PATCH * 0.25, PATCH * 0.75, 2), rng.uniform(0, 2 * np.pi)
    dist = np.full((PATCH, PATCH), np.inf)
    for _ in range(rng.integers(5, 10)):
        ang += rng.normal(0, 0.5)
        q = p + step * np.array([np.sin(ang), np.cos(ang)])
        if not ((2 <= q) & (q <= PATCH - 3)).all():  # turn back at the patch border
            ang += np.pi
            q = p + step * np.array([np.sin(ang), np.cos(ang)])
        d = q - p  # distance of every pixel centre to the segment p-q
        t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / (d @ d), 0, 1)
        dist = np.minimum(dist, np.hypot(yy - p[0] - t * d[0], xx - p[1] - t * d[1]))
        p = q
    return dist <= width / 2


def _ellipse_coords(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rho, dy, dx) of a filled ellipse `mask`: every pixel's offset from its centre and its normalised radius
    (1 on the border), from the mask's moments (a filled ellipse's variance along an axis is semi-axis^2 / 4)."""
    yy, xx = np.mgrid[0:PATCH, 0:PATCH].astype(np.float64)
    cy, cx = yy[mask].mean(), xx[mask].mean()
    dy, dx = yy - cy, xx - cx
    cov = 4.0 * np.cov(np.stack([dy[mask], dx[mask]]))
    inv = np.linalg.inv(cov)
    rho = np.sqrt(np.maximum(inv[0, 0] * dy**2 + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx**2, 0))
    return rho, dy, dx


def _warp(patch: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """A swirl or a push inside an ellipse: a smooth displacement field, largest (2-4 px) inside the ellipse,
    zero with zero slope at its border (so no seam), and without fold-over."""
    while True:
        mask = ellipse_mask(rng, rng.uniform(*C_AREA["warp"]) * N)
        if not C_AREA["warp"][0] <= mask.mean() <= C_AREA["warp"][1]:
            continue
        amp = rng.uniform(2.0, 4.0)
        rho, dy, dx = _ellipse_coords(mask)
        bump = np.where(rho < 1, (1 - rho**2) ** 2, 0.0)
        if rng.random() < 0.5:  # swirl: turn by an angle that fades out towards the border
            theta = bump.copy()
            for _ in range(4):  # scale the angle until the largest displacement is `amp`
                c, s = np.cos(theta), np.sin(theta)
                disp = np.hypot(c * dy - s * dx - dy, s * dy + c * dx - dx)
                theta *= amp / max(disp[mask].max(), 1e-9)
            c, s = np.cos(theta), np.sin(theta)
            vy, vx = c * dy - s * dx - dy, s * dy + c * dx - dx
        else:  # push: everything inside shifted one way, most at the centre
            a = rng.uniform(0, 2 * np.pi)
            vy, vx = amp * bump * np.sin(a), amp * bump * np.cos(a)
        # Jacobian of the sampling map (identity + displacement) stays positive: no fold-over
        (vyy, vyx), (vxy, vxx) = np.gradient(vy), np.gradient(vx)
        if ((1 + vyy) * (1 + vxx) - vyx * vxy)[mask].min() > 0.2:
            break
    yy, xx = np.mgrid[0:PATCH, 0:PATCH].astype(np.float64)
    warped = ndimage.map_coordinates(patch, [yy + vy, xx + vx], order=3, mode="reflect")
    out = patch.copy()
    out[mask] = np.clip(warped[mask], 0, 255)
    return out, mask


def _c_region_defect(kind: str, patch: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(patch, mask) with one blur, warp or inpaint region."""
    if kind == "warp":
        return _warp(patch, rng)
    out = patch.copy()
    mask = _region(rng, C_AREA[kind], blob=False)
    if kind == "blur":
        out[mask] = ndimage.gaussian_filter(patch, rng.uniform(1.5, 3.0), mode="reflect")[mask]
    else:  # inpaint: the hole's content is invented smoothly from its border
        from skimage.restoration import inpaint_biharmonic

        out[mask] = np.clip(inpaint_biharmonic(patch, mask)[mask], 0, 255)
    return out, mask


def _c_defect(kind: str, patch: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(patch with one defect of `kind`, the mask of the pixels it changed)."""
    lo, hi = np.percentile(patch, [1, 99])
    if kind in ("crack", "scratch"):
        if kind == "crack":
            mask = _crack(rng)
        else:  # at least 25 px long (longer ones are capped at 0.9 PATCH by line_mask)
            mask = line_mask(rng, rng.uniform(25, 55) * 2.5, width=(1.0, 2.5))
        delta = rng.uniform(0.10, 0.30) * (hi - lo)  # low contrast: a fraction of the patch's own range
        # darker or brighter at random, but the other way when that would saturate
        sign = rng.choice([-1.0, 1.0])
        if (sign > 0 and hi + delta > 255) or (sign < 0 and lo - delta < 0):
            sign = -sign
        out = patch.copy()
        out[mask] = np.clip(patch[mask] + sign * delta, 0, 255)
        return out, mask
    # Blurring, warping or inpainting a flat area (the inside of one brick) changes next to nothing: a defect
    # no one could see, whose mask would still count as abnormal. Such a region is drawn again (up to 100
    # times, then the one that changed most is kept).
    best, best_change = None, -1.0
    for _ in range(100):
        out, mask = _c_region_defect(kind, patch, rng)
        change = np.abs(out - patch)[mask].mean() / max(hi - lo, 1e-9)
        if change > best_change:
            best, best_change = (out, mask), change
        if change >= C_MIN_CHANGE:
            break
    return best


# ------------------------------------------------------------------------------------------ D: colour defects

# BT.601 full range (JPEG): Y = 0.299 R + 0.587 G + 0.114 B; Cb, Cr centred on 128
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = np.linalg.inv(_TO_YCC)


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB (0..255) to BT.601 full-range YCbCr (Cb, Cr centred on 128)."""
    return rgb @ _TO_YCC.T + np.array([0.0, 128.0, 128.0])


def _d_coloured_noise(rng, size: int = 512) -> np.ndarray:
    """A 1/f^2 luminance texture under a chroma field that changes slowly across the image: a patch's mean Cb and
    Cr differ from patch to patch by about 10 (std), not far below a stain's 12-30 shift, so a patch's colour as
    a whole is no give-away; a stain is found by its colour differing from its surroundings."""
    y = 125.0 + 32.0 * _power_noise(rng, (size, size), rng.uniform(1.8, 2.2))
    hue = rng.normal(0, 8, 2)  # the set's average tint
    cb, cr = (128.0 + h + 20.0 * _power_noise(rng, (size, size), 4.0) for h in hue)
    rgb = (np.stack([y, cb - 128, cr - 128], axis=-1)) @ _FROM_YCC.T
    return np.clip(rgb, 0, 255)


def _stain(patch: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """A tint on uint8 RGB `patch`: Y kept, (Cb, Cr) shifted by 12-30 in a random direction inside a region.

    Where a full shift would push a channel out of 0..255, that pixel's shift is scaled down to fit, instead of
    clipping the result: clipping would change its brightness. The mask is where the shift is more than half its
    peak; the region is drawn again when that leaves it outside 1-8 % or mostly weakened by the scaling."""
    x = patch.astype(np.float64)
    while True:
        hard = _region(rng, D_AREA)
        weight = np.clip(ndimage.gaussian_filter(hard.astype(np.float64), 0.6), 0, 1)  # a soft 1-px edge
        mag, a = rng.uniform(12, 30), rng.uniform(0, 2 * np.pi)
        step = _FROM_YCC @ np.array([0.0, mag * np.cos(a), mag * np.sin(a)])  # RGB change of the shift; Y: 0
        room = np.where(step > 0, (255 - x) / np.where(step > 0, step, 1), x / np.where(step < 0, -step, 1))
        fit = np.clip(room[..., step != 0].min(axis=-1), 0, None)  # largest scale that stays in 0..255
        w = np.minimum(weight, fit)
        mask = w > 0.5
        if D_AREA[0] <= mask.mean() <= D_AREA[1] and w[mask].mean() > 0.8:
            break
    out = np.clip(np.round(x + w[..., None] * step), 0, 255).astype(np.uint8)
    return out, mask


# ------------------------------------------------------------------------------------------------- sources


def _source(family: str, category: str, rng) -> _Source:
    """The image a category's patches are cropped from (procedural ones drawn from `rng`) and its defect maker."""
    if family == "B":
        if category == "clouds":
            return _b_clouds(rng)
        return _b_photo(category, {"grass": "gravel", "gravel": "grass"}[category], rng)
    if family == "C":
        img = {"weave": _c_weave, "tiles": _c_tiles, "brick": lambda rng: _dequantised("brick", rng)}[category](rng)
        return _Source(img, PATCH, _c_defect)

    def stain(kind, patch, rng):
        return _stain(patch, rng)

    if category == "tissue":
        return _Source(photo("immunohistochemistry"), PATCH, stain)
    if category == "fundus":
        lo, hi = FUNDUS_BOX
        return _Source(photo("retina")[lo:hi, lo:hi], 2 * PATCH, stain)
    return _Source(_d_coloured_noise(rng), PATCH, stain)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown defect family {family!r}; the families are {', '.join(sorted(FAMILIES))}")


def _samples(family: str, category: str, seed: int = 0, n_train: int = 300, n_test_normal: int = 60,
             n_per_defect: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """(path under the category folder, image, mask or None, base patch or None) for every image of one category,
    in order. Images are float 0..255 (B, C) or uint8 RGB (D); `base` is the normal patch a defect was made in."""
    _check_family(family)
    kinds = FAMILIES[family][category]
    n_per_defect = N_PER_DEFECT[family] if n_per_defect is None else n_per_defect
    for name, n in (("n_train", n_train), ("n_test_normal", n_test_normal), ("n_per_defect", n_per_defect)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng([seed, ord(family), list(FAMILIES[family]).index(category)])
    src = _source(family, category, rng)
    rgb = src.img.ndim == 3

    def take(cols):
        p = crop(src.img, cols, rng, src.size)
        return np.round(p).astype(np.uint8) if rgb else p  # D is stored in 8 bits: make its defects in 8 bits

    for i in range(n_train):
        yield f"train/good/{i:03d}.png", take(src.train_cols), None, None
    for i in range(n_test_normal):
        yield f"test/good/{i:03d}.png", take(src.test_cols), None, None
    for kind in kinds:
        for i in range(n_per_defect):
            base = take(src.test_cols)
            out, mask = src.defect(kind, base, rng)
            yield f"test/{kind}/{i:03d}.png", out, mask, base


def _expected(kinds: tuple[str, ...], n_train: int, n_test_normal: int, n_per_defect: int) -> set[Path]:
    """Every file path (under a category folder) that a set of these counts consists of."""
    files = {Path(f"train/good/{i:03d}.png") for i in range(n_train)}
    files |= {Path(f"test/good/{i:03d}.png") for i in range(n_test_normal)}
    for kind in kinds:
        files |= {Path(f"test/{kind}/{i:03d}.png") for i in range(n_per_defect)}
        files |= {Path(f"ground_truth/{kind}/{i:03d}_mask.png") for i in range(n_per_defect)}
    return files


def write_family(family: str, out: Path, seed: int = 0, n_train: int = 300, n_test_normal: int = 60,
                 n_per_defect: int | None = None) -> list[Path]:
    """Writes every category of `family` under out/<category>/ and returns the category folders.

    `n_per_defect` abnormal images per defect kind (None: N_PER_DEFECT[family]). Files of the same set already
    there are overwritten; any other file in a category folder is refused (before anything is written): images
    left from a larger earlier set would silently join this one."""
    _check_family(family)
    out = Path(out)
    roots = [out / category for category in FAMILIES[family]]
    n_def = N_PER_DEFECT[family] if n_per_defect is None else n_per_defect
    for root, kinds in zip(roots, FAMILIES[family].values()):
        if not root.is_dir():
            continue
        expected = _expected(kinds, n_train, n_test_normal, n_def)
        stray = sorted(p for p in root.rglob("*") if not p.is_dir() and p.relative_to(root) not in expected)
        if stray:
            raise ValueError(f"{root} holds {len(stray)} file(s) that are not part of this set (e.g. {stray[0]}); "
                             "remove the folder or write elsewhere")
    for category, root in zip(FAMILIES[family], roots):
        for rel, img, mask, _ in _samples(family, category, seed, n_train, n_test_normal, n_per_defect):
            path = root / rel
            if family == "D":
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)  # uint8 [H, W, 3]: RGB
            else:
                _write16(path, img)
            if mask is not None:
                _write_mask(root / "ground_truth" / Path(rel).parent.name / f"{Path(rel).stem}_mask.png", mask)
    return roots
