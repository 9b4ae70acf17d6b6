"""`skipgan export`: a model file -> TorchScript, AOTInductor, ONNX or TensorRT, with preprocessing and metadata
inside (skipgan.export). The result is checked against the engine before the command reports success."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..export import FORMATS, INPUT_DTYPES, export_model
from ..modelfile import load_model, scoring_choice
from .flags import add_aggregation_flag


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model for deployment (TorchScript, AOTInductor, ONNX, TensorRT)")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="torchscript (.pt, C++ torch::jit::load), aoti (.pt2, AOTInductor), onnx (.onnx), "
                        "tensorrt (.engine, needs tensorrt and a GPU)")
    p.add_argument("--out", required=True, help="file to write (.pt, .pt2, .onnx or .engine)")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where the exported model runs (default cpu)")
    p.add_argument("--dtype", default=None,
                   help="the model file's precision by default (fp32; int8 for a file made by `skipgan quantize`: "
                        "TorchScript with the int8 engine's layers, or ONNX with QDQ operators); bf16 (CPU with "
                        "AVX512-BF16/AMX, or GPU) or fp16 (GPU; ONNX/TensorRT: an fp16-typed graph)")
    p.add_argument("--max-batch", type=int, default=64, help="largest batch (AOTInductor, TensorRT profile)")
    p.add_argument("--probes", type=int, default=None, metavar="K",
                   help="the first K stored scoring probes (default: all; 0: the clean input)")
    p.add_argument("--maps", action="store_true",
                   help="also return the anomaly map the model's score reads [B, isize, isize] in σ units (the knn "
                        "map for a knn model; TorchScript: always, via score_with_anomaly_map)")
    p.add_argument("--error-map", action="store_true",
                   help="also return the raw per-pixel error map [B, isize, isize] instead (TorchScript: always, via "
                        "score_with_map)")
    p.add_argument("--input-dtype", default="uint8", choices=tuple(INPUT_DTYPES),
                   help="sample type the graph takes (AOTInductor, ONNX, TensorRT; TorchScript takes any)")
    add_aggregation_flag(p, help="export another of the model's stored aggregations instead of its own (the file "
                                  "computes the model's own by default)")
    p.add_argument("--no-verify", action="store_true", help="skip scoring a few images with the result and the engine")
    t = p.add_argument_group("TensorRT")
    t.add_argument("--min-batch", type=int, default=1, help="optimisation profile: smallest batch")
    t.add_argument("--opt-batch", type=int, default=None, help="optimisation profile: batch to tune for "
                                                               "(default --max-batch)")
    t.add_argument("--input-size", default=None, metavar="HxW",
                   help="image size the engine takes (default isize x isize)")
    t.add_argument("--workspace", type=int, default=1024, metavar="MiB", help="builder workspace limit")
    p.set_defaults(func=cmd_export)


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size {text}: expected HxW, e.g. 256x256") from None
    if h < 8 or w < 8:
        raise InputError(f"--input-size {text}: both sides must be at least 8 pixels")
    return h, w


def cmd_export(a: argparse.Namespace) -> int:
    size = _size(a.input_size)
    opt = a.opt_batch if a.opt_batch is not None else a.max_batch
    if not 1 <= a.min_batch <= opt <= a.max_batch:
        raise InputError(f"--min-batch {a.min_batch} --opt-batch {opt} --max-batch {a.max_batch}: need "
                         "1 <= min <= opt <= max")
    model, meta = load_model(a.model, "cpu")
    if a.aggregation:  # the file's calibration for it takes the place of the model's own
        how, cal, _ = scoring_choice(meta, a.aggregation, a.model)
        meta = {**meta, "aggregation": how, "calibration": cal}
    trt = {"min_batch": a.min_batch, "opt_batch": opt, "workspace_mib": a.workspace}
    if size:
        trt.update(height=size[0], width=size[1])
    report = export_model(model, meta, a.format, a.out, device=a.device, dtype=a.dtype, max_batch=a.max_batch,
                          probes=a.probes, error_map=a.error_map, maps=a.maps, input_dtype=a.input_dtype,
                          verify=not a.no_verify, trt=trt, source=a.model)
    m, dev = report["metadata"], report["max_rel_dev"]
    reference = "the int8 reference's" if m["dtype"] == "int8" else "the engine's"
    checked = "not verified" if dev is None else f"scores within {dev:.2g} (relative) of {reference}"
    print(f"wrote {a.out}: {a.format}, {m['dtype']} on {m['device']}, isize {m['isize']}, {m['channels']} channel(s), "
          f"{m['probes']} probe(s), score '{m['aggregation']}', threshold {m['threshold']:.6g}; {checked}",
          file=sys.stderr)
    return 0
