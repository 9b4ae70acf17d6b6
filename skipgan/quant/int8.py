"""int8 post-training quantisation: the one definition of what an int8 layer computes.

A quantised convolution (or transposed convolution) computes conv(dq(q(x)), dq(q(W))) + shift, i.e. integer
products accumulated exactly and rescaled once, where

- weights are symmetric per output channel: q(W_c) = clamp(round(W_c / s_c), -127, 127), s_c = max|W_c| / 127
  (127, not 128: the range is symmetric, so −W quantises to −q(W));
- the layer's input is affine per tensor in uint8: q(x) = clamp(round(x / s_x) + z, 0, 255), with s_x and z
  from the range of the input over calibration images (0 is always exactly representable: zero borders and
  ReLU zeros stay exact).

Per-channel symmetric weight scales commute with BatchNorm folding (the fold multiplies each output channel by a
constant), so the integers of a conv quantised here are those of the engine's folded conv; only the scale
carries the fold. Layers are named as the engine names them (enc0.., dec0.., pyr0.., feat); layers in `kept`
stay in fp32 (chosen by measured sensitivity, skipgan/quant/calibrate.py).

`quantized(model, params)` runs the eager model with exactly these semantics (fake quantisation: dequantised
values in fp32 convolutions): the reference every int8 path (engine, exports) is tested against.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import InputError
from ..model.layer_names import named_layers

QMAX_W = 127  # symmetric weights: [-127, 127]
QMIN_X, QMAX_X = 0, 255  # affine uint8 inputs
PRECISION = "int8"


def conv_layers(model) -> dict[str, nn.Conv2d | nn.ConvTranspose2d]:
    """The model's convolutions under the engine's layer names, in the engine's order."""
    g, d = model.generator, model.discriminator
    return named_layers([level.conv for level in g.down], [level.conv for level in g.up],
                        [level.conv for level in d.pyramid], d.feature)


def file_precision(model, dtype: str | None, source, verb: str) -> str:
    """The precision `model` runs at: its file's own unless `dtype` is given — int8 for a file made by `skipgan
    quantize` (which runs in int8 only: its thresholds are its int8 scores'), fp32 otherwise — for the commands that
    `verb` ("score", "export") it. InputError where `dtype` does not fit the file."""
    own = PRECISION if model.int8 is not None else "fp32"
    if dtype is None:
        return own
    if own == PRECISION and dtype != PRECISION:
        raise InputError(f"--dtype {dtype}: {source} is an int8 model file, it {verb}s in int8 only; leave --dtype "
                         f"out (or {verb} the fp32 model it was made from)")
    if dtype == PRECISION and own != PRECISION:
        raise InputError(f"--dtype int8: {source} is not an int8 model file; make one with `skipgan quantize "
                         f"{source} --out MODEL_INT8`")
    return dtype


def out_dim(conv: nn.Module) -> int:
    return 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvTranspose2d weight: [C_in, C_out, k, k]


def weight_scales(weight: torch.Tensor, out_dim: int) -> torch.Tensor:
    """s_c = max|W_c| / 127 per output channel (fp32; an all-zero channel gets scale 1, its integers are 0)."""
    dims = [d for d in range(weight.dim()) if d != out_dim]
    amax = weight.detach().float().abs().amax(dim=dims)
    return torch.where(amax > 0, amax / QMAX_W, torch.ones_like(amax))


def _per_channel(scales: torch.Tensor, weight: torch.Tensor, out_dim: int) -> torch.Tensor:
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    return scales.view(shape)


