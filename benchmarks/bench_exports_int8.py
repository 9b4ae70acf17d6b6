"""The int8 exports against the fp32 exports of the same model in each runtime, one run (ratios within the run are
the claim): TorchScript (the engine's layers), ONNX in ONNX Runtime and in OpenVINO, beside the int8 engine.

    python benchmarks/bench_exports_int8.py --model runs/digit0/model.safetensors --int8 runs/digit0/int8.safetensors

Both files are exported to a temporary folder (`skipgan export`, verified). First the agreement of the int8 files:
each runtime's scores of 16 random uint8 images of (isize + 3) × (isize − 1) against the int8 reference (the eager
model's int8 semantics), relative to the largest score. Then every (runtime, precision) pair is timed in turn for
`--rounds` rounds (0: none) of `--min-time` seconds on one batch of random uint8 images at isize (the whole pipeline:
resize, probes, G, D, score), and the median images/s reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from skipgan.bench import interleaved_rates
from skipgan.engine import Screener
from skipgan.engine.cpu import int8_restriction
from skipgan.export import export_model, reference_outputs
from skipgan.export.pipeline import u8s8_products_exact
from skipgan.export.torchscript import load as load_torchscript
from skipgan.modelfile import load_model
from skipgan.preprocess import to_model_input


def runners(fp32: str, int8: str, out: Path, batch: int):
    """(precision, runtime) -> a call scoring a batch of images (the batch-sized random images by default)."""
    import onnxruntime as ort
    import openvino as ov

    models = {"fp32": load_model(fp32), "int8": load_model(int8)}
    arch = models["fp32"][1]["architecture"]
    images = torch.randint(0, 256, (batch, arch["nc"], arch["isize"], arch["isize"]), dtype=torch.uint8)
    calls = {}
    for prec, (model, meta) in models.items():  # each call: f(images=the batch) -> the scores first
        pt, onnx = out / f"{prec}.pt", out / f"{prec}.onnx"
        export_model(model, meta, "torchscript", pt, max_batch=batch)
        export_model(model, meta, "onnx", onnx, max_batch=batch)
        ts = load_torchscript(pt)
        calls[prec, "TorchScript"] = lambda im=images, ts=ts: ts(im)[0]
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        calls[prec, "ONNX Runtime"] = lambda im=images, s=session: torch.from_numpy(
            s.run(None, {"images": im.numpy()})[0])
        compiled = ov.Core().compile_model(str(onnx), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        calls[prec, "OpenVINO (f32 hint)"] = lambda im=images, c=compiled: torch.from_numpy(c(im.numpy())[0])
        screener = Screener.from_model(model, dtype=prec, max_batch=batch)
        calls[prec, "engine"] = lambda im=images, s=screener: s.score(
            to_model_input(im, arch["isize"], arch["nc"])).score
    return calls, models["int8"], arch


def agreement(calls, int8, arch) -> None:
    model, meta = int8
    s = arch["isize"]
    images = torch.randint(0, 256, (16, arch["nc"], s + 3, s - 1), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    ref = reference_outputs(model, meta, images)[0]
    print("int8 files against the int8 reference (max |d| / max |score|, 16 images):")
    for runtime in ("TorchScript", "ONNX Runtime", "OpenVINO (f32 hint)"):
        got = calls["int8", runtime](images).float()
        print(f"  {runtime}: {float((got - ref).abs().max() / ref.abs().max()):.2g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an fp32 model file")
    p.add_argument("--int8", required=True, help="its int8 model file (skipgan quantize)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--min-time", type=float, default=1.5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if int8_restriction() or not u8s8_products_exact():
        raise SystemExit(f"int8: {int8_restriction() or 'u8s8 products saturate here'}")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        calls, int8, arch = runners(a.model, a.int8, Path(tmp), a.batch)
        agreement(calls, int8, arch)
        if a.rounds < 1:
            return
        ips = interleaved_rates(calls, a.batch, a.rounds, a.min_time)
    print(f"batch {a.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| runtime | fp32 img/s | int8 img/s | int8 / fp32 |")
    print("|---|---:|---:|---:|")
    for runtime in dict.fromkeys(r for _, r in calls):
        f, q = ips["fp32", runtime], ips["int8", runtime]
        print(f"| {runtime} | {f:.1f} | {q:.1f} | {q / f:.2f}x |")


if __name__ == "__main__":
    main()
