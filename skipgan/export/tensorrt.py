"""TensorRT: a serialized engine built from the ONNX export with the `tensorrt` Python API.

Strongly typed network: precisions come from the ONNX graph's own types (an fp16 export gives an fp16 network;
no builder precision flags), TF32 off (fp32 is fp32; --dtype tf32 turns it on), one optimisation profile for the
dynamic batch (min / opt / max) at one input image size, a workspace limit. The ONNX graph is the `--format onnx`
export: standard operators that TensorRT's parser accepts (parser_refusals checks that). The same build with
trtexec:

    trtexec --onnx=model.onnx --saveEngine=model.engine --stronglyTyped --noTF32 \
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
                         "on a machine with an NVIDIA GPU, or export --format onnx (the same graph) and build with "
                         "trtexec") from None
    import torch

    if not torch.cuda.is_available():
        raise InputError("--format tensorrt: no CUDA GPU here; TensorRT builds its engine for the GPU it runs on. "
                         "Export --format onnx and build on the target machine")
    return trt


def build_engine(onnx_path: str | os.PathLike, out: str | os.PathLike, metadata: dict, *, channels: int,
                 height: int, width: int, min_batch: int, opt_batch: int, max_batch: int, workspace_mib: int) -> None:
    trt = require_tensorrt()
    import onnx

    refused = parser_refusals(onnx.load(str(onnx_path), load_external_data=False))
    if refused:  # what onnx-tensorrt's checks would say, before a GPU build fails on it
        raise RuntimeError(f"TensorRT's ONNX parser would refuse {onnx_path}: {'; '.join(refused)}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    # TensorRT runs fp32 convolutions and matrix products on TF32 tensor cores unless told not to: fp32 means fp32
    # here as in the engine, and --dtype tf32 is the opt-in
    if metadata.get("dtype") == "tf32":
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
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


# ------------------------------------------------------------------------------------------ what the parser refuses
# TensorRT's ONNX parser, onnx-tensorrt (github.com/onnx/onnx-tensorrt, release 10.1), as its source states it:
# the operators with an importer (onnxOpImporters.cpp, DEFINE_BUILTIN_OP_IMPORTER; ModelImporter.cpp hands any other
# op_type to a plugin of that name, which a stock TensorRT does not have) ...
PARSER_OPS = frozenset("""
    Abs Acos Acosh And Asin Asinh Atan Atanh Add ArgMax ArgMin AveragePool BatchNormalization Cast CastLike Ceil Celu
    Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace QuantizeLinear
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND
    Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GroupNormalization GRU Hardmax
    HardSigmoid Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
    Min Mul Mod Neg NonMaxSuppression Not OneHot Or Pad ParametricSoftplus Pow PRelu RandomUniform RandomUniformLike
    RandomNormal RandomNormalLike Range Reciprocal ReduceL1 ReduceLogSum ReduceLogSumExp ReduceL2 ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Sign Round Resize Reshape ReverseSequence RNN RoiAlign
    ScaledTanh Scan GridSample ScatterND ScatterElements Scatter Selu Shape Sigmoid Sin Sinh Size Slice Softmax
    Softsign Softplus SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor Shrink HardSwish NonZero Mish""".split())
# ... the element types it converts (importerUtils.cpp convertDtype; Cast's `to` is checked against them) ...
PARSER_TYPES = frozenset({"DOUBLE", "FLOAT", "INT8", "UINT8", "FLOAT16", "BFLOAT16", "BOOL", "INT32", "INT64",
                          "FLOAT8E4M3FN", "INT4"})
# ... the operators that refuse UINT8 (or BOOL) data in their first input (notInvalidType in their importers) ...
NO_UINT8_INPUT = {"Resize": ("BOOL", "UINT8"), "Slice": ("UINT8",), "Concat": ("UINT8",), "Clip": ("UINT8",),
                  "Expand": ("UINT8",), "Gather": ("UINT8",), "Split": ("UINT8",), "MatMul": ("INT32", "INT64"),
                  **{f"Reduce{k}": ("BOOL", "UINT8") for k in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean",
                                                              "Min", "Prod", "Sum", "SumSquare")}}
# ... and the attribute and input checks of onnxOpCheckers.cpp and the importers, in parser_refusals below.
RESIZE_COORDINATES = ("align_corners", "tf_half_pixel_for_nn", "pytorch_half_pixel", "half_pixel", "asymmetric")


def parser_refusals(model) -> list[str]:
    """What TensorRT's ONNX parser would refuse in `model` (an onnx.ModelProto), one line per node and reason; []
    when it parses. Walks the graph and its local functions; input types come from ONNX shape inference."""
    import onnx
    from onnx import helper

    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({t.name: t.data_type for t in g.initializer})
    static = {v.name: all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
              for v in [*g.input, *g.output, *g.value_info]}
    constant = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    type_name = onnx.TensorProto.DataType.Name
    out: list[str] = []
    nodes = [*g.node, *(n for f in model.functions for n in f.node)]
    local = {f.name for f in model.functions}
    for n in nodes:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        text = {k: v.decode() if isinstance(v, bytes) else v for k, v in at.items()}
        where = f"{n.op_type} node {n.name or n.output[0]!r}"

        def refuse(why: str) -> None:
            out.append(f"{where}: {why}")

        if n.op_type not in PARSER_OPS and n.op_type not in local:
            refuse("no importer for this operator (the parser would look for a plugin of that name)")
            continue
        first = types.get(n.input[0]) if n.input else None
        if first is not None and type_name(first) in NO_UINT8_INPUT.get(n.op_type, ()):
            refuse(f"input of type {type_name(first)}")
        if n.op_type == "Resize":
            if text.get("antialias", 0):
                refuse("antialias=1 (\"Antialiasing is not supported currently\")")
            if text.get("mode", "nearest") not in ("nearest", "linear", "cubic"):
                refuse(f"mode {text['mode']}")
            ctm = text.get("coordinate_transformation_mode", "half_pixel")
            if ctm not in RESIZE_COORDINATES:
                refuse(f"coordinate_transformation_mode {ctm}")
            if ctm == "tf_half_pixel_for_nn" and text.get("nearest_mode", "round_prefer_floor") != "round_prefer_floor":
                refuse("nearest_mode other than round_prefer_floor with tf_half_pixel_for_nn")
            if text.get("keep_aspect_ratio_policy", "stretch") != "stretch":
                refuse(f"keep_aspect_ratio_policy {text['keep_aspect_ratio_policy']}")
            if len(set(at.get("axes", []))) != len(at.get("axes", [])):
                refuse("repeated axes")
        elif n.op_type == "Cast" and type_name(at["to"]) not in PARSER_TYPES:
            refuse(f"cast to {type_name(at['to'])}")
        elif n.op_type == "Constant" and {"sparse_value", "value_string", "value_strings"} & set(at):
            refuse("sparse or string value")
        elif n.op_type == "BatchNormalization" and at.get("training_mode", 0):
            refuse("training_mode=1")
        elif n.op_type in ("MaxPool", "AveragePool", "LpPool") and any(d != 1 for d in at.get("dilations", [1])):
            refuse("dilations other than 1")
        elif n.op_type == "MaxPool" and len(n.output) > 1:
            refuse("the indices output")
        elif n.op_type == "Slice" and (not 3 <= len(n.input) <= 5 or (len(n.input) > 3 and n.input[3]
                                                                       and n.input[3] not in constant)):
            refuse("not 3 to 5 inputs, or axes not constant (\"does not support dynamic axes\")")
        elif n.op_type == "Split" and len(n.input) > 1 and n.input[1] and "num_outputs" in at:
            refuse("both a split input and num_outputs")
        elif n.op_type.startswith("Reduce") and len(n.input) > 1 and n.input[1] and n.input[1] not in constant:
            refuse("axes not an initializer (\"Axis input must be an initializer!\")")
        elif n.op_type in ("Unsqueeze", "Squeeze") and len(n.input) > 1 and n.input[1] not in constant:
            refuse("axes not constant")
        elif n.op_type == "Squeeze" and len(n.input) < 2 and "axes" not in at and not static.get(n.input[0]):
            refuse("no axes on a dynamic shape (\"Cannot infer squeeze dimensions from a dynamic shape\")")
        elif n.op_type == "Range":
            kinds = {types.get(i) for i in n.input}
            if len(kinds) != 1 or type_name(kinds.pop() or 0) not in ("INT32", "INT64", "FLOAT"):
                refuse("start, limit and delta not all int32, int64 or float")
    return out
