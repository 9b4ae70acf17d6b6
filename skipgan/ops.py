"""Python face of the native op library (csrc/, loaded as ``torch.ops.skipgan``).

Importing this module loads the library built by ``pip install --no-build-isolation .`` (the module
``skipgan._C``, or the file named by ``$SKIPGAN_OPS_LIBRARY``, e.g. a CMake-built libskipgan_ops.so),
registers the fake kernels that let torch.compile and torch.export trace the ops, and offers:

- ``conv_bn_act`` / ``anomaly_score``: friendly wrappers that allocate outputs when none are given;
- ``conv_bn_act_reference`` / ``anomaly_score_reference``: the pure-PyTorch definitions the kernels are
  tested against (fp32 math; usable without the native library);
- ``build_info()``: what the loaded binary contains (CUDA kernels or not, arch list, torch version).

The raw ops (``torch.ops.skipgan.conv_bn_act_out`` etc.) are what TorchScript, torch.compile and the C++
scanner call; see csrc/ops.cpp for their schemas.

Error map convention: ``anomaly_score`` can also return a per-pixel error map, the MEAN over channels of
(x - x_hat)^2, fp32 [B, H, W] -- the same normalisation as the score's image term, so a map averages to the
image term of the score (before the lam weighting).
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
    "anomaly_score_reference",
    "build_info",
    "conv_bn_act",
    "conv_bn_act_reference",
    "library_path",
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
                              out2=None):
        return None

    @torch.library.register_fake("skipgan::anomaly_score")
    def _anomaly_score_fake(x, x_hat, f, f_hat, lam):
        torch._check(x.dim() == 4, lambda: f"skipgan::anomaly_score: x: expected a 4-D tensor, got {x.dim()}-D")
        return x.new_empty((x.shape[0],), dtype=torch.float32)

    @torch.library.register_fake("skipgan::anomaly_score_out")
    def _anomaly_score_out_fake(x, x_hat, f, f_hat, lam, scores, error_map=None):
        return None


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
    """Pure-PyTorch definition: act(conv(x) * scale + shift) in fp32, cast to x.dtype.

    Returns one tensor, or (out, out2) when act2 is given.
    """
    xf, wf = x.float(), weight.float()
    if transposed:
        y = F.conv_transpose2d(xf, wf, stride=_pair(stride), padding=_pair(padding),
                               output_padding=_pair(output_padding))
    else:
        y = F.conv2d(xf, wf, stride=_pair(stride), padding=_pair(padding))
    if scale is not None:
        y = y * scale.float().view(1, -1, 1, 1)
    if shift is not None:
        y = y + shift.float().view(1, -1, 1, 1)
    out = _apply_act(y, _act_code(act), slope).to(x.dtype)
    if act2 is None:
        return out
    return out, _apply_act(y, _act_code(act2), slope).to(x.dtype)


def conv_bn_act(x: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None, *, stride=1,
                padding=0, transposed: bool = False, output_padding=0, act: str | int = "relu", slope: float = 0.2,
                out: Tensor | None = None, act2: str | int | None = None, out2: Tensor | None = None):
    """Native conv(+transposed) -> *scale + shift -> act, optionally also act2 into out2, in one epilogue pass.

    out / out2 may be views into bigger buffers (e.g. channel slices of a concatenation buffer); when not
    given they are allocated in x's memory format. output_padding is only used to size an allocated `out`
    (the op reads it from out's shape). Returns out, or (out, out2) when act2 is given.
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
                                      _act_code(act2) if act2 is not None else 0, out2)
    return out if act2 is None else (out, out2)


# --------------------------------------------------------------------------------------------------------
# anomaly score


def anomaly_score_reference(x: Tensor, x_hat: Tensor, f: Tensor, f_hat: Tensor, lam: float = 0.9, *,
                            error_map: bool = False):
    """Pure-PyTorch definition, fp32: lam * mean((x - x_hat)^2) + (1 - lam) * mean((f - f_hat)^2) per sample.

    With error_map=True also returns the per-pixel mean over channels of (x - x_hat)^2, fp32 [B, H, W].
    """
    d = (x.float() - x_hat.float()).square()
    fd = (f.float() - f_hat.float()).square().reshape(f.shape[0], -1)
    scores = lam * d.mean(dim=(1, 2, 3)) + (1.0 - lam) * fd.mean(dim=1)
    return (scores, d.mean(dim=1)) if error_map else scores


def anomaly_score(x: Tensor, x_hat: Tensor, f: Tensor, f_hat: Tensor, lam: float = 0.9, *,
                  error_map: bool = False, out: Tensor | None = None, map_out: Tensor | None = None):
    """Native fused score (reads each input once, fp32 accumulation, deterministic).

    Returns scores fp32 [B], or (scores, map) with map fp32 [B, H, W] when error_map=True.
    out / map_out: optional preallocated outputs (the map must be contiguous).
    """
    _require()
    if out is None and not error_map:
        return torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, float(lam))
    if out is None:
        out = torch.empty(x.shape[0], device=x.device, dtype=torch.float32)
    if error_map and map_out is None:
        map_out = torch.empty((x.shape[0], x.shape[2], x.shape[3]), device=x.device, dtype=torch.float32)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, float(lam), out, map_out if error_map else None)
    return (out, map_out) if error_map else out
