"""The registry of the bench's runtimes ("peers"): name, precision, factory, and whether it is the engine or one
of skipgan's own exports."""

from __future__ import annotations

import dataclasses

import torch

from .onnx_peers import export_onnx, onnxruntime, onnxruntime_int8, openvino_bf16, openvino_fp32, openvino_int8
from .peer_tools import Factory
from .torch_peers import (eager, eager_autocast_bf16, eager_channels_last, engine, engine_int8, export_torchscript,
                          torch_compile, torchscript_frozen)


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    precision: str  # "fp32" | "bf16" | "int8": what it is compared with and checked against (TOLERANCE)
    factory: Factory
    is_engine: bool = False
    is_export: bool = False  # skipgan's own export: shown beside the engine, never counted as "the best peer"

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32


PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("eager", "fp32", eager),
    Peer("eager_channels_last", "fp32", eager_channels_last),
    Peer("eager_autocast_bf16", "bf16", eager_autocast_bf16),
    Peer("torchscript_frozen", "fp32", torchscript_frozen),
    Peer("torch_compile", "fp32", torch_compile),
    Peer("onnxruntime", "fp32", onnxruntime),
    Peer("onnxruntime_int8", "int8", onnxruntime_int8),
    Peer("openvino_fp32", "fp32", openvino_fp32),
    Peer("openvino_bf16", "bf16", openvino_bf16),
    Peer("openvino_int8", "int8", openvino_int8),
    Peer("export_torchscript", "fp32", export_torchscript, is_export=True),
    Peer("export_torchscript_bf16", "bf16", export_torchscript, is_export=True),
    Peer("export_onnx", "fp32", export_onnx, is_export=True),
    Peer("engine_fp32", "fp32", engine, is_engine=True),
    Peer("engine_bf16", "bf16", engine, is_engine=True),
    Peer("engine_int8", "int8", engine_int8, is_engine=True),
]}
RUNTIMES = tuple(PEERS)
