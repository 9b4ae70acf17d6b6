"""Build, check and time: every runtime built once per config, its scores checked against eager fp32, then timed
round-robin (a little of each in turn, several rounds) so that load drift on a shared machine hits them alike."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import statistics
import time
from typing import Any, Callable, Iterable, Sequence

import torch

from ..engine.plan import PLAN_ENV, plan_mode
from ..model import SkipGANomaly
from .flops import limit_img_s, model_bounds
from .machine import measure_machine, sync
from .model import Config, default_configs, load_trained, make_input, make_model, reference_scores, with_probes
from .onnx_peers import clear_exports
from .peer_tools import ScoreFn, one_line
from .peers import PEERS, RUNTIMES, Peer

# max relative error of the scores against eager fp32; int8: the quantisation itself moves a score by a few % (an
# int8 file's own threshold is recalibrated on its int8 scores, docs/int8.md)
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "int8": 0.15}


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
        sync(x.device)
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


def _time_round(b: Built, x: torch.Tensor, budget: float) -> None:
    """Calls of b.fn(x) for `budget` seconds (at least one), each call timed on its own."""
    t_end = time.perf_counter() + budget
    while True:
        t0 = time.perf_counter()
        b.fn(x)
        sync(x.device)
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
                    sync(device)
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
