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


def resize_normalise(unit: torch.Tensor, isize: int) -> torch.Tensor:
    """float32 [B, C, H, W] in [0, 1] -> [B, C, isize, isize] in [-1, 1]. Resizing happens in [0, 1] so that black
    stays exactly black; the clamp removes the filter's overshoot."""
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


def to_model_input(samples: torch.Tensor, isize: int, nc: int) -> torch.Tensor:
    """Decoded samples [B, C, H, W] (uint8, uint16 or float in [0, 1]) -> float32 [B, nc, isize, isize] in [-1, 1]."""
    return adapt_channels(resize_normalise(to_unit(samples), isize), nc)
