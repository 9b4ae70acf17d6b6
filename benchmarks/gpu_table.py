"""The short GPU table of benchmarks/gpu_check.sh: one row group per GPU goal, the fused engine (fp16, CUDA graphs)
beside eager AMP fp16 channels_last and torch.compile (fp16 autocast, channels_last), every runtime's scores checked
against eager fp32 first (a disagreeing row is WRONG and fails the check; goals not met are reported, not failed).

    goal                                     config                       target
    batch 256 fp16                           isize 32, K 8, batch 256     >= 2x eager AMP channels_last, >= 1.2x compile
    batch 1 latency                          isize 32, K 8, batch 1       <= 0.3 ms per image (CUDA graphs)
    isize 256 at K = 0                       isize 256, K 0, batch 256    >= 10,000 img/s

    python benchmarks/gpu_table.py --json table.json [--min-time 1] [--compile default|max-autotune|none]
    python benchmarks/gpu_table.py --dry-run     # the same code path on the CPU, tiny configs, no timing claims

Rows go to --json after each one (a time limit keeps what ran). Exit status 1 if any row is WRONG.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch

from skipgan.bench import make_input, make_model, max_rel_err, median_time, reference_scores
from skipgan.bench.peer_tools import ScoreOnly, one_line, quiet
from skipgan.engine import Screener

# (goal, isize, K, batch)
GOALS = [("batch 256 fp16", 32, 8, 256), ("batch 1 latency", 32, 8, 1), ("isize 256 at K = 0", 256, 0, 256)]
DRY_GOALS = [("batch 256 fp16", 32, 2, 4), ("batch 1 latency", 32, 2, 1), ("isize 256 at K = 0", 64, 0, 2)]
TOLERANCE = 5e-2  # half precision against eager fp32 (skipgan.bench's bf16 tolerance)


def engine(model, x, dtype):
    # on the CPU (--dry-run) the fixed plan: measuring one is the CPU's business, not this rehearsal's
    screener = Screener.from_model(model, device=x.device, dtype=dtype, max_batch=x.shape[0],
                                   plan="fixed" if x.device.type == "cpu" else None)
    return lambda: screener.score(x).score


def eager_amp(model, x, dtype):
    m = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)

    def fn():
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype):
            return m.score(xc).score.float()
    return fn


def compiled(mode):
    def factory(model, x, dtype):
        torch._dynamo.reset()
        m = torch.compile(ScoreOnly(copy.deepcopy(model).to(memory_format=torch.channels_last)).eval(),
                          dynamic=False, mode=None if mode == "default" else mode)
        xc = x.contiguous(memory_format=torch.channels_last)

        def fn():
            with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype):
                return m(xc).float()
        return fn
    return factory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--compile", default=None, choices=("default", "max-autotune", "none"),
                   help="torch.compile's mode (default: default on the GPU, none with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="tiny configs on this device (CPU: bf16), no claims")
    a = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not a.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.bfloat16
    prec = str(dtype).replace("torch.", "").replace("float", "fp").replace("bfloat", "bf")
    # the engine and eager AMP for every goal first, torch.compile (the slow builds) after: a time limit keeps the
    # rows that matter most
    phases = [{f"engine_{prec}": engine, f"eager_amp_{prec}_channels_last": eager_amp}]
    mode = a.compile or ("default" if cuda else "none")
    if mode != "none":
        phases.append({f"torch_compile_{mode}_{prec}": compiled(mode)})
    rows, wrong = [], 0
    for runtimes, (goal, isize, k, batch) in ((r, g) for r in phases for g in (GOALS if cuda else DRY_GOALS)):
        model = make_model(isize, 1, k, 0).to(device).eval()
        x = make_input(model, batch, device)
        ref = reference_scores(model, x)
        for name, factory in runtimes.items():
            row = {"goal": goal, "isize": isize, "K": k, "batch": batch, "runtime": name, "device": device.type,
                   "precision": prec}
            t0 = time.perf_counter()
            try:
                with quiet():
                    fn = factory(model, x, dtype)
                    err = max_rel_err(fn(), ref)
                    sec = median_time(fn, device, a.min_time if cuda else 0.05)
                row.update(max_rel_err=err, ms=sec * 1e3, img_s=batch / sec, build_s=time.perf_counter() - t0,
                           status="ok" if err <= TOLERANCE else f"WRONG (max rel err {err:.2g} > {TOLERANCE:g})")
            except Exception as e:  # noqa: BLE001 - one row says why, the table goes on
                row.update(status=f"unavailable: {one_line(e)}")
            wrong += row["status"].startswith("WRONG")
            rows.append(row)
            print(f"{goal:20} {name:32} " + (f"{row['ms']:9.3f} ms {row['img_s']:10.0f} img/s  err "
                                             f"{row['max_rel_err']:.1e}  " if "ms" in row else "") + row["status"],
                  flush=True)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump({"rows": rows, "torch": torch.__version__,
                               "gpu": torch.cuda.get_device_name() if cuda else None}, f, indent=1)
    for line in goal_lines(rows) if cuda else ["dry run on the CPU: the goals are not assessed"]:
        print(line)
    return 1 if wrong else 0


def goal_lines(rows: list[dict]) -> list[str]:
    """Each goal against its target, from the rows that ran (met / NOT met / not measured)."""
    by = {(r["goal"], r["runtime"].split("_")[0]): r for r in rows if "img_s" in r}

    def ratio(goal, other):
        e, o = by.get((goal, "engine")), by.get((goal, other))
        return e["img_s"] / o["img_s"] if e and o else None

    out = []
    amp, comp = ratio("batch 256 fp16", "eager"), ratio("batch 256 fp16", "torch")
    out.append(f"goal batch 256 fp16: {amp and f'{amp:.2f}x'} eager AMP (>= 2x), {comp and f'{comp:.2f}x'} compile "
               f"(>= 1.2x): {verdict(amp is not None and comp is not None, amp and amp >= 2 and comp and comp >= 1.2)}")
    e1 = by.get(("batch 1 latency", "engine"))
    out.append(f"goal batch 1 latency: {e1 and round(e1['ms'], 3)} ms (<= 0.3 ms): "
               f"{verdict(e1 is not None, e1 and e1['ms'] <= 0.3)}")
    e2 = by.get(("isize 256 at K = 0", "engine"))
    out.append(f"goal isize 256 at K = 0: {e2 and round(e2['img_s'])} img/s (>= 10,000): "
               f"{verdict(e2 is not None, e2 and e2['img_s'] >= 10000)}")
    return out


def verdict(measured: bool, met) -> str:
    return "not measured" if not measured else "met" if met else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
