"""Python face of the native op library (csrc/, loaded as ``torch.ops.skipgan``).

Importing this module loads the library built by ``pip install --no-build-isolation .`` (the module
``skipgan._C``, or the file named by ``$SKIPGAN_OPS_LIBRARY``, e.g. a CMake-built libskipgan_ops.so),
registers the fake kernels that let torch.compile and torch.export trace the ops, and offers:

- ``conv_bn_act`` / ``anomaly_score``: friendly wrappers that allocate outputs when none are given;
- ``bias_act`` / ``col2im_bias_act``: the same epilogue around a matrix product the caller ran (the engine's
  im2col / col2im convolutions): act(y * scale + shift) on a GEMM result, and the fold of a transposed conv's
  GEMM result [N, H, W, kH, kW, C] followed by that epilogue (optionally averaging K probe reconstructions);
- ``bias_act_reference`` / ``col2im_bias_act_reference``: their pure-PyTorch definitions, which the kernels
  are tested against (fp32 math; usable without the native library);
- ``conv_bn_act_reference``: the pure-PyTorch definition the conv kernels are tested against (fp32 math;
  usable without the native library). The score has ONE definition, ``skipgan.scoring.combine_scores``
  (and ``skipgan.scoring.error_map``), which the score op is tested against; this module does not import
  it, being the lower layer;
- ``nearest_distances`` / ``nearest_distances_reference``: the knn map's exact nearest-row search (a blocked GEMM
  ranks, candidates within its error bound are summed exactly) and its definition (every distance in float64);
- ``quantize_u8``: a float tensor onto the uint8 grid of an int8 layer's input (the int8 engine's layers); its
  definition is ``skipgan.quant.int8.quantize_input`` (the int8 semantics live there, this module does not import
  them);
- ``build_info()``: what the loaded binary contains (CUDA kernels or not, arch list, torch version).

The raw ops (``torch.ops.skipgan.conv_bn_act_out`` etc.) are what TorchScript, torch.compile and the C++
scanner call; see csrc/ops.cpp for their schemas.

Score convention: score = lam * R + (1 - lam) * L, R = mean of (x - x_hat)^2 over the channels and the
interior pixels (a ``margin``-pixel border left out), L = mean((f - f_hat)^2); ``anomaly_score`` can also
return (R, L) per sample and a per-pixel error map, the MEAN over channels of (x - x_hat)^2, fp32 [B, H, W] at
EVERY pixel, border included -- the same normalisation as R, so with margin 0 a map averages to R.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ACTIVATIONS",
    "AVAILABLE",
    "anomaly_score",
    "bias_act",
    "bias_act_reference",
    "build_info",
    "col2im_bias_act",
    "col2im_bias_act_reference",
    "conv_bn_act",
    "conv_bn_act_reference",
    "library_path",
    "nearest_distances",
    "nearest_distances_reference",
    "quantize_u8",
]

# Activation names -> the integer codes of the schema (csrc/activation.h).
ACTIVATIONS = {"none": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}

_BUILD_HINT = "build it with `pip install --no-build-isolation -e .` (add FORCE_CUDA=1 for the CUDA kernels)"


def _find_library() -> str | None:
    env = os.environ.get("SKIPGAN_OPS_LIBRARY")
    if env:
        return env
    # The library built next to this file (installed package, or an in-place / editable build).
    here = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_C.*so")))
    if here:
        return here[0]
    # `python -m pytest` in a checkout puts the source tree first on sys.path, shadowing a non-editable
    # install whose _C lives in site-packages: look for the built module in every skipgan folder on the path.
    for entry in sys.path:
        hits = sorted(glob.glob(os.path.join(entry or ".", "skipgan", "_C.*so")))
        if hits:
            return hits[0]
    spec = importlib.util.find_spec("skipgan._C")  # e.g. an editable install's import hook
    return spec.origin if spec is not None and spec.origin else None


def _load() -> tuple[str | None, str | None]:
    path = _find_library()
    if path is None:
        return None, f"the native library skipgan._C was not found; {_BUILD_HINT}"
    try:
        torch.ops.load_library(path)
    except OSError as exc:  # e.g. built against another torch
        return path, f"could not load {path}: {exc}; rebuild it: {_BUILD_HINT}"
    return path, None


library_path, _LOAD_ERROR = _load()
AVAILABLE = _LOAD_ERROR is None


def _require() -> None:
    if not AVAILABLE:
        raise RuntimeError(f"skipgan native ops unavailable: {_LOAD_ERROR}")


def build_info() -> dict:
    """What the loaded library was built with.

    Keys: available, library, cuda (bool: CUDA kernels compiled in), cuda_arch_list (list of str),
    torch_version (headers it was compiled against), torch_runtime (the torch running now), builder
    (setuptools or cmake), compiler, cpu_isa (the CPU kernel copy chosen for this
    machine: default, avx2 or avx512), openmp (bool: the CPU kernels' at::parallel_for really
    runs on several threads with ATen's OpenMP backend), and error when the library could not be loaded.
    """
    info: dict = {"available": AVAILABLE, "library": library_path, "torch_runtime": torch.__version__}
    if not AVAILABLE:
        info.update(cuda=False, cuda_arch_list=[], error=_LOAD_ERROR)
        return info
    raw = dict(line.split("=", 1) for line in torch.ops.skipgan._build_info().splitlines() if "=" in line)
    info["cuda"] = raw.get("cuda") == "1"
    info["cuda_arch_list"] = [a for a in raw.get("cuda_arch_list", "").replace(",", ";").split(";") if a]
    info["torch_version"] = raw.get("torch_version")
    info["builder"] = raw.get("builder")
    info["compiler"] = raw.get("compiler")
    info["cpu_isa"] = raw.get("cpu_isa")  # CPU kernel copy in use: default / avx2 / avx512
    info["openmp"] = raw.get("openmp") == "1"  # compiled with OpenMP: at::parallel_for is multi-threaded
    return info


# --------------------------------------------------------------------------------------------------------
# Fake kernels: shapes only, for torch.compile / torch.export / opcheck.

if AVAILABLE:

    @torch.library.register_fake("skipgan::conv_bn_act_out")
    def _conv_bn_act_out_fake(x, weight, scale, shift, stride, padding, transposed, act, slope, out, act2=0,
                              out2=None, tf32=False):
        return None

    @torch.library.register_fake("skipgan::bias_act_out")
    def _bias_act_out_fake(y, scale, shift, act, slope, out, act2=0, out2=None):
        return None

    @torch.library.register_fake("skipgan::col2im_bias_act_out")
    def _col2im_bias_act_out_fake(cols, kernel, stride, padding, scale, shift, act, slope, out, act2=0, out2=None,
                                  probe_weight=None):
        return None

    @torch.library.register_fake("skipgan::anomaly_score")
    def _anomaly_score_fake(x, x_hat, f, f_hat, lam, margin=0):
        torch._check(x.dim() == 4, lambda: f"skipgan::anomaly_score: x: expected a 4-D tensor, got {x.dim()}-D")
        return x.new_empty((x.shape[0],), dtype=torch.float32)

    @torch.library.register_fake("skipgan::anomaly_score_out")
    def _anomaly_score_out_fake(x, x_hat, f, f_hat, lam, scores, error_map=None, margin=0, parts=None):
        return None

    @torch.library.register_fake("skipgan::quantize_u8_out")
    def _quantize_u8_out_fake(x, scale, zero, out):
        return None

    @torch.library.register_fake("skipgan::nearest_distances")
    def _nearest_distances_fake(queries, memory, memory_sq, query_block=1024, memory_block=4096, gemm=0):
        return queries.new_empty((queries.shape[0],), dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------
# conv + folded BN + activation(s)


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def _act_code(act: str | int) -> int:
    if isinstance(act, int):
        return act
    if act not in ACTIVATIONS:
        raise ValueError(f"act: expected one of {sorted(ACTIVATIONS)}, got {act!r}")
    return ACTIVATIONS[act]


def _apply_act(y: Tensor, act: int, slope: float) -> Tensor:
    if act == ACTIVATIONS["relu"]:
        return torch.relu(y)
    if act == ACTIVATIONS["leaky_relu"]:
        return F.leaky_relu(y, slope)
    if act == ACTIVATIONS["tanh"]:
        return torch.tanh(y)
    if act == ACTIVATIONS["sigmoid"]:
        return torch.sigmoid(y)
    return y


def _affine_reference(y: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
    """y * scale + shift per channel (dim 1), fp32."""
    y = y.float()
    if scale is not None:
        y = y * scale.float().view(1, -1, 1, 1)
    if shift is not None:
        y = y + shift.float().view(1, -1, 1, 1)
    return y


def _epilogue_reference(y: Tensor, scale: Tensor | None, shift: Tensor | None, act, slope: float, act2,
                        dtype: torch.dtype):
    """act(y * scale + shift) in fp32 cast to dtype, and act2 of the same when act2 is given."""
    y = _affine_reference(y, scale, shift)
    out = _apply_act(y, _act_code(act), slope).to(dtype)
    if act2 is None:
        return out
    return out, _apply_act(y, _act_code(act2), slope).to(dtype)


def _conv_out_shape(x: Tensor, weight: Tensor, stride, padding, transposed: bool, output_padding) -> list[int]:
    n, _, h, w = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    s, p, op = _pair(stride), _pair(padding), _pair(output_padding)
    if transposed:
        return [n, weight.shape[1], (h - 1) * s[0] - 2 * p[0] + kh + op[0], (w - 1) * s[1] - 2 * p[1] + kw + op[1]]
    return [n, weight.shape[0], (h + 2 * p[0] - kh) // s[0] + 1, (w + 2 * p[1] - kw) // s[1] + 1]


def conv_bn_act_reference(x: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, *,
                          stride=1, padding=0, transposed: bool = False, output_padding=0, act: str | int = "relu",
                          slope: float = 0.2, act2: str | int | None = None):
    """Pure-PyTorch definition: act(conv(x) * scale + shift) in fp32 (true fp32 on CUDA too: TF32 off here,
    whatever torch.backends.cudnn.allow_tf32 says), cast to x.dtype.

    Returns one tensor, or (out, out2) when act2 is given.
    """
    xf, wf = x.float(), weight.float()
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                                    deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
        if transposed:
            y = F.conv_transpose2d(xf, wf, stride=_pair(stride), padding=_pair(padding),
                                   output_padding=_pair(output_padding))
        else:
            y = F.conv2d(xf, wf, stride=_pair(stride), padding=_pair(padding))
    return _epilogue_reference(y, scale, shift, act, slope, act2, x.dtype)


def conv_bn_act(x: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, *, stride=1,
                padding=0, transposed: bool = False, output_padding=0, act: str | int = "relu", slope: float = 0.2,
                out: Tensor | None = None, act2: str | int | None = None, out2: Tensor | None = None,
                tf32: bool = False):
    """Native conv(+transposed) -> *scale + shift -> act, optionally also act2 into out2, in one epilogue pass.

    out / out2 may be views into bigger buffers (e.g. channel slices of a concatenation buffer); when not
    given they are allocated in x's memory format. output_padding is only used to size an allocated `out`
    (the op reads it from out's shape). tf32: let cuDNN run an fp32 convolution on TF32 tensor cores (default: true
    fp32, whatever torch.backends.cudnn.allow_tf32 says). Returns out, or (out, out2) when act2 is given.
    """
    _require()
    if out is None:
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
            else torch.contiguous_format
        out = torch.empty(_conv_out_shape(x, weight, stride, padding, transposed, output_padding), dtype=x.dtype,
                          device=x.device, memory_format=fmt)
    if act2 is not None and out2 is None:
        out2 = torch.empty_like(out)
    torch.ops.skipgan.conv_bn_act_out(x, weight, scale, shift, _pair(stride), _pair(padding), transposed,
                                      _act_code(act), float(slope), out,
                                      _act_code(act2) if act2 is not None else 0, out2, tf32)
    return out if act2 is None else (out, out2)


# --------------------------------------------------------------------------------------------------------
# the epilogue around a caller's matrix product: bias + activation(s), and the transposed-conv fold


def bias_act_reference(y: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, *, act: str | int,
                       slope: float = 0.2, act2: str | int | None = None):
    """Pure-PyTorch definition: act(y * scale + shift) in fp32, cast to y.dtype.

    Returns one tensor, or (out, out2) when act2 is given.
    """
    return _epilogue_reference(y, scale, shift, act, slope, act2, y.dtype)


def bias_act(y: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, *, act: str | int,
             slope: float = 0.2, out: Tensor | None = None, act2: str | int | None = None,
             out2: Tensor | None = None):
    """Native act(y * scale + shift), optionally also act2 into out2, in one pass over y (conv_bn_act's epilogue).

    y: [N, C, H, W], dense NCHW or channels_last (e.g. a GEMM result [N*H*W, C] seen through a permute).
    out / out2 may be views with any strides (channel slices of bigger buffers, the interior of a zero-bordered
    buffer) or y itself; when not given they are allocated like y. Returns out, or (out, out2) when act2 is given.
    """
    _require()
    if out is None:
        out = torch.empty_like(y)
    if act2 is not None and out2 is None:
        out2 = torch.empty_like(out)
    torch.ops.skipgan.bias_act_out(y, scale, shift, _act_code(act), float(slope), out,
                                   _act_code(act2) if act2 is not None else 0, out2)
    return out if act2 is None else (out, out2)


def _col2im_out_size(cols: Tensor, kernel, stride, padding, output_size) -> list[int]:
    if output_size is not None:
        return _pair(output_size)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w = cols.shape[1], cols.shape[2]
    return [(h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw]


def col2im_bias_act_reference(cols: Tensor, kernel, stride, padding, scale: Tensor | None = None,
                              shift: Tensor | None = None, *, act: str | int, slope: float = 0.2, output_size=None,
                              act2: str | int | None = None, probe_weight: Tensor | None = None):
    """Pure-PyTorch definition of col2im_bias_act_out, fp32 math, cast to cols.dtype.

    cols: [N, H, W, kH, kW, C], the GEMM X_nhwc[N*H*W, C_in] @ weight.permute(0, 2, 3, 1).reshape(C_in, -1) of a
    ConvTranspose2d weight [C_in, C, kH, kW]; the fold sums the taps landing on each output pixel (F.fold), so
    that fold(cols) == conv_transpose2d(x, weight). output_size: (Ho, Wo), default (H - 1) * stride - 2 * padding
    + kernel (output_padding 0). Returns act(fold * scale + shift) [N, C, Ho, Wo], or (out, out2) with act2.
    probe_weight [K, 1 or C, Ho, Wo]: the N rows are K probes of B samples, probe-major (row k * B + b); returns
    sum_k probe_weight[k] * act(fold[k * B + b] * scale + shift), [B, C, Ho, Wo], added in k order.
    """
    n, h, w, kh, kw, c = cols.shape
    size = _col2im_out_size(cols, kernel, stride, padding, output_size)
    # F.fold reads [N, C * kH * kW, L] with (c, ky, kx) rows and L = H * W block positions.
    flat = cols.float().permute(0, 5, 3, 4, 1, 2).reshape(n, c * kh * kw, h * w)
    z = F.fold(flat, size, (kh, kw), padding=_pair(padding), stride=_pair(stride))
    if probe_weight is None:
        return _epilogue_reference(z, scale, shift, act, slope, act2, cols.dtype)
    if act2 is not None:
        raise ValueError("act2: a second output is not available with probe_weight")
    k = probe_weight.shape[0]
    a = _apply_act(_affine_reference(z, scale, shift), _act_code(act), slope).view(k, n // k, c, *size)
    acc = torch.zeros_like(a[0])
    for i in range(k):
        acc = acc + probe_weight[i].float() * a[i]
    return acc.to(cols.dtype)


def col2im_bias_act(cols: Tensor, kernel, stride, padding, scale: Tensor | None = None, shift: Tensor | None = None,
                    *, act: str | int, slope: float = 0.2, out: Tensor | None = None, output_size=None,
                    act2: str | int | None = None, out2: Tensor | None = None, probe_weight: Tensor | None = None):
    """Native transposed-conv fold of a GEMM result + act(. * scale + shift) (+ act2 into out2), CPU only.

    cols: contiguous [N, H, W, kH, kW, C] (see col2im_bias_act_reference). out / out2 may be views with any
    strides; when not given they are allocated channels_last (the order the kernel produces a row in: one
    vectorised store) with output_size (Ho, Wo), default (H - 1) * stride - 2 * padding + kernel -- the op reads
    the size from out. probe_weight [K, 1 or C, Ho, Wo]: out[b] = sum_k probe_weight[k] * act(z[k * B + b] *
    scale + shift) over the K probe-major row blocks of cols (no act2 / out2 then).
    Returns out, or (out, out2) when act2 is given.
    """
    _require()
    if out is None:
        n, c = cols.shape[0], cols.shape[5]
        if probe_weight is not None and probe_weight.dim() > 0 and probe_weight.shape[0] > 0:
            n //= probe_weight.shape[0]
        out = torch.empty([n, c, *_col2im_out_size(cols, kernel, stride, padding, output_size)], dtype=cols.dtype,
                          device=cols.device, memory_format=torch.channels_last)
    if act2 is not None and out2 is None:
        out2 = torch.empty_like(out)
    torch.ops.skipgan.col2im_bias_act_out(cols, _pair(kernel), _pair(stride), _pair(padding), scale, shift,
                                          _act_code(act), float(slope), out,
                                          _act_code(act2) if act2 is not None else 0, out2, probe_weight)
    return out if act2 is None else (out, out2)


# --------------------------------------------------------------------------------------------------------
# anomaly score


def anomaly_score(x: Tensor, x_hat: Tensor, f: Tensor, f_hat: Tensor, lam: float = 0.9, *, margin: int = 0,
                  error_map: bool = False, parts: bool = False, out: Tensor | None = None,
                  map_out: Tensor | None = None, parts_out: Tensor | None = None):
    """Native fused score (reads each input once, fp32 accumulation, deterministic): skipgan.scoring.combine_scores.

    score = lam * R + (1 - lam) * L, R = mean((x - x_hat)^2) over the channels and the interior pixels (a
    `margin`-pixel border left out), L = mean((f - f_hat)^2). Returns scores fp32 [B] alone by default; with
    error_map=True and/or parts=True a tuple of what was asked for, in the order (scores, map, parts): map fp32
    [B, H, W] (every pixel, border included), parts fp32 [B, 2] = (R, L) per sample.
    out / map_out / parts_out: optional preallocated outputs (map and parts must be contiguous).
    """
    _require()
    if out is None and not error_map and not parts:
        return torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, float(lam), int(margin))
    if out is None:
        out = torch.empty(x.shape[0], device=x.device, dtype=torch.float32)
    if error_map and map_out is None:
        map_out = torch.empty((x.shape[0], x.shape[2], x.shape[3]), device=x.device, dtype=torch.float32)
    if parts and parts_out is None:
        parts_out = torch.empty((x.shape[0], 2), device=x.device, dtype=torch.float32)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, float(lam), out, map_out if error_map else None,
                                        int(margin), parts_out if parts else None)
    if not error_map and not parts:
        return out
    return (out,) + ((map_out,) if error_map else ()) + ((parts_out,) if parts else ())


# --------------------------------------------------------------------------------------------------------
# the knn map's nearest-row search


def nearest_distances_reference(queries: Tensor, memory: Tensor) -> Tensor:
    """The definition of skipgan::nearest_distances: the Euclidean distance of each query [Q, C] to its nearest
    memory row [M, C], fp32 [Q], every pair's distance taken in float64 (no cancellation to speak of)."""
    q, m = queries.double(), memory.double()
    return (q[:, None, :] - m[None, :, :]).pow(2).sum(2).amin(1).sqrt().float()


NEAREST_GEMMS = {"addmm": 0, "onednn": 1}  # nearest_distances' GEMM: at::addmm (MKL here), oneDNN's fp32 matmul


def nearest_distances(queries: Tensor, memory: Tensor, memory_sq: Tensor | None = None, *, query_block: int = 1024,
                      memory_block: int = 4096, gemm: str = "addmm") -> Tensor:
    """Native exact nearest-row distances (CPU): a blocked GEMM ranks the memory rows, the distance itself is
    summed exactly over the rows within the GEMM's error bound of the nearest. memory_sq: the rows' squared norms
    (computed here when not given; pass them when the memory is searched often). gemm: "addmm" or "onednn" (the
    same result; which is faster depends on the CPU)."""
    _require()
    if memory_sq is None:
        memory_sq = memory.float().pow(2).sum(1)
    return torch.ops.skipgan.nearest_distances(queries, memory, memory_sq, int(query_block), int(memory_block),
                                               NEAREST_GEMMS[gemm])


def quantize_u8(x: Tensor, scale: float, zero: int, out: Tensor | None = None) -> Tensor:
    """Native clamp(round(x / scale) + zero, 0, 255) as uint8 (CPU; round half to even), into `out` when given."""
    _require()
    if out is None:
        out = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    torch.ops.skipgan.quantize_u8_out(x, float(scale), int(zero), out)
    return out

