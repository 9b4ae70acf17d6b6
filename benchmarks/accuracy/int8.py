"""int8 accuracy record (issue 23): the same trained models scored in fp32, bf16 and int8.

    python benchmarks/accuracy/int8.py --runs /tmp/dig/{0..9} --json results/int8/digits.json
    python benchmarks/accuracy/int8.py --runs /tmp/ld/runs_test/{brick,grass,gravel} --aggregation knn \
        --json results/int8/local_defects.json

Per run folder (a `skipgan train` output): `skipgan quantize` writes int8.safetensors beside the model (calibrated
on the model's own training and validation normals, never test images), then `skipgan evaluate` scores the test
split: fp32 and int8 with the eager model (int8: its reference semantics, skipgan/quant/int8.py), bf16 with the
fused engine (where this CPU has bf16) and int8 with the fused engine (where it has int8 dot products). Image AUROC of the aggregation asked for and the pixel
AUROC / PRO of the map it reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def skipgan(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "skipgan.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"skipgan {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout + r.stderr


def evaluate(model: Path, out: Path, aggregation: str, *flags: str) -> dict:
    from skipgan.anomaly_map import MAP_OF

    skipgan("evaluate", str(model), "--out", str(out), "--device", "cpu", "--aggregation", aggregation, *flags)
    m = json.loads((out / "metrics.json").read_text())
    res = {"image_auroc": m["auroc"]}
    pix = (m.get("pixel_by_map") or {}).get(MAP_OF[aggregation])
    if pix:
        res.update(pixel_auroc=pix["pixel_auroc"], pro=pix["pro"])
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="skipgan train output folders")
    p.add_argument("--aggregation", default="mean")
    p.add_argument("--json", default=None)
    p.add_argument("--engine-only", action="store_true",
                   help="the int8 engine's row alone, for runs already quantised and evaluated (adds it to --json)")
    a = p.parse_args()
    from skipgan.engine.cpu import bf16_fast, int8_restriction

    before = json.loads(Path(a.json).read_text()) if a.engine_only else {}
    results = before.get("results", {})
    for run in map(Path, a.runs):
        if a.engine_only:
            r = results[run.name]
        else:
            t0 = time.time()
            line = skipgan("quantize", str(run / "model.safetensors"), "--out", str(run / "int8.safetensors")).strip()
            seconds = round(time.time() - t0, 1)
            r = {"quantize": line, "quantize_seconds": seconds,
                 "fp32": evaluate(run / "model.safetensors", run / "eval_fp32", a.aggregation, "--engine", "eager"),
                 "int8": evaluate(run / "int8.safetensors", run / "eval_int8", a.aggregation, "--engine", "eager")}
            if bf16_fast():
                r["bf16"] = evaluate(run / "model.safetensors", run / "eval_bf16", a.aggregation, "--dtype", "bf16")
        if int8_restriction() is None:
            r["int8_engine"] = evaluate(run / "int8.safetensors", run / "eval_int8_engine", a.aggregation)
        results[run.name] = r
        print(run.name, {k: v for k, v in r.items() if k != "quantize"}, flush=True)
    keys = results[next(iter(results))]["fp32"].keys()
    mean = {prec: {k: sum(r[prec][k] for r in results.values()) / len(results) for k in keys}
            for prec in ("fp32", "bf16", "int8", "int8_engine") if all(prec in r for r in results.values())}
    worst = min(r["int8"]["image_auroc"] - r["fp32"]["image_auroc"] for r in results.values())
    if all("int8_engine" in r for r in results.values()):
        worst = min(worst, min(r["int8_engine"]["image_auroc"] - r["fp32"]["image_auroc"] for r in results.values()))
    print("mean", mean, "worst int8 - fp32 image AUROC", round(worst, 4))
    if a.json:
        commands = [*before.get("commands", []), " ".join(sys.argv)]
        Path(a.json).write_text(json.dumps({"commands": commands, "aggregation": a.aggregation,
                                            "results": results, "mean": mean, "worst_int8_minus_fp32": worst},
                                           indent=1) + "\n")


if __name__ == "__main__":
    main()
