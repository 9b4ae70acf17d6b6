"""Decoded image samples -> network input: the ONE definition of skipgan's preprocessing.

    samples [B, C, H, W] uint8 / uint16 (or float in [0, 1])
      -> float32 / full range of the sample type   (255, 65535; 1 for float)
      -> bilinear resize to isize x isize, antialiased (the triangle filter widens when shrinking)
      -> clamp to [0, 1] -> 2·v − 1 (so [-1, 1], black exactly −1)
      -> channels adapted to the model's nc: 1 -> nc by repetition, 3 -> 1 by ITU-R BT.601 luma

Python's loaders (skipgan.data.images.batch_to_tensor) and every exported graph (TorchScript, AOTInductor,
ONNX, TensorRT: skipgan.export.pipeline) call these functions, so a C++ scanner or an ONNX Runtime user never
re-implements them. They are written to be `torch.jit.script`-able and `torch.export`-able.

Why always antialias: for enlarging, PyTorch's antialiased bilinear equals plain bilinear (to 1e-7), and a
resize to the same size is the identity either way, so one filter covers every case without a data-dependent
branch that would break dynamic-shape export.

Two spellings of the one resize: F.interpolate(antialias=True) (the loaders, the engine, TorchScript, AOTInductor)
and, for graphs of standard operators (ONNX, TensorRT), the same filter as two matrix products,
[isize, H] @ image @ [W, isize] (`matrices=True`): TensorRT's ONNX parser refuses an antialiased Resize, and other
runtimes (OpenVINO) ignore the attribute. The weights are computed in the graph from the input size, so the graph
keeps any H x W; tests/test_export.py holds the two spellings within 1e-5 of each other.
"""

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights, used for 3 -> 1 channel conversion.
LUMA_601 = (0.299, 0.587, 0.114)


def sample_range(dtype: torch.dtype) -> float:
    """Full range of a sample type: 255 for uint8, 65535 for uint16, 1 for floating point."""
    if dtype == torch.uint8:
        return 255.0
    if dtype == torch.uint16:
        return 65535.0
    return 1.0


def to_unit(samples: torch.Tensor) -> torch.Tensor:
    """uint8 / uint16 / float samples -> float32 in [0, 1] (a new tensor; float input is clamped)."""
    x = samples.to(torch.float32)
    scale = sample_range(samples.dtype)
    return x * (1.0 / scale) if scale != 1.0 else x.clamp(0.0, 1.0)


def resize_weights(n: int, isize: int, device: torch.device) -> torch.Tensor:
    """[isize, n] fp32: row i holds the weights of PyTorch's antialiased bilinear resize (upsample_bilinear2d_aa,
    align_corners=False) for output sample i from n input samples: the triangle filter centred at scale·(i + 0.5),
    widened to the scale when shrinking (scale = n / isize), normalised to sum 1. The input size enters as a tensor
    (no shape arithmetic), so a dynamic-shape export keeps it symbolic."""
    src = torch.arange(n, dtype=torch.float32, device=device)
    scale = (src[-1:] + 1.0) / isize
    support = scale.clamp(min=1.0)
    centre = (torch.arange(isize, dtype=torch.float32, device=device) + 0.5) * scale
    w = torch.relu(1.0 - ((src[None, :] - centre[:, None] + 0.5) * (1.0 / support)).abs())
    return w / w.sum(1, keepdim=True)


def resize_normalise(unit: torch.Tensor, isize: int, matrices: bool = False) -> torch.Tensor:
    """float32 [B, C, H, W] in [0, 1] -> [B, C, isize, isize] in [-1, 1]. Resizing happens in [0, 1] so that black
    stays exactly black; the clamp removes the filter's overshoot. matrices: the resize as two matrix products of
    resize_weights (standard-operator graphs; see the module's docstring)."""
    if matrices:
        rows = resize_weights(unit.shape[2], isize, unit.device)
        cols = resize_weights(unit.shape[3], isize, unit.device)
        y = torch.matmul(torch.matmul(rows, unit), cols.t())
    else:
        y = F.interpolate(unit, size=[isize, isize], mode="bilinear", align_corners=False, antialias=True)
    return y.clamp(0.0, 1.0) * 2.0 - 1.0


def adapt_channels(x: torch.Tensor, nc: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, nc, H, W]: C == nc unchanged, 1 -> nc by repetition, 3 -> 1 by luma; else ValueError."""
    c = x.shape[1]
    if c == nc:
        return x
    if c == 1:
        return x.expand(-1, nc, -1, -1).contiguous()
    if c == 3 and nc == 1:
        # LUMA_601, spelled out: TorchScript cannot read module-level tuples
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    raise ValueError(f"image has {c} channels but the model takes {nc}; only 1 -> N (repeat) and 3 -> 1 (luma) "
                     "are converted")


def to_model_input(samples: torch.Tensor, isize: int, nc: int, matrices: bool = False) -> torch.Tensor:
    """Decoded samples [B, C, H, W] (uint8, uint16 or float in [0, 1]) -> float32 [B, nc, isize, isize] in [-1, 1].
    matrices: resize by matrix products (resize_normalise)."""
    return adapt_channels(resize_normalise(to_unit(samples), isize, matrices), nc)
