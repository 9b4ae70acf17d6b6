"""`skipgan score`, and the scorer choice shared with `skipgan evaluate` (--engine, --dtype, --probes, --threads).

The fused engine (skipgan.engine.Screener) is the default; `--engine eager` scores with the model itself, for
comparison. Images are decoded on a pool of worker threads ahead of the engine (skipgan.data.stream).

Under torchrun `skipgan score` splits the input files into contiguous shares of whole batches, one per process;
every process decodes and scores its share, and rank 0 writes all the lines, in input order, to `--out FILE`
(atomically) or to stdout. A batch holds the same images as in a single-process run, so the lines are the same.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Callable

import torch

from .anomaly_map import AGGREGATIONS
from .engine.plan import PLANS
from .errors import InputError
from .scoring import Scores

ENGINES = ("fused", "eager")


def add_scorer_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--engine", choices=ENGINES, default="fused",
                   help="fused: the native engine (default); eager: the PyTorch model, for comparison")
    g.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="engine precision: bf16 needs AVX512-BF16/AMX on CPU; fp16 is CUDA only")
    g.add_argument("--probes", type=int, default=None, metavar="K",
                   help="score through the first K of the model's stored noise probes (default: all; 0: the clean "
                        "input, K times faster, less accurate; see docs/performance.md)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for scoring (default: torch's)")
    g.add_argument("--plan", choices=PLANS, default=None,
                   help="how the CPU engine picks each layer's kernel: tuned (default, or $SKIPGAN_PLAN): timed on this "
                        "machine once, then cached; fixed: the built-in rules")
    g.add_argument("-v", "--verbose", action="store_true", help="print the engine's plan on stderr")
    g.add_argument("--aggregation", choices=AGGREGATIONS, default=None,
                   help="image score: the model's own (default), mean (the paper's), max or topk of the anomaly map, "
                        "knn (max of the patch-distance map) (each calibrated in the model file; see docs/scoring-and-maps.md)")


def make_scorer(model, a: argparse.Namespace, max_batch: int) -> Callable[..., Scores]:
    """scorer(x [B, C, S, S] in [-1, 1], error_map=False, reconstruction=False) -> Scores (on x's device), per the
    --engine/--dtype/--probes/--threads flags."""
    from .cli import as_input_error
    from .engine import Screener

    if a.threads is not None and a.threads < 1:
        raise InputError(f"--threads {a.threads}: must be at least 1")
    device = next(model.parameters()).device
    if a.engine == "fused":
        try:
            screener = Screener.from_model(model, device=device, dtype=a.dtype, max_batch=max_batch,
                                           probes=a.probes, threads=a.threads, plan=a.plan)
        except ValueError as e:  # bad probes / dtype for this model or machine: "probes=9: ..." -> "--probes 9: ..."
            raise as_input_error(e) from None
        if a.verbose and screener.plan is not None:
            print(f"[score] {screener.plan.describe()}", file=sys.stderr, flush=True)
        return screener.score
    return eager_scorer(model, a, max_batch)


def eager_scorer(model, a: argparse.Namespace, batch_size: int) -> Callable[..., Scores]:
    """The PyTorch model itself (with the chosen probes; bf16/fp16 through autocast), for comparison."""
    from .cli import as_input_error
    from .engine.screener import intra_op_threads
    from .model import score_in_batches
    from .model.corruption import select_probes

    try:
        chosen = select_probes(model.probe_scale, model.probe_shift, model.probe_weight, a.probes)
    except ValueError as e:
        raise as_input_error(e) from None
    model.probe_scale, model.probe_shift, model.probe_weight = chosen
    device = next(model.parameters()).device
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.dtype)

    def score(x: torch.Tensor, error_map: bool = False, reconstruction: bool = False) -> Scores:
        with intra_op_threads(a.threads), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return score_in_batches(model, x, batch_size * max(1, model.probe_weight.shape[0]),
                                    with_error_map=error_map, keep_reconstructions=reconstruction)

    return score


# ----------------------------------------------------------------------------------------------------- score
def add_score_parser(sub) -> None:
    p = sub.add_parser("score", help="score images; prints one JSON line per image")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: up to 8)")
    p.add_argument("--skip-bad", action="store_true", help="skip corrupt images instead of stopping")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the JSON lines to FILE (atomically, when all are done) instead of stdout; under "
                        "torchrun rank 0 writes the lines of every process, in input order")
    p.add_argument("--maps", metavar="DIR", default=None,
                   help="write per image DIR/<path>.map.png: the image with its anomaly map as a heatmap and the "
                        "map's contour at the calibrated threshold, at the image's own size")
    p.add_argument("--raw-maps", choices=("npy", "png16"), default=None,
                   help="with --maps: also the anomaly map at the image's size (σ units): DIR/<path>.map.npy "
                        "(float32), or DIR/<path>.raw.png (16-bit gray, value = round(1000·map) + 32768, clipped)")
    add_scorer_flags(p)
    from .distributed import add_dist_flags

    add_dist_flags(p)
    p.set_defaults(func=cmd_score)


def cmd_score(a: argparse.Namespace) -> int:
    """One JSON line per image: {path, score, normalised_score, verdict}, or {path, error} for an image that
    could not be scored (a non-finite score is an error, never a silent "normal"). Exit 0 when every image
    was scored, 1 when some were not, 2 for a usage or model error."""
    from .distributed import run_command

    return run_command(score_command, a)


def score_command(a: argparse.Namespace, d, device: torch.device) -> int:
    """`skipgan score` as process `d` of the job (one process, or one of several under torchrun) on `device`."""
    from pathlib import Path

    from .cli import collect_image_paths
    from .data.images import CorruptImageError
    from .data.stream import batches, decode_stream
    from .fileio import write_text_atomic
    from .anomaly_map import MAP_OF, PAPER_AGGREGATION, image_scores, model_maps
    from .metrics import normalise
    from .modelfile import load_model, scoring_choice

    if a.batch_size < 1:
        raise InputError(f"--batch-size {a.batch_size}: must be at least 1")
    if a.workers is not None and a.workers < 1:
        raise InputError(f"--workers {a.workers}: must be at least 1")
    if a.out is not None and Path(a.out).is_dir():
        raise InputError(f"--out {a.out}: is a folder; pass the path of the JSON-lines file to write")
    if a.raw_maps and not a.maps:
        raise InputError(f"--raw-maps {a.raw_maps}: needs --maps DIR (the folder to write the maps into)")
    if a.maps is not None:
        if d.enabled:
            raise InputError("--maps: not supported under torchrun (rank 0 alone writes files); run skipgan score "
                             "--maps in one process")
        if Path(a.maps).exists() and not Path(a.maps).is_dir():
            raise InputError(f"--maps {a.maps}: is a file; pass a folder to write the maps into")
    model, meta = load_model(a.model, device)
    arch = meta["architecture"]
    how, cal, settings = scoring_choice(meta, a.aggregation, a.model)
    want_maps = a.maps is not None or how != PAPER_AGGREGATION
    paths = collect_image_paths(a.paths)
    names = map_names(paths) if a.maps is not None else {}
    scorer = make_scorer(model, a, a.batch_size)
    # Lines go straight to stdout in a plain run; with --out, or under torchrun, they are kept for the one write.
    keep = a.out is not None or d.enabled
    lines: list[str] = []
    emit = lines.append if keep else (lambda text: print(text, flush=True))
    share = d.shard(len(paths), unit=a.batch_size)  # whole batches: each batch as in a single-process run
    t0, scored, failed, skipped, error = time.perf_counter(), 0, 0, 0, None
    stream = decode_stream(paths[share.start : share.stop], arch["isize"], arch["nc"], workers=a.workers,
                           prefetch=4 * a.batch_size)
    try:
        for batch in batches(stream, a.batch_size):
            good = []
            for path, item in batch:
                if isinstance(item, CorruptImageError):
                    if not a.skip_bad:
                        raise item
                    skipped += 1
                else:
                    good.append((path, item))
            if not good:
                continue
            res = scorer(torch.stack([t for _, t in good]), error_map=want_maps)
            res = res.to("cpu")
            amaps = model_maps(res, how, settings) if a.maps is not None else None
            s = image_scores(res, how, settings, amaps).tolist()
            for j, ((path, _), v) in enumerate(zip(good, s)):
                if not math.isfinite(v):
                    failed += 1
                    line = {"path": str(path), "error": f"non-finite score ({v}): the image holds NaN/Inf values or "
                                                        "overflowed the model; it was not scored"}
                else:
                    scored += 1
                    line = {"path": str(path), "score": v, "normalised_score": normalise(v, cal["val_stats"]),
                            "verdict": "abnormal" if v > cal["threshold"] else "normal"}
                    if amaps is not None:
                        line["map"] = write_map(Path(a.maps), names[path], path, amaps[j],
                                                settings.for_map(MAP_OF[how]), a.raw_maps)
                emit(json.dumps(line))
    except InputError as e:
        if not d.enabled:
            raise
        error = str(e)  # met by this process alone: gathered, so that rank 0 reports it
    if d.enabled:
        reports = d.all_gather_json({"lines": lines, "scored": scored, "failed": failed, "skipped": skipped,
                                     "error": error})
        errors = [r["error"] for r in reports if r["error"]]
        if errors:  # reported once, by rank 0
            if d.is_main:
                raise InputError(errors[0])
            return 2
        lines = [line for r in reports for line in r["lines"]]
        scored, failed, skipped = (sum(r[k] for r in reports) for k in ("scored", "failed", "skipped"))
        if not d.is_main:
            return 1 if failed else 0
    if a.out is not None:
        write_text_atomic(a.out, "".join(line + "\n" for line in lines))
    elif keep:
        for line in lines:
            print(line)
        sys.stdout.flush()
    dt = time.perf_counter() - t0
    if skipped:
        print(f"skipped {skipped} corrupt image(s)", file=sys.stderr)
    procs = f", {d.world_size} processes" if d.enabled else ""
    print(f"scored {scored} image(s) in {dt:.2f} s ({scored / dt if dt > 0 else 0:.1f} images/s, engine "
          f"{a.engine}, {a.dtype}{procs}){f'; {failed} could not be scored' if failed else ''}"
          f"{f'; wrote {a.out}' if a.out else ''}", file=sys.stderr)
    return 1 if failed else 0


def map_names(paths) -> dict:
    """{path: its name under --maps DIR}: the path relative to the inputs' common folder (so equal file names in
    different folders do not collide), extension kept (a.png and a.tif do not either)."""
    import os
    from pathlib import Path

    parents = [str(p.resolve().parent) for p in paths]
    root = Path(os.path.commonpath(parents)) if parents else Path(".")
    return {p: p.resolve().relative_to(root) for p in paths}


PNG16_SCALE, PNG16_ZERO = 1000.0, 32768  # --raw-maps png16: value = round(1000·map) + 32768 (±32.7 σ, 0.001 σ steps)


def encode_png16(amap):
    """Anomaly map (σ units) -> uint16 image for --raw-maps png16; map = (value − 32768) / 1000."""
    import numpy as np

    return np.clip(np.round(amap * PNG16_SCALE) + PNG16_ZERO, 0, 65535).astype(np.uint16)


def write_map(folder, name, path, amap, settings, raw: str | None) -> str:
    """Overlay (and raw map) of one image at its own size, written atomically; returns the overlay's path."""
    import numpy as np

    from .anomaly_map import upsample
    from .data.images import read_image
    from .fileio import atomic_path
    from .preprocess import to_unit
    from .report import plot_overlay

    arr = read_image(path)
    h, w = arr.shape[1:]
    full = upsample(amap, h, w)
    # [0, 1] as the model saw it before resizing (decoders may hand back read-only arrays: torch wants writable)
    unit = to_unit(torch.from_numpy(np.require(arr, requirements="W"))).numpy()
    out = folder / f"{name}.map.png"
    plot_overlay(out, unit, full, settings.threshold)
    if raw == "npy":
        with atomic_path(folder / f"{name}.map.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, full.astype(np.float32))
    elif raw == "png16":
        from PIL import Image

        with atomic_path(folder / f"{name}.raw.png") as tmp:
            Image.fromarray(encode_png16(full)).save(tmp, format="PNG")
    return str(out)
