"""ONNX: the pipeline in standard operators (Conv with folded BN, LeakyRelu, Relu, ConvTranspose, Tanh, the
antialiased resize as two MatMuls of weights computed in the graph from the input size, the score as
Sub/Mul/ReduceMean), opset 18, dynamic batch and image size. The same graph is what TensorRT builds from: nothing in
it is refused by TensorRT's ONNX parser (skipgan.export.tensorrt.parser_refusals, tested).

Metadata: the model property `skipgan` (the whole JSON object) plus each scalar field as its own property.
fp16: the network's weights and activations are fp16 in the graph itself (preprocessing and the score stay
fp32), which is what a strongly typed TensorRT network builds from.
"""

from __future__ import annotations

import logging
import os

import torch

from ..fileio import atomic_path
from .aoti import dynamic_shapes
from .metadata import KEY, dumps

OPSET = 18


def export_onnx(pipeline: torch.nn.Module, example: torch.Tensor, metadata: dict, out: str | os.PathLike,
                max_batch: int, names: list[str]) -> None:
    """names: the outputs' names (metadata "outputs")."""
    import onnx

    # the exporter's registry warns about every torchvision op it cannot find; none is used here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    program = torch.onnx.export(pipeline, (example,), dynamo=True, opset_version=OPSET,
                                dynamic_shapes=dynamic_shapes(max_batch), input_names=["images"],
                                output_names=names, verbose=False)
    model = program.model_proto
    props = {KEY: dumps(metadata)}
    props.update({k: str(v) for k, v in metadata.items() if isinstance(v, (int, float, str))})
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))


def read_onnx_metadata(path: str | os.PathLike) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return props[KEY]
