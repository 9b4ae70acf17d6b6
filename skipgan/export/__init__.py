"""Exports of the engine's screening pipeline (skipgan.export.pipeline) with preprocessing and metadata inside.

    from skipgan.export import export_model
    export_model(model, meta, "torchscript", "model.pt")       # or "aoti" (.pt2), "onnx", "tensorrt"

Every format takes decoded images [B, C, H, W] (uint8 / uint16 / float in [0, 1], any H×W) and returns
(scores, normalised scores, verdicts) (+ the error map with error_map=True); see docs/deployment.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..anomaly_map import MAP_OF, image_scores, model_maps
from ..engine import Screener
from ..engine.screener import DTYPES, INT8, PRECISIONS, TF32, check_dtype_supported, parse_precision
from ..errors import InputError
from ..model import score_in_batches
from ..model.corruption import select_probes
from ..model.patch_knn import QUERY_BLOCK
from ..modelfile import scoring_choice
from ..preprocess import to_model_input
from ..quant import file_precision, quantized
from .aoti import export_aoti, read_aoti_metadata
from .metadata import check_device, export_metadata
from .onnx import export_onnx, read_onnx_metadata
from .pipeline import ScreeningPipeline, WithMap, build_pipeline, gemm_plan
from .tensorrt import build_engine, require_tensorrt
from .torchscript import export_torchscript, read_torchscript_metadata
from .torchscript import load as load_torchscript

FORMATS = ("torchscript", "aoti", "onnx", "tensorrt")
INT8_FORMATS = ("torchscript", "onnx")  # the int8 engine's layers (CPU) and QDQ operators
SUFFIXES = {"torchscript": ".pt", "aoti": ".pt2", "onnx": ".onnx", "tensorrt": ".engine"}
INPUT_DTYPES = {"uint8": torch.uint8, "uint16": torch.uint16, "float32": torch.float32}
# Largest deviation from the fp32 engine that verification accepts, relative to the largest score.
TOLERANCE = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2, "fp16": 2e-2,
             # int8: against the int8 reference (skipgan/quant/int8.py), not fp32; what remains is a value near a
             # grid step rounding the other way after a different float summation, one step at one element
             INT8: 1e-2}

__all__ = ["FORMATS", "ScreeningPipeline", "build_pipeline", "export_model", "read_metadata"]


def _check(fmt: str, out: str | os.PathLike, device: str, dtype: str, input_dtype: str, max_batch: int) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if not str(out).endswith(SUFFIXES[fmt]):
        raise InputError(f"--out {out}: a {fmt} file must end in {SUFFIXES[fmt]}")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: expected cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible here; export on the GPU machine or use --device cpu")
    if dtype not in PRECISIONS:
        raise InputError(f"--dtype {dtype}: expected one of {', '.join(PRECISIONS)}")
    if dtype == INT8:
        if fmt not in INT8_FORMATS:
            why = ("; TensorRT's int8 is symmetric (zero point 0) while this file's inputs are on uint8 grids with "
                   "zero points, so it would need a calibration of its own (not built): build TensorRT from the fp32 "
                   "model (--dtype fp16)") if fmt == "tensorrt" else ""
            raise InputError(f"--format {fmt}: an int8 model file exports to {' or '.join(INT8_FORMATS)} (the int8 "
                             f"engine's layers; QDQ operators for ONNX Runtime and OpenVINO){why}")
        if device != "cpu":
            raise InputError(f"--device {device}: int8 exports run on the CPU (oneDNN u8s8 products, or ONNX QDQ)")
    if dtype == TF32 and (fmt == "onnx" or (fmt != "tensorrt" and device != "cuda")):
        raise InputError("--dtype tf32: TF32 tensor cores are a CUDA precision: --device cuda (TorchScript, "
                         "AOTInductor) or --format tensorrt; fp32 is true fp32 everywhere")
    if input_dtype not in INPUT_DTYPES:
        raise InputError(f"--input-dtype {input_dtype}: expected one of {', '.join(INPUT_DTYPES)}")
    if max_batch < 2:
        raise InputError(f"--max-batch {max_batch}: must be at least 2")
    if fmt in ("onnx", "tensorrt"):
        import importlib.util

        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise InputError(f"--format {fmt}: needs the {' and '.join(missing)} package(s); "
                             "pip install 'skipgan[export]'")
        if dtype == "bf16":
            raise InputError(f"--dtype bf16: --format {fmt} takes fp32 or fp16")
        if fmt == "tensorrt":
            if input_dtype == "uint16":
                raise InputError("--input-dtype uint16: TensorRT has no 16-bit unsigned inputs; use float32 (divide "
                                 "by 65535 before the engine) or uint8")
            require_tensorrt()  # before any work: a clear error where tensorrt or a GPU is missing
        return
    if dtype == INT8:
        return  # runs anywhere on the CPU (fastest with AVX512-VNNI/AMX; the engine's refusal is about speed)
    try:
        tensor_dtype, tf32 = parse_precision(dtype)
        check_dtype_supported(tensor_dtype, torch.device(device), tf32)
    except ValueError as e:
        raise InputError(f"--{e}") from None


def export_model(model, meta: dict[str, Any], fmt: str, out: str | os.PathLike, *, device: str = "cpu",
                 dtype: str | None = None, max_batch: int = 64, probes: int | None = None, error_map: bool = False,
                 maps: bool = False, input_dtype: str = "uint8", verify: bool = True, trt: dict | None = None,
                 source: str | os.PathLike = "the model") -> dict[str, Any]:
    """Write `out` (atomically) and return {"metadata": ..., "max_rel_dev": float or None (not verified)}.

    model / meta: as skipgan.modelfile.load_model returns them; the file computes the model's own aggregation
    (meta["aggregation"]) with its calibration. maps: a fourth output, the anomaly map the aggregation reads (σ
    units, isize × isize); error_map: the raw per-pixel error map instead (TorchScript files have both methods).
    trt: TensorRT build options (min_batch, opt_batch, height, width, workspace_mib). source: what errors about the
    model call it (the model file's path). dtype: None is the file's own precision (int8 for an int8 model file:
    its quantised layers in the int8 engine's form in TorchScript, QDQ operators in ONNX, the rest fp32). Bad
    arguments raise InputError naming the flag.
    """
    how, _, settings = scoring_choice(meta, None, source)
    dtype = file_precision(model, dtype, source, "export")
    int8 = dtype == INT8
    if maps and error_map:
        raise InputError("--maps and --error-map: choose one fourth output (the anomaly map, or the raw error map)")
    _check(fmt, out, device, dtype, input_dtype, max_batch)
    try:
        select_probes(model.probe_scale, model.probe_shift, model.probe_weight, probes)
    except ValueError as e:
        raise InputError(f"--{e}") from None
    native = fmt in ("torchscript", "aoti")
    # TorchScript on the CPU carries the engine's measured plan of this machine (the kernels run inside the graph);
    # AOTInductor compiles its own kernels from the fixed forms
    # (int8: the plan of the layers kept in fp32; the quantised ones take the int8 engine's fixed forms)
    float_name = "fp32" if int8 else dtype
    plan = gemm_plan(model, dtype=DTYPES[float_name], probes=probes, max_batch=max_batch) \
        if fmt == "torchscript" and torch.device(device).type == "cpu" else None
    tensor_dtype, tf32 = parse_precision(float_name)  # tf32: fp32 tensors, TF32 convolutions (CUDA) / builder flag
    # TorchScript runs the knn search in query blocks (a loop over a dynamic count); torch.export's graphs cannot
    # hold that loop, so theirs is one block per memory block (the same distances, more memory at large batches)
    pipeline = build_pipeline(model, meta["calibration"], native=native, dtype=tensor_dtype, probes=probes,
                              device=device, tiled=fmt == "torchscript", plan=plan, tf32=tf32, aggregation=how,
                              map_settings=settings, query_block=QUERY_BLOCK if fmt == "torchscript" else 0,
                              int8=int8)
    fourth = "anomaly" if maps else "error" if error_map else None
    # the wrapper too in eval mode: a graph exported from a module in training mode carries that flag (ONNX warns)
    module = WithMap(pipeline, fourth).eval() if fourth and fmt != "torchscript" else pipeline
    n_probes = int(pipeline.probe_weight.shape[0])
    metadata = export_metadata(meta, fmt=fmt, device=device, dtype=dtype, probes=n_probes, max_batch=max_batch,
                               input_dtype="any" if fmt == "torchscript" else input_dtype, map_output=fourth,
                               aggregation=how, map_settings=settings.for_map(MAP_OF[how]),
                               quantization=meta.get("quantization") if int8 else None)
    if plan is not None:  # measured on the exporting machine: the file says so
        metadata["plan"] = plan.to_meta()
    S, nc = pipeline.isize, pipeline.nc
    example = _example(2, nc, S + 3, S - 2, input_dtype, device)  # odd, non-square: nothing specialises on isize
    with torch.no_grad():
        if fmt == "torchscript":
            export_torchscript(pipeline, metadata, out)
        elif fmt == "aoti":
            export_aoti(module, example, metadata, out, max_batch)
        else:
            onnx_path = out if fmt == "onnx" else f"{os.fspath(out)[: -len('.engine')]}.onnx"
            export_onnx(module, example, metadata, onnx_path, max_batch, metadata["outputs"])
            if fmt == "tensorrt":
                t = trt or {}
                build_engine(onnx_path, out, metadata, channels=nc, height=t.get("height", S),
                             width=t.get("width", S), min_batch=t.get("min_batch", 1),
                             opt_batch=t.get("opt_batch", max_batch), max_batch=max_batch,
                             workspace_mib=t.get("workspace_mib", 1024))
    dev = None
    if verify:
        dev = verify_export(model, meta, fmt, out, device, dtype, probes, input_dtype, nc, S, fourth, source)
    return {"metadata": metadata, "max_rel_dev": dev}


def _example(b: int, nc: int, h: int, w: int, input_dtype: str, device: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if input_dtype == "float32":
        return torch.rand(b, nc, h, w, generator=g).to(device)
    hi = 256 if input_dtype == "uint8" else 65536
    return torch.randint(0, hi, (b, nc, h, w), generator=g, dtype=torch.int64).to(INPUT_DTYPES[input_dtype]).to(device)


def run_exported(fmt: str, path: str | os.PathLike, images: torch.Tensor, device: str = "cpu",
                 torchscript_map: str | None = None):
    """Score decoded images with an exported file through its own runtime; the outputs as a tuple of CPU tensors
    (None for TensorRT, whose runtime this does not drive, or ONNX without onnxruntime). A TorchScript or
    AOTInductor file exported for another device than `device` is an InputError naming the export flag.
    torchscript_map: "anomaly" or "error" calls a TorchScript file's method with that map as a fourth output."""
    if fmt == "torchscript":
        module = load_torchscript(path, device)
        method = {None: module.forward, "anomaly": module.score_with_anomaly_map,
                  "error": module.score_with_map}[torchscript_map]
        out = method(images.to(device))
    elif fmt == "aoti":
        check_device(json.loads(read_aoti_metadata(path)), device, path)
        out = torch._inductor.aoti_load_package(str(path))(images.to(device))
    elif fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = [torch.from_numpy(o) for o in session.run(None, {"images": images.cpu().numpy()})]
    else:
        return None
    return tuple(t.cpu() for t in out)


def reference_outputs(model, meta: dict[str, Any], images: torch.Tensor, *, device: str = "cpu",
                      probes: int | None = None, source: str | os.PathLike = "the model"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What an export of `model` must return for decoded `images`, by the fp32 engine and `skipgan score`'s path:
    (the model's image scores [B], its anomaly maps [B, isize, isize] in σ units, raw error maps). An int8 model
    (model.int8): by its int8 reference (skipgan.quant.quantized), which runs on any CPU."""
    how, _, settings = scoring_choice(meta, None, source)
    arch = meta["architecture"]
    x = to_model_input(images, arch["isize"], arch["nc"]).to(device)
    if model.int8 is not None:
        res = _int8_reference(model, x, probes)
    else:
        screener = Screener.from_model(model, device=device, dtype=torch.float32, max_batch=4, probes=probes)
        res = screener.score(x, error_map=True).to("cpu")
    amaps = model_maps(res, how, settings)
    return torch.from_numpy(image_scores(res, how, settings, amaps)).float(), torch.from_numpy(amaps), res.error_map


def _int8_reference(model, x: torch.Tensor, probes: int | None):
    """The eager model's scores of x under its int8 semantics, through the probes an export with `probes` takes."""
    saved = model.probe_scale, model.probe_shift, model.probe_weight
    try:
        model.probe_scale, model.probe_shift, model.probe_weight = select_probes(*saved, probes)
        with torch.no_grad(), quantized(model, model.int8):
            return score_in_batches(model, x, with_error_map=True)
    finally:
        model.probe_scale, model.probe_shift, model.probe_weight = saved


def verify_export(model, meta: dict[str, Any], fmt: str, out, device: str, dtype: str, probes: int | None,
                  input_dtype: str, nc: int, isize: int, fourth: str | None = None,
                  source: str | os.PathLike = "the model") -> float | None:
    """Score a few synthetic images (odd sizes) with the exported file and with the fp32 engine (an int8 file: with
    its int8 reference); the largest deviation relative to the largest score (and of the map, relative to its
    largest value, with a fourth output). Raises RuntimeError beyond TOLERANCE[dtype]."""
    images = _example(3, nc, isize + 5, isize * 2 - 1, input_dtype, "cpu", seed=1)
    if fmt == "torchscript":
        fourth = fourth or "anomaly"  # a TorchScript file has both map methods: its anomaly map is checked too
    got = run_exported(fmt, out, images, device, fourth if fmt == "torchscript" else None)
    if got is None:
        return None
    scores, amaps, emaps = reference_outputs(model, meta, images, device=device, probes=probes, source=source)
    pairs = [("scores", got[0], scores)]
    if fourth is not None and len(got) > 3:
        pairs.append(("maps", got[3], amaps if fourth == "anomaly" else emaps))
    dev = 0.0
    for what, g, want in pairs:
        d = float((g.float() - want).abs().max() / want.abs().max().clamp_min(1e-12))
        if not d <= TOLERANCE[dtype]:
            raise RuntimeError(f"{out}: the exported {fmt} model's {what} deviate from the engine's by {d:.3g} "
                               f"(relative; tolerance {TOLERANCE[dtype]:g} for {dtype}); please report this")
        dev = max(dev, d)
    return dev


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata object inside an exported file (the format is told by the suffix)."""
    p = os.fspath(path)
    if p.endswith(".pt2"):
        read = read_aoti_metadata
    elif p.endswith(".pt"):
        read = read_torchscript_metadata
    elif p.endswith(".onnx"):
        read = read_onnx_metadata
    elif p.endswith(".engine"):
        return json.loads(open(f"{p}.json").read())
    else:
        raise InputError(f"{p}: not an exported skipgan file (.pt, .pt2, .onnx or .engine)")
    return json.loads(read(p))