def quantize_weight(weight: torch.Tensor, out_dim: int, scales: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, per-channel scales): round half to even, as every int8 path must."""
    scales = weight_scales(weight, out_dim) if scales is None else scales.float()
    q = torch.round(weight.detach().float() / _per_channel(scales, weight, out_dim)).clamp_(-QMAX_W, QMAX_W)
    return q.to(torch.int8), scales


def fake_weight(weight: torch.Tensor, out_dim: int, scales: torch.Tensor) -> torch.Tensor:
    q, _ = quantize_weight(weight, out_dim, scales)
    return q.float() * _per_channel(scales, weight, out_dim)


def input_qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of the uint8 grid covering [min(lo, 0), max(hi, 0)] (0 exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / (QMAX_X - QMIN_X)
    zero = int(min(QMAX_X, max(QMIN_X, round(QMIN_X - lo / scale))))
    return float(scale), zero


def quantize_input(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """q(x) = clamp(round(x / s_x) + z, 0, 255) as uint8, in fp32 math, round half to even (the definition of the
    native skipgan::quantize_u8_out, which the int8 engine runs)."""
    return torch.clamp(torch.round(x.float() / scale) + zero, QMIN_X, QMAX_X).to(torch.uint8)


def fake_input(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """dq(q(x)) in x's dtype."""
    return ((quantize_input(x, scale, zero).float() - zero) * scale).to(x.dtype)


@dataclasses.dataclass(frozen=True)
class Int8Params:
    """What an int8 model file adds to its model: each quantised layer's input grid and weight scales, and the
    layers kept in fp32."""

    inputs: dict[str, tuple[float, int]]  # layer -> (s_x, z)
    weight_scales: dict[str, torch.Tensor]  # layer -> [C_out] fp32
    kept: tuple[str, ...] = ()
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)  # how it was made (images, sensitivity)

    @property
    def quantized_layers(self) -> tuple[str, ...]:
        return tuple(n for n in self.inputs if n not in self.kept)

    # model-file form: tensors named int8.<layer>.{input,weight_scale}, settings in the metadata
    TENSOR_PREFIX = "int8."

    def to_file(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {}
        for name, (scale, zero) in self.inputs.items():
            tensors[f"{self.TENSOR_PREFIX}{name}.input"] = torch.tensor([scale, float(zero)], dtype=torch.float64)
            tensors[f"{self.TENSOR_PREFIX}{name}.weight_scale"] = self.weight_scales[name].float()
        meta = {"precision": PRECISION, "layers": list(self.inputs), "kept": list(self.kept),
                "weights": "symmetric per output channel, int8 [-127, 127], round half to even",
                "inputs": "affine per tensor, uint8, zero exact", "calibration": self.calibration}
        return tensors, meta

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> "Int8Params":
        """Pops this class's tensors from `tensors`; KeyError/ValueError on anything inconsistent."""
        if meta.get("precision") != PRECISION:
            raise ValueError(f"quantization precision {meta.get('precision')!r}, expected {PRECISION!r}")
        inputs, scales = {}, {}
        for name in meta["layers"]:
            grid = tensors.pop(f"{cls.TENSOR_PREFIX}{name}.input")
            if grid.shape != (2,) or not float(grid[0]) > 0 or not 0 <= float(grid[1]) <= QMAX_X:
                raise ValueError(f"layer {name}: bad input grid {grid.tolist()}")
            inputs[name] = (float(grid[0]), int(grid[1]))
            scales[name] = tensors.pop(f"{cls.TENSOR_PREFIX}{name}.weight_scale").float()
        kept = tuple(meta.get("kept", ()))
        if not set(kept) <= set(inputs):
            raise ValueError(f"kept layers {sorted(set(kept) - set(inputs))} are not layers of the model")
        return cls(inputs, scales, kept, meta.get("calibration") or {})


@contextlib.contextmanager
def quantized(model, params: Int8Params, layers: tuple[str, ...] | None = None) -> Iterator[None]:
    """Run `model` with the int8 semantics of the module docstring on `layers` (default: params.quantized_layers):
    fake-quantised weights swapped in and every such layer's input fake-quantised by a forward pre-hook. The fp32
    weights are restored on exit."""
    convs = conv_layers(model)
    names = params.quantized_layers if layers is None else layers
    saved, hooks = {}, []
    try:
        for name in names:
            conv = convs[name]
            saved[name] = conv.weight.data
            conv.weight.data = fake_weight(conv.weight.data, out_dim(conv), params.weight_scales[name]).to(
                conv.weight.dtype)
            scale, zero = params.inputs[name]
            hooks.append(conv.register_forward_pre_hook(
                lambda _m, args, s=scale, z=zero: (fake_input(args[0], s, z), *args[1:])))
        yield
    finally:
        for h in hooks:
            h.remove()
        for name, w in saved.items():
            convs[name].weight.data = w
