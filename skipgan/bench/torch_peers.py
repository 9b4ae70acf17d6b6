"""The bench's runtimes that run the model through torch: eager (three ways), TorchScript, torch.compile, the
fused engine and skipgan's own TorchScript export. Each factory(model, example_x, dtype) returns score(x)."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from ..engine.screener import Screener
from ..export.pipeline import build_pipeline
from ..export.torchscript import script
from .machine import sync
from .peer_tools import BENCH_CALIBRATION, ScoreOnly, as_samples, note, one_line, quiet


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
    return note(fn, "input converted to channels_last inside the timed call")


def eager_autocast_bf16(model, example_x, dtype):
    device_type = example_x.device.type

    def fn(x):
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16):
            return model.score(x).score.float()
    return fn


def torchscript_frozen(model, example_x, dtype):
    wrapper = ScoreOnly(model).eval()
    with quiet():
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
    return note(fn, how)


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
    with quiet():
        fn(example_x)
        sync(example_x.device)
    mode = "max-autotune, " if example_x.device.type == "cuda" else ""
    return note(fn, f"inductor, {mode}freezing; compile {time.perf_counter() - t0:.1f} s")


def engine(model, example_x, dtype):
    screener = Screener.from_model(model, device=example_x.device, dtype=dtype, max_batch=example_x.shape[0],
                                   probes=None, threads=torch.get_num_threads())

    def fn(x):
        return screener.score(x).score
    plan = f"; {screener.plan.describe()}" if screener.plan is not None else ""
    return note(fn, repr(screener) + plan)


def engine_int8(model, example_x, dtype):
    """The int8 engine on an int8 copy of the model (input ranges observed on the bench's own input: its speed does
    not depend on them; a trained model's file keeps its own, skipgan quantize)."""
    import copy

    from ..quant.calibrate import all_layers_int8, observe_input_ranges

    if model.int8 is None:
        model = copy.copy(model)
        model.int8 = all_layers_int8(model, observe_input_ranges(model, example_x.cpu()))
    screener = Screener.from_model(model, device=example_x.device, dtype="int8", max_batch=example_x.shape[0],
                                   probes=None, threads=torch.get_num_threads())

    def fn(x):
        return screener.score(x).score
    return note(fn, repr(screener))


def export_torchscript(model, example_x, dtype):
    scripted = script(build_pipeline(model, BENCH_CALIBRATION, native=True, dtype=dtype).to(example_x.device))

    def fn(x):
        with torch.inference_mode():
            return scripted(as_samples(x))[0]
    precision = str(dtype).replace("torch.", "")
    return note(fn, f"skipgan export --format torchscript, {precision} (the engine's GEMM layers + native "
                    "epilogues; preprocessing inside)")
