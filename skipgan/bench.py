"""Side-by-side scoring throughput: the fused engine against the usual ways of running the same model.

Every runtime ("peer") scores the SAME SkipGANomaly, with the same scoring probes, on the same input; the
runtimes are built once per (runtime, batch, isize, K), checked against the eager fp32 scores, then timed
round-robin (a little of each in turn, several rounds) so that load drift on a shared machine hits them alike.
The machine's limits (read bandwidth, fp32 / bf16 matmul FLOP/s) are measured in the same run and turned into
the model's bounds: compute-bound images/s from its FLOPs per image, and the weight-streaming bound at batch 1.

Used by `skipgan bench` (skipgan/cli_bench.py) and by the pytest-benchmark suite benchmarks/bench_engine.py.
No pytest here. The networks' weights are random (DCGAN initialisation, BN statistics randomised) unless a
trained model is given: speed does not depend on training.

    from skipgan import bench
    rows = bench.run([(64, 32, 8)], runtimes=["eager", "engine_fp32"], min_time=2.0)
    print(bench.format_table(rows))
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import gc
import io
import itertools
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import torch
from torch import nn

from .engine.cpu import bf16_fast
from .engine.plan import PLAN_ENV, plan_mode
from .model import Architecture, Corruption, SkipGANomaly
from .model.corruption import select_probes

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
Factory = Callable[[SkipGANomaly, torch.Tensor, torch.dtype], ScoreFn]

TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}  # max relative error of the scores against eager fp32
SPEED_NOTE = ("weights: random (DCGAN init, BN statistics randomised); speed does not depend on training, "
              "the numbers hold for a trained model of the same architecture")


class Config(NamedTuple):
    batch: int
    isize: int
    probes: int  # K: scoring probes (0 = the paper recipe, score the clean input)


def default_configs() -> list[Config]:
    return [Config(b, s, k) for s in (32, 128) for k in (0, 8) for b in (1, 64)]


# ------------------------------------------------------------------------------------------------------ model
def make_model(isize: int = 32, nc: int = 1, probes: int | None = 8, seed: int = 0, *,
               path: str | os.PathLike | None = None, ngf: int = 64, ndf: int = 64, nz: int = 100,
               lam: float = 0.9) -> SkipGANomaly:
    """The model every runtime scores, in eval mode on the CPU.

    Default: the default architecture (ngf = ndf = 64, nz = 100, λ = 0.9) with random DCGAN-init weights and
    K = `probes` noise probes (`Corruption(noise_std=2.0, score_draws=K)`; K = 0: the paper's recipe, the clean
    input), BN running statistics randomised a little so that folding them is not a no-op. Speed does not
    depend on training. With `path`: that trained model file instead (its isize must be `isize`; it scores
    with the first `probes` of its stored probes, reweighted; None: all of them).
    """
    if path is not None:
        model = load_trained(path)
        if model.arch.isize != isize:
            raise ValueError(f"isize={isize}: the model file {path} is for isize {model.arch.isize}")
        return with_probes(model, probes)
    torch.manual_seed(seed)
    probes = probes or 0
    corruption = Corruption(noise_std=2.0, score_draws=probes) if probes else Corruption()
    model = SkipGANomaly(Architecture(isize=isize, nc=nc, ngf=ngf, ndf=ndf, nz=nz), lam=lam, corruption=corruption)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.05)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
    return model.eval()


def load_trained(path: str | os.PathLike) -> SkipGANomaly:
    """A trained model file (skipgan.modelfile), in eval mode on the CPU; InputError if the file is bad."""
    from .modelfile import load_model

    return load_model(path, "cpu")[0]


def with_probes(model: SkipGANomaly, k: int | None) -> SkipGANomaly:
    """A copy of `model` scoring with the first k of its stored probes, reweighted (k=None: as stored);
    ValueError 'probes=k: ...' where the model cannot (see select_probes)."""
    scale, shift, weight = select_probes(model.probe_scale, model.probe_shift, model.probe_weight, k)
    if weight.shape[0] == model.probe_weight.shape[0]:
        return model
    m = copy.deepcopy(model)
    m.probe_scale, m.probe_shift, m.probe_weight = scale.clone(), shift.clone(), weight.clone()
    return m.eval()


def num_probes(model: SkipGANomaly) -> int:
    return int(model.probe_weight.shape[0])


# ------------------------------------------------------------------------------------------------ FLOP counting
def conv_macs(layer: nn.Conv2d | nn.ConvTranspose2d, in_hw: tuple[int, int]) -> int:
    """Multiply-adds of one image through a (transposed) convolution whose input is in_hw = (H, W).

    Conv2d: every output value is a dot product of length C_in/groups · kh · kw. ConvTranspose2d: every input
    value is scattered, times C_out/groups · kh · kw weights, into the output.
    """
    kh, kw = layer.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    if isinstance(layer, nn.ConvTranspose2d):
        return in_hw[0] * in_hw[1] * layer.in_channels * (layer.out_channels // layer.groups) * kh * kw
    oh = (in_hw[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (in_hw[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return oh * ow * layer.out_channels * (layer.in_channels // layer.groups) * kh * kw


def _conv_out_hw(layer, hw):
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    if isinstance(layer, nn.ConvTranspose2d):
        op = layer.output_padding
        return ((hw[0] - 1) * sh - 2 * ph + kh + op[0], (hw[1] - 1) * sw - 2 * pw + kw + op[1])
    return ((hw[0] + 2 * ph - kh) // sh + 1, (hw[1] + 2 * pw - kw) // sw + 1)


def _chain_macs(convs, size: int) -> int:
    """Multiply-adds of one image through convolutions applied one after the other from a size x size input."""
    total, hw = 0, (size, size)
    for conv in convs:
        total += conv_macs(conv, hw)
        hw = _conv_out_hw(conv, hw)
    return total


def generator_macs(model: SkipGANomaly) -> int:
    """One image through the UNet: encoder convs at S, S/2, ...; decoder convTs from the 1x1 map back up."""
    g = model.generator
    return _chain_macs([level.conv for level in g.down] + [level.conv for level in reversed(g.up)],
                       model.arch.isize)


def discriminator_macs(model: SkipGANomaly) -> int:
    """One image through the pyramid and the feature conv (the classifier is not part of the score)."""
    d = model.discriminator
    return _chain_macs([level.conv for level in d.pyramid] + [d.feature], model.arch.isize)


def flops_per_image(model: SkipGANomaly) -> int:
    """2 · multiply-adds of scoring one image: the generator on max(K, 1) probes, the discriminator on x and x̂."""
    return 2 * (generator_macs(model) * max(num_probes(model), 1) + discriminator_macs(model) * 2)


def weight_count(model: SkipGANomaly) -> int:
    """Weights the scorer reads per call: every conv of G and of D's feature path, plus one shift per output
    channel where BN or a bias folds into it (BN itself costs nothing once folded)."""
    n = 0
    for m in [*model.generator.modules(), *model.discriminator.pyramid.modules(), model.discriminator.feature]:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            n += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        elif isinstance(m, nn.BatchNorm2d):
            n += m.num_features
    return n


# ------------------------------------------------------------------------------------------------ machine limits
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn: Callable[[], Any], device: torch.device, min_time: float, min_calls: int = 3) -> float:
    fn()
    _sync(device)
    times: list[float] = []
    t_end = time.perf_counter() + min_time
    while len(times) < min_calls or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bf16_fast()


def _matmul_kernels(device: torch.device, dt: torch.dtype, a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable]:
    """The products of a [n, n] @ b [n, n] that this machine offers for dt: torch.mm (MKL for fp32 on x86) and, on
    the CPU, oneDNN's prepacked product (the engine's candidates, engine/layers.py). The limit is the fastest: MKL
    alone understated an AMD Zen 4 by 25 % (its fp32 path there is slower than oneDNN's)."""
    fns = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), a.shape[0])
        fns["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    return fns


def measure_machine(device: str | torch.device = "cpu", *, bw_mb: int = 512, mm_n: int = 4096,
                    min_time: float = 0.5) -> dict[str, Any]:
    """Read bandwidth (x.sum() over a bw_mb MB fp32 buffer) and fp32 / bf16 matmul throughput (mm_n² products, the
    fastest library of _matmul_kernels; bf16 only where the hardware has a bf16 path), measured now with the
    current torch thread count."""
    device = torch.device(device)
    out: dict[str, Any] = {"bw_buffer_mb": bw_mb, "mm_n": mm_n}
    buf = torch.ones(bw_mb * 2**20 // 4, device=device)
    t = _median_time(buf.sum, device, min_time)
    out["read_gb_s"] = buf.numel() * 4 / t / 1e9
    del buf
    flop = 2 * mm_n**3
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dt == torch.bfloat16 and not bf16_supported(device):
            out["bf16_gflop_s"] = None
            continue
        a = torch.randn(mm_n, mm_n, device=device).to(dt)
        b = torch.randn(mm_n, mm_n, device=device).to(dt)
        by = {lib: flop / _median_time(fn, device, min_time, min_calls=2) / 1e9
              for lib, fn in _matmul_kernels(device, dt, a, b).items()}
        out[f"{name}_gflop_s_by"] = {lib: round(g, 1) for lib, g in by.items()}
        out[f"{name}_gflop_s"] = max(by.values())
        del a, b
    return out


def model_bounds(model: SkipGANomaly, machine: dict[str, Any] | None) -> dict[str, Any]:
    """FLOPs and weight bytes per image of `model`, and what the measured machine allows at most."""
    flops, nw = flops_per_image(model), weight_count(model)
    out: dict[str, Any] = {"flops_per_image": flops, "weights": nw, "weight_bytes_fp32": 4 * nw,
                           "weight_bytes_bf16": 2 * nw}
    if machine:
        for p in ("fp32", "bf16"):
            g = machine.get(f"{p}_gflop_s")
            out[f"compute_img_s_{p}"] = g * 1e9 / flops if g else None
            out[f"weight_stream_img_s_b1_{p}"] = machine["read_gb_s"] * 1e9 / out[f"weight_bytes_{p}"]
    return out


def limit_img_s(bounds: dict[str, Any] | None, precision: str, batch: int) -> float | None:
    """The roofline of one call of `batch` images: the slower of computing its FLOPs at the machine's fastest matmul
    rate and streaming the weights once (bf16 rows: bf16 rate and bytes). None where the limits were not
    measured."""
    if not bounds or not bounds.get(f"compute_img_s_{precision}") or not bounds.get(f"weight_stream_img_s_b1_{precision}"):
        return None
    t = max(1 / bounds[f"compute_img_s_{precision}"], 1 / (batch * bounds[f"weight_stream_img_s_b1_{precision}"]))
    return 1 / t


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model (lscpu), cores, torch, the native ops' build, load, date."""
    from . import ops

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": str(device), "skipgan_ops": ops.build_info(),
        "loadavg": list(os.getloadavg()), "python": platform.python_version(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    for mod in ("onnxruntime", "openvino"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - not installed or broken: just not recorded
            info[mod] = None
    return info


# ------------------------------------------------------------------------------------------------------ peers
class ScoreOnly(nn.Module):
    """model.score(x).score as a plain forward: what TorchScript, torch.compile and the exporters get."""

    def __init__(self, model: SkipGANomaly):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.score(x).score


def one_line(e: BaseException, limit: int = 240) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet():
    """Exporters and compilers chatter on stdout/stderr and in warnings; the table is what we print."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _note(fn: ScoreFn, text: str) -> ScoreFn:
    fn.note = text  # type: ignore[attr-defined]
    return fn


def eager(model, example_x, dtype):
    def fn(x):
        with torch.inference_mode():
            return model.score(x).score
    return fn


def eager_channels_last(model, example_x, dtype):
    m = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def fn(x):
        with torch.inference_mode():
            return m.score(x.contiguous(memory_format=torch.channels_last)).score
    return _note(fn, "input converted to channels_last inside the timed call")


def eager_autocast_bf16(model, example_x, dtype):
    device_type = example_x.device.type

    def fn(x):
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16):
            return model.score(x).score.float()
    return fn


def torchscript_frozen(model, example_x, dtype):
    wrapper = ScoreOnly(model).eval()
    with _quiet():
        try:
            sm, how = torch.jit.script(wrapper), "script"
        except Exception as e:  # noqa: BLE001 - the dataclass result etc.: tracing sees only tensors
            with torch.no_grad():
                sm = torch.jit.trace(wrapper, (example_x,), check_trace=False)
            how = f"trace (script failed: {one_line(e, 80)})"
        sm = torch.jit.optimize_for_inference(torch.jit.freeze(sm.eval()))

    def fn(x):
        with torch.no_grad():
            return sm(x)
    return _note(fn, how)


def torch_compile(model, example_x, dtype):
    import torch._dynamo
    import torch._inductor

    torch._dynamo.reset()  # one compiled model alive at a time; no stale guards from the previous config
    options: dict[str, Any] = {"freezing": True}
    if example_x.device.type == "cuda":
        options = {**torch._inductor.list_mode_options("max-autotune"), **options}
    compiled = torch.compile(ScoreOnly(model).eval(), backend="inductor", dynamic=False, options=options)

    def fn(x):
        with torch.no_grad():
            return compiled(x)
    t0 = time.perf_counter()
    with _quiet():
        fn(example_x)
        _sync(example_x.device)
    mode = "max-autotune, " if example_x.device.type == "cuda" else ""
    return _note(fn, f"inductor, {mode}freezing; compile {time.perf_counter() - t0:.1f} s")


_ONNX: dict[tuple, tuple[str, str]] = {}  # (id(model), shape, device) -> (path, exporter): one export per config
_TMP: tempfile.TemporaryDirectory | None = None
_SCRATCH_IDS = itertools.count()


def _scratch_path(stem: str) -> str:
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
    path = _scratch_path("score")
    wrapper = ScoreOnly(model).eval()
    errors = []
    for exporter in ("dynamo", "legacy"):
        try:
            with _quiet(), torch.no_grad():
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


def _ort_session(path: str, providers: list[str]):
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
    sess = _ort_session(path, providers)
    name = sess.get_inputs()[0].name

    def fn(x):
        out = sess.run(None, {name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).to(device)
    return _note(fn, f"exporter {exporter}; {providers[0]}, intra_op_num_threads={torch.get_num_threads()}{extra}")


def _openvino(model, example_x, precision: str):
    import openvino as ov

    if example_x.device.type != "cpu":
        raise RuntimeError("the OpenVINO peers run on the CPU only")
    try:
        path, exporter = onnx_file(model, example_x)
        with _quiet():
            ov_model = ov.convert_model(path)
        src = f"from ONNX ({exporter})"
    except Exception as e:  # noqa: BLE001 - OpenVINO's own PyTorch frontend instead
        with _quiet(), torch.no_grad():
            ov_model = ov.convert_model(ScoreOnly(model).eval(), example_input=example_x)
        src = f"from the torch module (ONNX route failed: {one_line(e, 80)})"
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
    return _note(fn, f"{src}; {precision}, INFERENCE_NUM_THREADS={threads}")


def openvino_fp32(model, example_x, dtype):
    return _openvino(model, example_x, "f32")


def openvino_bf16(model, example_x, dtype):
    return _openvino(model, example_x, "bf16")


def engine(model, example_x, dtype):
    from .engine.screener import Screener

    screener = Screener.from_model(model, device=example_x.device, dtype=dtype, max_batch=example_x.shape[0],
                                   probes=None, threads=torch.get_num_threads())

    def fn(x):
        return screener.score(x).score
    plan = f"; {screener.plan.describe()}" if screener.plan is not None else ""
    return _note(fn, repr(screener) + plan)


# The exports take decoded samples (preprocessing inside); the bench feeds them its [-1, 1] input as float samples
# in [0, 1], which their preprocessing maps back exactly (same size: the resize is the identity). The calibration
# only shifts the normalised scores and verdicts, not the scores timed here.
_BENCH_CALIBRATION = {"threshold": 0.0, "val_stats": {"mean": 0.0, "std": 1.0}}


def _as_samples(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5


def export_torchscript(model, example_x, dtype):
    from .export.pipeline import build_pipeline
    from .export.torchscript import script

    scripted = script(build_pipeline(model, _BENCH_CALIBRATION, native=True, dtype=dtype).to(example_x.device))

    def fn(x):
        with torch.inference_mode():
            return scripted(_as_samples(x))[0]
    precision = str(dtype).replace("torch.", "")
    return _note(fn, f"skipgan export --format torchscript, {precision} (the engine's GEMM layers + native "
                     "epilogues; preprocessing inside)")


def export_onnx(model, example_x, dtype):
    from .export.onnx import export_onnx as write_onnx
    from .export.pipeline import build_pipeline

    if example_x.device.type != "cpu":
        raise RuntimeError("this peer runs ONNX Runtime's CPU provider")
    path = _scratch_path("export")
    pipe = build_pipeline(model, _BENCH_CALIBRATION, native=False)
    with _quiet(), torch.no_grad():
        # batch 2 example: torch.export would specialise a batch of 1
        write_onnx(pipe, _as_samples(example_x[:1]).repeat(2, 1, 1, 1), {"bench": True}, path,
                   max_batch=max(2, example_x.shape[0]), error_map=False)
    sess = _ort_session(path, ["CPUExecutionProvider"])

    def fn(x):
        return torch.from_numpy(sess.run(["scores"], {"images": _as_samples(x).numpy()})[0])
    return _note(fn, f"skipgan export --format onnx (standard ops, preprocessing inside); CPUExecutionProvider, "
                     f"intra_op_num_threads={torch.get_num_threads()}")


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    precision: str  # "fp32" | "bf16": what it is compared with and checked against (TOLERANCE)
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
    Peer("openvino_fp32", "fp32", openvino_fp32),
    Peer("openvino_bf16", "bf16", openvino_bf16),
    Peer("export_torchscript", "fp32", export_torchscript, is_export=True),
    Peer("export_torchscript_bf16", "bf16", export_torchscript, is_export=True),
    Peer("export_onnx", "fp32", export_onnx, is_export=True),
    Peer("engine_fp32", "fp32", engine, is_engine=True),
    Peer("engine_bf16", "bf16", engine, is_engine=True),
]}
RUNTIMES = tuple(PEERS)


def max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got − ref| / |ref| over the batch (inf for a wrong shape or a non-finite score)."""
    got = torch.as_tensor(got).detach().float().cpu().reshape(-1)
    ref = ref.detach().float().cpu().reshape(-1)
    if got.shape != ref.shape:
        return math.inf
    err = ((got - ref).abs() / ref.abs().clamp_min(1e-12)).max().item()
    return err if math.isfinite(err) else math.inf


@dataclasses.dataclass
class Built:
    """One runtime built for one config: its score function, or why there is none."""

    peer: Peer
    fn: ScoreFn | None = None
    status: str = "ok"
    note: str = ""
    build_s: float = 0.0
    err: float | None = None
    times: list[float] = dataclasses.field(default_factory=list)


def build_peer(peer: Peer, model: SkipGANomaly, x: torch.Tensor, ref: torch.Tensor) -> Built:
    """Build `peer` for (model, x's shape) and check its scores against `ref` (eager fp32 on x).

    Never raises: a runtime that cannot be built or cannot score is 'unavailable: <reason>'; one whose scores
    are off by more than TOLERANCE[precision] is 'WRONG (...)' (still timed, never counted as best)."""
    b = Built(peer)
    t0 = time.perf_counter()
    try:
        b.fn = peer.factory(model, x, peer.dtype)
        b.note = getattr(b.fn, "note", "")
        got = b.fn(x)
        _sync(x.device)
    except Exception as e:  # noqa: BLE001 - reported in the table, never aborts the run
        b.fn, b.status = None, f"unavailable: {one_line(e)}"
        return b
    finally:
        b.build_s = time.perf_counter() - t0
    b.err = max_rel_err(got, ref)
    tol = TOLERANCE[peer.precision]
    if not b.err <= tol:
        b.status = f"WRONG (max rel err {b.err:.2g} > {tol:g})"
    return b


def make_input(model: SkipGANomaly, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = model.arch
    return (torch.rand(batch, a.nc, a.isize, a.isize, generator=g) * 2 - 1).to(device)


def reference_scores(model: SkipGANomaly, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.score(x).score.float()


# ------------------------------------------------------------------------------------------------------ run
def _time_round(b: Built, x: torch.Tensor, budget: float) -> None:
    """Calls of b.fn(x) for `budget` seconds (at least one), each call timed on its own."""
    t_end = time.perf_counter() + budget
    while True:
        t0 = time.perf_counter()
        b.fn(x)
        _sync(x.device)
        t1 = time.perf_counter()
        b.times.append(t1 - t0)
        if t1 >= t_end:
            return


def _row(b: Built, cfg: Config, machine, bounds, load) -> dict[str, Any]:
    med = statistics.median(b.times) if b.times else None
    limit = limit_img_s(bounds, b.peer.precision, cfg.batch)
    return {"limit_img_s": limit, "pct_of_limit": round(100 * cfg.batch / med / limit, 1) if med and limit else None,
            "runtime": b.peer.name, "precision": b.peer.precision, "batch": cfg.batch, "isize": cfg.isize,
            "K": cfg.probes, "img_s": cfg.batch / med if med else None, "ms_per_batch": med * 1e3 if med else None,
            "max_rel_err": b.err, "status": b.status, "calls": len(b.times), "build_s": round(b.build_s, 2),
            "note": b.note, "loadavg_1m": load, "machine": machine, "bounds": bounds}


def _model_for(source, cfg: Config, nc: int, seed: int, model_kwargs: dict) -> SkipGANomaly:
    if isinstance(source, SkipGANomaly):
        if source.arch.isize != cfg.isize:
            raise ValueError(f"isize={cfg.isize}: the trained model is for isize {source.arch.isize}")
        return with_probes(source, cfg.probes)
    return make_model(cfg.isize, nc, cfg.probes, seed, **model_kwargs)


def run(configs: Iterable[Config | Sequence[int]] | None = None, runtimes: Sequence[str] | None = None,
        min_time: float = 2.0, threads: int | None = None, device: str | torch.device = "cpu", *,
        model: SkipGANomaly | str | os.PathLike | None = None, nc: int = 1, seed: int = 0,
        model_kwargs: dict | None = None, rounds: int | None = None, warmup: int = 2,
        machine: bool | dict = True, progress: Callable[[str], None] | None = None,
        plan: str | None = None) -> list[dict[str, Any]]:
    """Build, check and time every runtime on every config (batch, isize, K); one row per (config, runtime).

    model: None (random weights, `make_model(isize, nc, K, seed, **model_kwargs)`), a trained SkipGANomaly or
    the path of a model file (its isize only; K = the first K of its stored probes). threads: torch's (and the
    other runtimes') intra-op threads for the run (None: as set). rounds: round-robin rounds (default 5, 3 from
    isize 128 on); each runtime gets min_time / rounds seconds per round. plan: the engine's layer plan ('tuned' or
    'fixed'; None: $SKIPGAN_PLAN, else tuned), set for the run through that variable. machine: measure the machine limits
    (True), skip them (False) or pass these keyword arguments to `measure_machine` (small sizes for tests).
    """
    configs = [Config(*c) for c in (default_configs() if configs is None else configs)]
    runtimes = list(RUNTIMES if runtimes is None else runtimes)
    unknown = [r for r in runtimes if r not in PEERS]
    if unknown:
        raise ValueError(f"runtimes={','.join(unknown)}: unknown; choose from {', '.join(RUNTIMES)}")
    device = torch.device(device)
    say = progress or (lambda s: None)
    if isinstance(model, (str, os.PathLike)):
        model = load_trained(model)
    model_kwargs = model_kwargs or {}
    rows: list[dict[str, Any]] = []
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    plan_before = os.environ.get(PLAN_ENV)
    if plan:
        os.environ[PLAN_ENV] = plan_mode(plan)
    try:
        limits = None
        if machine:
            say("measuring the machine: read bandwidth, matmul FLOP/s")
            limits = measure_machine(device, **(machine if isinstance(machine, dict) else {}))
            limits["threads"] = torch.get_num_threads()
        models: dict[tuple[int, int], SkipGANomaly] = {}
        for cfg in configs:
            key = (cfg.isize, cfg.probes)
            if key not in models:
                models.clear()
                models[key] = _model_for(model, cfg, nc, seed, model_kwargs).to(device)
            m = models[key]
            bounds = model_bounds(m, limits)
            x = make_input(m, cfg.batch, device, seed)
            ref = reference_scores(m, x)
            built: list[Built] = []
            for name in runtimes:
                say(f"isize {cfg.isize}, K {cfg.probes}, batch {cfg.batch}: building {name}")
                built.append(build_peer(PEERS[name], m, x, ref))
            live = [b for b in built if b.fn is not None]
            for b in live:
                try:
                    for _ in range(warmup):
                        b.fn(x)
                    _sync(device)
                except Exception as e:  # noqa: BLE001
                    b.fn, b.status = None, f"failed while warming up: {one_line(e)}"
            n_rounds = rounds or (5 if cfg.isize < 128 else 3)
            for r in range(n_rounds):
                say(f"isize {cfg.isize}, K {cfg.probes}, batch {cfg.batch}: round {r + 1}/{n_rounds}")
                for b in live:
                    if b.fn is None:
                        continue
                    try:
                        _time_round(b, x, min_time / n_rounds)
                    except Exception as e:  # noqa: BLE001
                        b.fn, b.status, b.times = None, f"failed while timing: {one_line(e)}", []
            load = round(os.getloadavg()[0], 2)
            rows.extend(_row(b, cfg, limits, bounds, load) for b in built)
            del built, live
            clear_exports()
            gc.collect()
    finally:
        torch.set_num_threads(threads_before)
        if plan:
            os.environ.pop(PLAN_ENV, None) if plan_before is None else os.environ.__setitem__(PLAN_ENV, plan_before)
        clear_exports()
    return rows


# ------------------------------------------------------------------------------------------------------ table
def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if v >= 1 else f"{v:.3g}"


def _best(rows: list[dict], pred) -> dict | None:
    ok = [r for r in rows if pred(r) and r["status"] == "ok" and r["img_s"]]
    return max(ok, key=lambda r: r["img_s"]) if ok else None


def _ratio(a: dict | None, b: dict | None) -> str:
    if a is None or b is None:
        return "n/a"
    return (f"{a['img_s'] / b['img_s']:.3g}x ({a['runtime']} {_fmt(a['img_s'])} vs {b['runtime']} "
            f"{_fmt(b['img_s'])} img/s)")


def format_machine(machine: dict | None) -> str:
    if not machine:
        return "machine limits: not measured"
    bf16 = machine.get("bf16_gflop_s")
    return (f"machine limits (measured in this run, {machine.get('threads', '?')} torch threads): read bandwidth "
            f"{machine['read_gb_s']:.1f} GB/s (x.sum() over {machine['bw_buffer_mb']} MB fp32); matmul "
            f"{machine['fp32_gflop_s']:.0f} GFLOP/s fp32, "
            + (f"{bf16:.0f} GFLOP/s bf16" if bf16 else "bf16 not supported")
            + f" ({machine['mm_n']}x{machine['mm_n']}, the fastest of "
            + "; ".join(f"{p} {', '.join(f'{k} {v:.0f}' for k, v in machine[f'{p}_gflop_s_by'].items())}"
                        for p in ("fp32", "bf16") if machine.get(f"{p}_gflop_s_by")) + ")"
            + "; % limit: of the slower of computing the FLOPs at that rate and streaming the weights once per call")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Per config: images/s of every runtime, the engine against the best peer of its precision and of any
    precision, and the model's bounds on this machine."""
    if not rows:
        return "(no results)"
    lines = [format_machine(rows[0].get("machine"))]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["isize"], r["K"], r["batch"]), []).append(r)
    for (isize, K, batch), rs in groups.items():
        bd = rs[0].get("bounds") or {}
        lines += ["", f"isize {isize}, K {K} probes, batch {batch}"
                  + (f"  (load {rs[0]['loadavg_1m']})" if rs[0].get("loadavg_1m") is not None else "")]
        lines.append(f"  {'runtime':<21} {'prec':<5} {'img/s':>9} {'ms/batch':>10} {'% limit':>8} {'max rel err':>11}"
                     "  status")
        for r in rs:
            err = "-" if r["max_rel_err"] is None else f"{r['max_rel_err']:.1e}"
            pct = "-" if r.get("pct_of_limit") is None else f"{r['pct_of_limit']:.0f}%"
            lines.append(f"  {r['runtime']:<21} {r['precision']:<5} {_fmt(r['img_s']):>9} "
                         f"{_fmt(r['ms_per_batch'], 2):>10} {pct:>8} {err:>11}  {r['status']}"
                         + (f"  [{r['note']}]" if r.get("note") and not r["status"].startswith("unavailable") else ""))
        is_engine = lambda r: PEERS[r["runtime"]].is_engine if r["runtime"] in PEERS else False  # noqa: E731
        is_peer = lambda r: r["runtime"] not in PEERS or not (  # noqa: E731
            PEERS[r["runtime"]].is_engine or PEERS[r["runtime"]].is_export)
        for p in ("fp32", "bf16"):  # the engine of each precision against the peers of that precision
            if any(r["runtime"] == f"engine_{p}" for r in rs):
                e = _best(rs, lambda r: r["runtime"] == f"engine_{p}")
                peer = _best(rs, lambda r: is_peer(r) and r["precision"] == p)
                lines.append(f"  engine_{p} / best {p} peer: {_ratio(e, peer)}")
        if any(is_engine(r) for r in rs):
            lines.append(f"  best engine / best peer (any precision): "
                         f"{_ratio(_best(rs, is_engine), _best(rs, is_peer))}")
        if bd:
            text = f"  bounds: {bd['flops_per_image'] / 1e9:.3g} GFLOP/image"
            if bd.get("compute_img_s_fp32"):
                text += f" -> compute-bound {_fmt(bd['compute_img_s_fp32'])} img/s fp32"
                if bd.get("compute_img_s_bf16"):
                    text += f", {_fmt(bd['compute_img_s_bf16'])} img/s bf16"
            text += f"; weights {bd['weight_bytes_fp32'] / 1e6:.1f} MB fp32"
            if bd.get("weight_stream_img_s_b1_fp32"):
                text += (f" -> weight-streaming bound at batch 1: {_fmt(bd['weight_stream_img_s_b1_fp32'])} img/s "
                         f"fp32, {_fmt(bd['weight_stream_img_s_b1_bf16'])} img/s bf16")
            lines.append(text)
    return "\n".join(lines)
