"""The bench's runtimes that run an ONNX file: ONNX Runtime and OpenVINO on the model's ONNX export, and
skipgan's own ONNX export in ONNX Runtime. The files live in a temporary folder of the run."""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile

import torch

from ..export.onnx import export_onnx as write_onnx
from ..export.pipeline import build_pipeline
from ..model import SkipGANomaly
from .peer_tools import BENCH_CALIBRATION, ScoreOnly, as_samples, note, one_line, quiet

_ONNX: dict[tuple, tuple[str, str]] = {}  # (id(model), shape, device) -> (path, exporter): one export per config
_TMP: tempfile.TemporaryDirectory | None = None
_SCRATCH_IDS = itertools.count()


def scratch_path(stem: str) -> str:
    """A new file path in the bench's temporary folder (made on first use, removed at exit)."""
    global _TMP
    if _TMP is None:
        _TMP = tempfile.TemporaryDirectory(prefix="skipgan-bench-")
    return os.path.join(_TMP.name, f"{stem}-{next(_SCRATCH_IDS)}.onnx")


def onnx_file(model: SkipGANomaly, example_x: torch.Tensor) -> tuple[str, str]:
    """(path, exporter) of the model exported to ONNX for this fixed input shape: torch.onnx.export with
    dynamo=True first, then the legacy TorchScript-based exporter if that fails. Cached per model and shape."""
    key = (id(model), tuple(example_x.shape), str(example_x.device))
    if key in _ONNX and os.path.exists(_ONNX[key][0]):
        return _ONNX[key]
    path = scratch_path("score")
    wrapper = ScoreOnly(model).eval()
    errors = []
    for exporter in ("dynamo", "legacy"):
        try:
            with quiet(), torch.no_grad():
                if exporter == "dynamo":
                    torch.onnx.export(wrapper, (example_x,), path, dynamo=True, input_names=["x"],
                                      output_names=["score"], external_data=False)
                else:
                    torch.onnx.export(wrapper, (example_x,), path, dynamo=False, opset_version=17,
                                      input_names=["x"], output_names=["score"])
            _ONNX[key] = (path, exporter if not errors else f"{exporter} (dynamo failed: {errors[0]})")
            return _ONNX[key]
        except Exception as e:  # noqa: BLE001 - try the next exporter, report both if neither works
            errors.append(one_line(e, 100))
    raise RuntimeError("ONNX export failed: " + "; ".join(f"{n}: {m}" for n, m in zip(("dynamo", "legacy"), errors)))


def clear_exports() -> None:
    for path, _ in _ONNX.values():
        with contextlib.suppress(OSError):
            os.remove(path)
    _ONNX.clear()


def ort_session(path: str, providers: list[str]):
    """An ONNX Runtime session with the bench's thread settings (torch's intra-op threads, one inter-op)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=providers)


def onnxruntime(model, example_x, dtype):
    import onnxruntime as ort

    device = example_x.device
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("this onnxruntime has no CUDAExecutionProvider")
        providers, extra = ["CUDAExecutionProvider"], "; host<->device copies included"
    else:
        providers, extra = ["CPUExecutionProvider"], ""
    path, exporter = onnx_file(model, example_x)
    sess = ort_session(path, providers)
    name = sess.get_inputs()[0].name

    def fn(x):
        out = sess.run(None, {name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).to(device)
    return note(fn, f"exporter {exporter}; {providers[0]}, intra_op_num_threads={torch.get_num_threads()}{extra}")


def onnxruntime_int8(model, example_x, dtype):
    """ONNX Runtime static int8 (onnxruntime.quantization.quantize_static, QDQ format): uint8 activations with
    min/max ranges, int8 per-channel weights, calibrated on the bench's own input as the engine_int8 row is."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if example_x.device.type != "cpu":
        raise RuntimeError("the int8 ONNX Runtime peer runs on the CPU only")
    path, exporter = onnx_file(model, example_x)
    out = scratch_path("score-int8")
    name = ort_session(path, ["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: example_x.detach().numpy()}])

        def get_next(self):
            return next(self.batches, None)

    with quiet():
        quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    sess = ort_session(out, ["CPUExecutionProvider"])

    def fn(x):
        return torch.from_numpy(sess.run(None, {name: x.detach().numpy()})[0])
    return note(fn, f"exporter {exporter}; static QDQ, u8 activations (min/max), s8 per-channel weights; "
                    f"intra_op_num_threads={torch.get_num_threads()}")


def _openvino(model, example_x, precision: str):
    import openvino as ov

    if example_x.device.type != "cpu":
        raise RuntimeError("the OpenVINO peers run on the CPU only")
    try:
        path, exporter = onnx_file(model, example_x)
        with quiet():
            ov_model = ov.convert_model(path)
        src = f"from ONNX ({exporter})"
    except Exception as e:  # noqa: BLE001 - OpenVINO's own PyTorch frontend instead
        with quiet(), torch.no_grad():
            ov_model = ov.convert_model(ScoreOnly(model).eval(), example_input=example_x)
        src = f"from the torch module (ONNX route failed: {one_line(e, 80)})"
    if precision == "int8":  # NNCF post-training quantisation on the bench's own input (as engine_int8's ranges)
        import nncf

        with quiet():
            ov_model = nncf.quantize(ov_model, nncf.Dataset([example_x.detach().numpy()]), subset_size=1)
        src += "; NNCF post-training int8"
        # the int8 layers run in int8; what is left in bf16 where this CPU has it (as the int8 engine's epilogues)
        from ..engine.cpu import bf16_fast

        precision = "bf16" if bf16_fast() else "f32"
    threads = torch.get_num_threads()
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                         "PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_NUM_THREADS": threads})
    got = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()  # "<Type: 'float32'>" or "f32"
    if not any(name in got for name in {"f32": ("f32", "float32"), "bf16": ("bf16", "bfloat16")}[precision]):
        raise RuntimeError(f"OpenVINO would run this model in {got}, not {precision}, on this CPU")
    request = compiled.create_infer_request()

    def fn(x):
        request.infer({0: x.detach().numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())
    return note(fn, f"{src}; {precision}, INFERENCE_NUM_THREADS={threads}")


def openvino_int8(model, example_x, dtype):
    return _openvino(model, example_x, "int8")


def openvino_fp32(model, example_x, dtype):
    return _openvino(model, example_x, "f32")


def openvino_bf16(model, example_x, dtype):
    return _openvino(model, example_x, "bf16")


def export_onnx(model, example_x, dtype):
    if example_x.device.type != "cpu":
        raise RuntimeError("this peer runs ONNX Runtime's CPU provider")
    path = scratch_path("export")
    pipe = build_pipeline(model, BENCH_CALIBRATION, native=False)
    with quiet(), torch.no_grad():
        # batch 2 example: torch.export would specialise a batch of 1
        write_onnx(pipe, as_samples(example_x[:1]).repeat(2, 1, 1, 1), {"bench": True}, path,
                   max_batch=max(2, example_x.shape[0]), error_map=False)
    sess = ort_session(path, ["CPUExecutionProvider"])

    def fn(x):
        return torch.from_numpy(sess.run(["scores"], {"images": as_samples(x).numpy()})[0])
    return note(fn, f"skipgan export --format onnx (standard ops, preprocessing inside); CPUExecutionProvider, "
                    f"intra_op_num_threads={torch.get_num_threads()}")
