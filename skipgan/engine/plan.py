"""How each layer of the CPU engine runs, chosen by timing the candidates on the machine that runs them.

A kernel that is fastest on one CPU can be the slowest on another: MKL's packed fp32 product ran the engine's
shapes at 2x oneDNN's speed... on an AMX Xeon it was chosen on, and at 0.4-0.6x oneDNN's on an AMD Zen 4/5. So,
like cuDNN's benchmark mode, the engine times every candidate of every layer when a Screener is built and keeps
the fastest:

    candidates  form (engine/layers.py: taps = im2col / col2im, dense, pixel, conv) x kernel (oneDNN packed, MKL
                packed, torch.mm), each built for the layer's real batch of rows and called on scratch buffers; a
                quantised layer of an int8 model: its int8 forms (taps, dense) on oneDNN's u8s8 product
    budget      TUNE_BUDGET seconds in all (packing included); layers not reached keep the fixed plan's choice
    cache       the chosen plan is written as JSON under plan_cache_dir(), keyed by everything that can change the
                answer (CPU model and flags, ISA restrictions, torch / oneDNN / MKL versions, architecture, dtype,
                layer shapes and batch, threads): the next Screener on this machine starts without timing

`plan="fixed"` (or SKIPGAN_PLAN=fixed) keeps the pre-measurement rules (layers.fixed_form, layers.default_kernel);
the scores of every plan agree (fp32 within rounding: tests/test_engine_plan.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import ops
from ..model.layer_names import named_layers
from .fold import FoldedConv, FoldedNetwork
from .layers import (available_kernels, candidate_forms, default_kernel, fixed_form, form_kernels, make_layer,
                     needs_border)

# tuned: measured once per machine, then read from the cache; retune: measured again now and the cache rewritten (a
# plan measured while another job loaded the machine stays cached otherwise); fixed: the built-in rules
PLANS = ("tuned", "retune", "fixed")
PLAN_ENV, CACHE_ENV = "SKIPGAN_PLAN", "SKIPGAN_PLAN_CACHE"
FORMAT = 3  # 2: the direct-convolution form; 3: int8 layers' forms. Bump when the meaning of a cached plan changes: older files are then ignored
# Seconds of timing for one Screener (packing weights included). The budget: <= 2 s at isize 32, <= 10 s
# at isize 128; the budget scales with the work of one pass, and a layer the budget does not reach keeps the fixed
# choice.
TUNE_BUDGET = {32: 2.0, 64: 4.0, 128: 10.0}
REPEATS = 3  # timed calls per candidate after one warm-up call; the minimum is kept (robust to a loaded machine)
# Candidates are timed on a share of the layer's rows with at least TIMING_GEMM_ROWS rows in the tap form's product
# (large products run at the same rate per row, and the big layers would otherwise take most of the budget); the
# winner is then built for the real rows.
TIMING_GEMM_ROWS = 2048
LONG_ENOUGH = 0.02  # seconds of timed calls after which a candidate's minimum is taken as it stands
GIVE_UP = 3.0  # a candidate whose warm-up call takes this many times the best so far is not timed further
# Environment variables that restrict the instruction sets the libraries use: a plan measured under one is not
# valid without it.
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "MKL_CBWR",
           "MKL_DEBUG_CPU_TYPE")


def plan_mode(plan: str | dict | None) -> str | dict:
    """The plan asked for: the argument, else $SKIPGAN_PLAN, else 'tuned'. A dict {layer name: (form, kernel)}
    forces those choices (checked against the layers when the plan is made)."""
    if isinstance(plan, dict):
        return plan
    mode = plan or os.environ.get(PLAN_ENV) or "tuned"
    if mode not in PLANS:
        src = f"plan={plan!r}" if plan else f"{PLAN_ENV}={mode!r}"
        raise ValueError(f"{src}: expected one of {', '.join(PLANS)}")
    return mode


def budget_for(isize: int) -> float:
    """TUNE_BUDGET at the nearest listed size at or above isize (the largest beyond them)."""
    for size in sorted(TUNE_BUDGET):
        if isize <= size:
            return TUNE_BUDGET[size]
    return TUNE_BUDGET[max(TUNE_BUDGET)] * (isize / max(TUNE_BUDGET)) ** 2


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer as the engine runs it: its name (enc0.., dec0.., pyr0.., feat), weights, input size and rows."""

    name: str
    layer: FoldedConv
    size: int
    rows: int
    fold: bool = False  # must end in the fold op (the last generator layer)

    def macs(self) -> int:
        """Multiply-adds of one call on `rows` inputs (tap form): the order in which layers are tuned."""
        l, o = self.layer, self.layer.out_size(self.size)
        return self.rows * (self.size**2 if l.transposed else o * o) * l.kernel**2 * l.c_in * l.c_out

    def timing_rows(self) -> int:
        l = self.layer
        per_row = self.size**2 if l.transposed else l.out_size(self.size) ** 2
        return min(self.rows, max(1, -(-TIMING_GEMM_ROWS // per_row)))

    @property
    def int8(self) -> bool:
        """A quantised layer of an int8 model: its own forms and kernel (engine/int8_layers.py)."""
        return self.layer.int8 is not None

    def geometry(self) -> list:
        l = self.layer
        return [self.name, l.c_in, l.c_out, l.kernel, l.stride, l.padding, l.transposed, self.size, self.rows,
                self.int8]


def network_specs(net: FoldedNetwork, rows: int, d_rows: int) -> list[LayerSpec]:
    """The folded network's layers as the engine runs them: the generator's on `rows` (a tile of the K·B batch), the
    discriminator's on `d_rows` ([x; x̂]); names enc0.., dec0.. (dec0: the last, folding layer), pyr0.., feat."""
    S, n_enc, n_dec, n_pyr = net.isize, len(net.encoder), len(net.decoder), len(net.pyramid)
    sizes = named_layers([S >> j for j in range(n_enc)], [S >> (j + 1) for j in range(n_dec)],
                         [S >> i for i in range(n_pyr)], S >> n_pyr)
    batch = named_layers([rows] * n_enc, [rows] * n_dec, [d_rows] * n_pyr, d_rows)
    return [LayerSpec(name, layer, sizes[name], batch[name], fold=layer is net.decoder[0])
            for name, layer in named_layers(net.encoder, net.decoder, net.pyramid, net.feature).items()]


@dataclasses.dataclass
class Plan:
    """The chosen (form, kernel) of every layer, how it was obtained and what the candidates measured."""

    mode: str  # "tuned" | "fixed" | "forced"
    choices: dict[str, tuple[str, str]]
    source: str  # "fixed" | "measured" | "cache"
    seconds: float = 0.0  # spent timing (0 for a cached or fixed plan)
    budget: float = 0.0
    timings_ms: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    untimed: list[str] = dataclasses.field(default_factory=list)  # layers the budget did not reach (fixed choice)
    path: str | None = None  # the cache file

    def describe(self) -> str:
        """One line for logs: where the plan came from and each layer's choice."""
        layers = " ".join(f"{name}={form}/{kernel}" for name, (form, kernel) in self.choices.items())
        if self.source == "measured":
            how = f"measured in {self.seconds:.2f} s (budget {self.budget:g} s)"
            if self.untimed:
                how += f", {len(self.untimed)} layers past the budget kept the fixed choice"
        elif self.source == "cache":
            how = f"from the cache {self.path}"
        elif self.source == "forced":
            how = "forced by the caller"
        else:
            how = "fixed rules"
        return f"plan {self.mode}, {how}: {layers}"

    def to_meta(self) -> dict[str, Any]:
        """What an export says of the plan it carries: how it was chosen, on which CPU, each layer's choice."""
        return {"mode": self.mode, "source": self.source, "cpu": _cpu_id()["cpu"],
                "choices": {k: list(v) for k, v in self.choices.items()}}


# ------------------------------------------------------------------------------------------------ the cache key
def _cpu_id() -> dict[str, str]:
    """CPU model and a digest of its feature flags (Linux /proc/cpuinfo; elsewhere what platform says)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "flags", "Features") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    flags = " ".join(sorted(info.get("flags", info.get("Features", "")).split()))
    return {"cpu": info.get("model name") or platform.processor() or "unknown",
            "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:16]}


def _library_versions() -> dict[str, str]:
    """torch's MKL and oneDNN versions (torch.__config__.show() names both)."""
    out = {}
    for line in torch.__config__.show().splitlines():
        low = line.lower()
        if "math kernel library" in low and "mkl" not in out:
            out["mkl"] = line.strip().lstrip("- ")
        elif ("mkl-dnn" in low or "onednn" in low) and "onednn" not in out:
            out["onednn"] = line.strip().lstrip("- ")
    return out


def plan_key(specs: list[LayerSpec], dtype: torch.dtype, device: torch.device, threads: int) -> dict[str, Any]:
    """Everything that can change which candidate is fastest."""
    return {
        "format": FORMAT, **_cpu_id(), "arch": platform.machine(), "torch": torch.__version__,
        **_library_versions(), "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
        "dtype": str(dtype).replace("torch.", ""), "device": device.type, "threads": threads,
        "layers": [s.geometry() for s in specs],
    }


def plan_cache_dir() -> Path:
    """$SKIPGAN_PLAN_CACHE, else $XDG_CACHE_HOME/skipgan/plans, else ~/.cache/skipgan/plans."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "skipgan" / "plans"


def cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return plan_cache_dir() / f"plan-{digest}.json"


def _valid_choices(choices: Any, specs: list[LayerSpec], dtype, device) -> bool:
    if not isinstance(choices, dict) or set(choices) != {s.name for s in specs}:
        return False
    for s in specs:
        c = choices[s.name]
        if not (isinstance(c, list) and len(c) == 2 and c[0] in candidate_forms(s.layer, s.size, s.fold)
                and c[1] in form_kernels(c[0], dtype, device, s.int8)):
            return False
    return True


def load_cached(key: dict[str, Any], specs: list[LayerSpec], dtype, device) -> dict[str, tuple[str, str]] | None:
    """The cached choices for this key, or None where there is none or the file is stale, foreign or damaged
    (its stored key must equal this one: a hash collision or a hand-edited file is not trusted)."""
    path = cache_path(key)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not _valid_choices(data.get("choices"), specs,
                                                                                   dtype, device):
        return None
    return {k: tuple(v) for k, v in data["choices"].items()}


def save_cached(key: dict[str, Any], plan: Plan) -> str | None:
    """Write the plan atomically (temp file, then rename); None where the cache folder cannot be written."""
    path = cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plan-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "choices": {k: list(v) for k, v in plan.choices.items()},
                       "timings_ms": plan.timings_ms, "seconds": plan.seconds, "untimed": plan.untimed,
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
                      f, indent=1)
        os.replace(tmp, path)
        return str(path)
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------ timing
def _time_layer(obj, spec: LayerSpec, dtype, device, clock: Callable[[], float], give_up: float) -> float:
    """Seconds of one call of a built layer on scratch buffers of its real shape: the minimum of up to REPEATS
    calls after a warm-up call, fewer where one call is long (the spread is then small); inf where the warm-up
    call alone took `give_up` seconds (a candidate far slower than the best so far)."""
    n, size, l = spec.rows, spec.size, spec.layer
    b = needs_border(obj)
    src = torch.randn(n, size + 2 * b, size + 2 * b, l.c_in, device=device).to(dtype)
    c, y = obj.scratch(n)
    cols = torch.empty(max(c, 1), device=device, dtype=dtype)
    ybuf = torch.empty(max(y, 1), device=device, dtype=dtype)
    o = l.out_size(size)
    out = torch.empty(n, o, o, l.c_out, device=device, dtype=dtype).permute(0, 3, 1, 2)
    act = ops.ACTIVATIONS["leaky_relu"]
    best, spent, calls = float("inf"), 0.0, 0
    while calls <= REPEATS and spent < LONG_ENOUGH:
        t0 = clock()
        obj(src, cols, ybuf, act, 0.2, out)
        t = clock() - t0
        if calls == 0 and t > give_up:
            return float("inf")
        if calls:  # the first call warms caches and creates the library's primitive
            best, spent = min(best, t), spent + t
        calls += 1
    return best


def tune(specs: list[LayerSpec], dtype: torch.dtype, device: torch.device, budget: float,
         clock: Callable[[], float] = time.perf_counter) -> tuple[Plan, dict[str, Any]]:
    """Time the candidates of every layer within `budget` seconds, the layers with most work first.

    Per layer two rounds instead of every (form, kernel) pair: the fixed form on each kernel, then the other forms on
    the kernel that won (which library multiplies fastest is a property of the CPU and the shape more than of the
    form). Returns the plan and the winning layer objects (built for the real rows, ready to use). Layers that the
    budget does not reach keep the fixed choice and are listed in plan.untimed."""
    start, over, last = clock(), False, 0.0

    def within() -> bool:
        """Budget left for one more candidate as long as the last one took? One clock reading until it is spent,
        none after (the rest keeps the fixed choice)."""
        nonlocal over
        over = over or clock() - start + last > budget
        return not over

    choices: dict[str, tuple[str, str]] = {}
    built: dict[str, Any] = {}
    timings: dict[str, dict[str, float]] = {}
    untimed: list[str] = []
    for spec in sorted(specs, key=lambda s: -s.macs()):
        kernels = available_kernels(dtype, device, spec.int8)
        fixed = (fixed_form(spec.layer, spec.size, spec.rows, spec.fold), default_kernel(dtype, device, spec.int8))
        forms = [f for f in candidate_forms(spec.layer, spec.size, spec.fold)
                 if form_kernels(f, dtype, device, spec.int8)]
        pairs = sum(len(form_kernels(f, dtype, device, spec.int8)) for f in forms)
        if pairs == 1 or not within():
            choices[spec.name] = fixed
            if pairs > 1:
                untimed.append(spec.name)
            continue
        best: tuple[float, tuple[str, str], Any] | None = None
        timings[spec.name] = {}
        timed = dataclasses.replace(spec, rows=spec.timing_rows())

        def trial(form: str, kernel: str) -> None:
            nonlocal best, last
            t0 = clock()
            obj = make_layer(spec.layer, spec.size, timed.rows, dtype, device, form, kernel, spec.fold)
            give_up = GIVE_UP * best[0] if best else float("inf")
            with torch.no_grad():
                t = _time_layer(obj, timed, dtype, device, clock, give_up)
            timings[spec.name][f"{form}/{kernel}"] = round(t * 1e3, 4) if t < float("inf") else None
            if best is None or t < best[0]:
                best = (t, (form, kernel), obj)
            last = clock() - t0

        trial(fixed[0], kernels[0])
        for kernel in kernels[1:]:
            if within():
                trial(fixed[0], kernel)
        for form in forms:
            if form != fixed[0] and within():
                fk = form_kernels(form, dtype, device, spec.int8)  # the direct conv has its own library
                trial(form, best[1][1] if best[1][1] in fk else fk[0])
        choices[spec.name] = best[1]
        if timed.rows == spec.rows:
            built[spec.name] = best[2]
    choices = {s.name: choices[s.name] for s in specs}  # the network's order
    plan = Plan("tuned", choices, "measured", clock() - start, budget, timings, untimed)
    return plan, built


def choose(specs: list[LayerSpec], dtype: torch.dtype, device: torch.device, mode: str | dict | None = None, *,
           threads: int | None = None, budget: float | None = None, use_cache: bool = True
           ) -> tuple[Plan, dict[str, Any]]:
    """The plan for these layers (plan_mode(mode)): fixed rules, a cached measurement, a new one (then cached), or
    the choices of a dict (ValueError where they do not fit these layers). Returns it with whatever layer objects
    were already built for it (the rest are built by the caller)."""
    mode = plan_mode(mode)
    if isinstance(mode, dict):
        choices = {k: list(v) for k, v in mode.items()}
        if not _valid_choices(choices, specs, dtype, device):
            raise ValueError("plan: a forced plan names every layer ("
                             + ", ".join(f"{s.name}: {'|'.join(candidate_forms(s.layer, s.size, s.fold))}"
                                         for s in specs)
                             + f") with a form and a kernel ({'|'.join(available_kernels(dtype, device))}; "
                               "u8s8 for a quantised layer)")
        return Plan("forced", {k: tuple(v) for k, v in choices.items()}, "forced"), {}
    if mode == "fixed" or device.type != "cpu":
        return Plan(mode, {s.name: (fixed_form(s.layer, s.size, s.rows, s.fold),
                                    default_kernel(dtype, device, s.int8)) for s in specs}, "fixed"), {}
    key = plan_key(specs, dtype, device, threads or torch.get_num_threads())
    cached = load_cached(key, specs, dtype, device) if use_cache and mode == "tuned" else None
    if cached is not None:
        return Plan(mode, cached, "cache", path=str(cache_path(key))), {}
    plan, built = tune(specs, dtype, device, budget if budget is not None else budget_for(specs[0].size))
    if use_cache:
        plan.path = save_cached(key, plan)
    return plan, built


__all__ = ["CACHE_ENV", "FORMAT", "LayerSpec", "PLANS", "PLAN_ENV", "Plan", "budget_for", "cache_path", "choose",
           "load_cached", "network_specs", "plan_cache_dir", "plan_key", "plan_mode", "save_cached", "tune"]
