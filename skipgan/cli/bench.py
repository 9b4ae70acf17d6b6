"""`skipgan bench`: the fused engine side by side with the usual runtimes, on this machine, in one run.

    skipgan bench                                   # batch 1,64 x isize 32,128 x probes 0,8, every runtime
    skipgan bench --isize 32 --batch 64 --probes 8 --runtimes eager,onnxruntime,engine_fp32,engine_bf16
    skipgan bench --model runs/train/model.safetensors --json bench.json

Prints one table per (isize, K, batch): images/s of every runtime, the engine's ratio to the best peer of its
precision and of any precision, and the machine limits measured in the same run (skipgan/bench/).
Every bad flag value is an InputError naming the flag (one line, exit code 2 through skipgan.cli.main).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from .. import bench
from ..bench import RUNTIMES, Config, load_trained, num_probes, with_probes
from ..engine.plan import PLANS
from ..errors import InputError
from ..isize import ISizeError, check_isize


def add_bench_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="scoring throughput: the fused engine against eager, TorchScript, "
                                     "torch.compile, ONNX Runtime, OpenVINO (one table, one run)")
    p.add_argument("--model", metavar="FILE", default=None,
                   help="a trained model file (default: random weights of the default architecture; speed does "
                        "not depend on training); an int8 file's engine_int8 row uses its own calibration")
    p.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--isize", default=None,
                   help="comma-separated image sizes (default: 32,128; with --model: the model's)")
    p.add_argument("--probes", default=None,
                   help="comma-separated numbers of scoring probes K, 0 = the clean input (default: 0,8; with "
                        "--model: 0 and its stored K)")
    p.add_argument("--channels", default="1", help="image channels of the random model (default: %(default)s)")
    p.add_argument("--runtimes", default="all",
                   help=f"comma-separated, from: {', '.join(RUNTIMES)} (default: all)")
    p.add_argument("--min-time", default="2", help="seconds of timed calls per runtime and config (default: 2)")
    p.add_argument("--rounds", default=None,
                   help="round-robin rounds over the runtimes (default: 5, 3 from isize 128 on)")
    p.add_argument("--threads", default=None, help="intra-op threads for every runtime (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    p.add_argument("--plan", choices=PLANS, default=None,
                   help="the engine's layer plan: tuned (default, or $SKIPGAN_PLAN), retune (measure again, rewrite "
                        "the cache) or fixed (engine/plan.py)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows and the machine info here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)
    return p


def _int_list(value: str, flag: str, minimum: int) -> list[int]:
    items = [v.strip() for v in str(value).split(",")]
    try:
        out = [int(v) for v in items]
    except ValueError:
        out = []
    if not out or any(v < minimum for v in out):
        raise InputError(f"{flag} {value}: expected comma-separated integers >= {minimum}, e.g. {flag} "
                         f"{'1,64' if minimum else '0,8'}")
    return list(dict.fromkeys(out))


def _number(value: str | None, flag: str, kind: type, minimum: float, default: Any) -> Any:
    if value is None:
        return default
    try:
        v = kind(value)
    except ValueError:
        v = None
    if v is None or not v >= minimum or v != v:
        what = "an integer" if kind is int else "a number"
        raise InputError(f"{flag} {value}: expected {what} >= {minimum:g}")
    return v


def bench_settings(a: argparse.Namespace) -> dict[str, Any]:
    """Check every flag before anything runs: keyword arguments for skipgan.bench.run, or InputError."""
    device = str(a.device).strip().lower()
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {a.device}: expected cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    batches = _int_list(a.batch, "--batch", 1)
    model = load_trained(a.model) if a.model else None  # InputError naming the file if it is bad
    if a.isize is None:
        isizes = [model.arch.isize] if model is not None else [32, 128]
    else:
        isizes = _int_list(a.isize, "--isize", 1)
        for s in isizes:
            try:
                check_isize(s)
            except ISizeError as e:
                raise InputError(f"--isize {s}: {str(e).split(': ', 1)[-1]}") from None
            if model is not None and s != model.arch.isize:
                raise InputError(f"--isize {a.isize}: the model {a.model} is for isize {model.arch.isize}")
    if a.probes is None:
        probes = [0, 8] if model is None else list(dict.fromkeys([0, num_probes(model)]))
    else:
        probes = _int_list(a.probes, "--probes", 0)
        if model is not None:
            for k in probes:
                try:
                    with_probes(model, k)
                except ValueError as e:
                    raise InputError(f"--probes {k}: {str(e).split(': ', 1)[-1]}") from None
    names = [r.strip() for r in str(a.runtimes).split(",") if r.strip()]
    runtimes = list(RUNTIMES) if names in (["all"], []) else names
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise InputError(f"--runtimes {a.runtimes}: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(RUNTIMES)} or all")
    try:
        min_time = float(a.min_time)
    except ValueError:
        min_time = float("nan")
    if not 0 < min_time < math.inf:
        raise InputError(f"--min-time {a.min_time}: expected a number of seconds > 0, e.g. --min-time 2")
    threads = _number(a.threads, "--threads", int, 1, None)
    rounds = _number(a.rounds, "--rounds", int, 1, None)
    nc = _number(a.channels, "--channels", int, 1, 1)
    if a.json:
        parent = Path(a.json).expanduser().resolve().parent
        if not parent.is_dir():
            raise InputError(f"--json {a.json}: folder {parent} does not exist")
    configs = [Config(b, s, k) for s in isizes for k in probes for b in batches]
    return dict(configs=configs, runtimes=runtimes, min_time=min_time, threads=threads, device=device,
                model=model, nc=nc, rounds=rounds, plan=a.plan)


def cmd_bench(a: argparse.Namespace) -> int:
    kw = bench_settings(a)
    info = bench.machine_info(kw["device"])
    threads = kw["threads"] or torch.get_num_threads()
    ops = info["skipgan_ops"]
    print(f"skipgan bench, {info['date']}: {info['cpu_model']}, {info['cores']} cores, torch {info['torch']} "
          f"({threads} thread{'s' if threads != 1 else ''}), device {kw['device']}"
          + (f" ({info['gpu']})" if info.get("gpu") else "")
          + f"; native ops: {'cpu ' + str(ops.get('cpu_isa')) if ops.get('available') else 'unavailable'}"
          f"; load average {info['loadavg'][0]:.2f}")
    print(f"model: {a.model}" if a.model else bench.SPEED_NOTE)
    say = None if a.quiet else (lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    rows = bench.run(progress=say, **kw)
    print(bench.format_table(rows))
    info["loadavg_at_end"] = list(os.getloadavg())
    if a.json:
        settings = {k: (v if k != "model" else a.model) for k, v in kw.items()}
        settings["configs"] = [c._asdict() for c in kw["configs"]]
        doc = {"machine_info": info, "settings": settings, "rows": rows}
        try:
            Path(a.json).expanduser().write_text(json.dumps(doc, indent=1, default=str) + "\n")
        except OSError as e:
            raise InputError(f"--json {a.json}: cannot write ({e.strerror or e})") from None
        print(f"rows written to {a.json}")
    return 0
