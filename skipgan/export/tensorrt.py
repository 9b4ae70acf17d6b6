"""TensorRT: a serialized engine built from the ONNX export with the `tensorrt` Python API.

Strongly typed network: precisions come from the ONNX graph's own types (an fp16 export gives an fp16 network;
no builder precision flags), one optimisation profile for the dynamic batch (min / opt / max) at one input
image size, a workspace limit. The same build with trtexec:

    trtexec --onnx=model.onnx --saveEngine=model.engine --stronglyTyped \
            --minShapes=images:1x3x256x256 --optShapes=images:64x3x256x256 --maxShapes=images:256x3x256x256 \
            --memPoolSize=workspace:1024M

The plan format has no place for user metadata, so it goes beside the engine as `<engine>.json`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..fileio import atomic_path, write_text_atomic
from .metadata import dumps


def require_tensorrt():
    """The tensorrt module, or an InputError saying what is missing (the package, or a GPU to build on)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise InputError("--format tensorrt: the `tensorrt` Python package is not installed; `pip install tensorrt` "
                         "on a machine with an NVIDIA GPU, or export --format onnx and build with trtexec") from None
    import torch

    if not torch.cuda.is_available():
        raise InputError("--format tensorrt: no CUDA GPU here; TensorRT builds its engine for the GPU it runs on. "
                         "Export --format onnx and build on the target machine")
    return trt


def build_engine(onnx_path: str | os.PathLike, out: str | os.PathLike, metadata: dict, *, channels: int,
                 height: int, width: int, min_batch: int, opt_batch: int, max_batch: int, workspace_mib: int) -> None:
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    shape = lambda b: (b, channels, height, width)  # noqa: E731
    profile.set_shape("images", shape(min_batch), shape(opt_batch), shape(max_batch))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))
    write_text_atomic(f"{out}.json", dumps(metadata))
