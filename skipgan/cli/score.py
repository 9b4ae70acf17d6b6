"""`skipgan score`: one JSON line per image, {path, score, normalised_score, verdict} (+ regions when flagged).

Images are decoded on a pool of worker threads ahead of the scorer (skipgan.data.stream; the scorer: cli/scorer.py).
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
from pathlib import Path

import torch

from ..anomaly_map import MAP_OF, PAPER_AGGREGATION, image_scores, model_maps
from ..data.limits import DEFAULT_LIMITS, ImageLimits
from ..data.stream import batches, decode_stream
from ..errors import BadImageError, InputError
from ..fileio import write_text_atomic
from ..modelfile import load_model, scoring_choice
from ..regions import DEFAULT_MAX_REGIONS, find_regions
from ..scoring import calibration_values, verdicts
from .flags import as_input_error, collect_image_paths
from .runner import add_dist_flags, run_command
from .score_maps import map_names, write_map
from .scorer import add_scorer_flags, make_scorer


def add_score_parser(sub) -> None:
    p = sub.add_parser("score", help="score images; prints one JSON line per image")
    p.add_argument("model", help="model.safetensors written by `skipgan train`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: up to 8)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be scored (exit 2) instead of writing its error line "
                        "and scoring the rest (exit 1)")
    # The old flag: bad images no longer stop a run, so it is accepted and does nothing (scripts keep working).
    p.add_argument("--skip-bad", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_LIMITS.max_pixels,
                   help="an image with more pixels is an error line, refused from its header before decoding "
                        f"(default {DEFAULT_LIMITS.max_pixels}; the scanner's cap too)")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_LIMITS.max_bytes,
                   help=f"the same for decoded bytes (samples x bytes per sample; default {DEFAULT_LIMITS.max_bytes})")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the JSON lines to FILE (atomically, when all are done) instead of stdout; under "
                        "torchrun rank 0 writes the lines of every process, in input order")
    p.add_argument("--maps", metavar="DIR", default=None,
                   help="write per image DIR/<path>.map.png: the image with its anomaly map as a heatmap and the "
                        "map's contour at the calibrated threshold, at the image's own size")
    p.add_argument("--max-regions", type=int, default=DEFAULT_MAX_REGIONS, metavar="N",
                   help="a flagged image's line lists up to N regions of its anomaly map above the calibrated "
                        "threshold, largest peak first: bbox [x, y, w, h] in the image's pixels, area, peak and "
                        f"mean in σ units (default {DEFAULT_MAX_REGIONS}; 0: none, and a 'mean' model computes no "
                        "map)")
    p.add_argument("--raw-maps", choices=("npy", "png16"), default=None,
                   help="with --maps: also the anomaly map at the image's size (σ units): DIR/<path>.map.npy "
                        "(float32), or DIR/<path>.raw.png (16-bit gray, value = round(1000·map) + 32768, clipped)")
    add_scorer_flags(p)
    add_dist_flags(p)
    p.set_defaults(func=cmd_score)


def cmd_score(a: argparse.Namespace) -> int:
    """One JSON line per image: {path, score, normalised_score, verdict}, or {path, error} for an image that
    could not be scored (corrupt, over a cap, values out of range; a non-finite score is an error too, never a
    silent "normal"), as the C++ scanner writes them. Exit 0 when every image was scored, 1 when some were not,
    2 for a usage or model error (or, with --strict, at the first bad image)."""
    return run_command(score_command, a)


def score_command(a: argparse.Namespace, d, device: torch.device) -> int:
    """`skipgan score` as process `d` of the job (one process, or one of several under torchrun) on `device`."""
    if a.batch_size < 1:
        raise InputError(f"--batch-size {a.batch_size}: must be at least 1")
    if a.workers is not None and a.workers < 1:
        raise InputError(f"--workers {a.workers}: must be at least 1")
    if a.out is not None and Path(a.out).is_dir():
        raise InputError(f"--out {a.out}: is a folder; pass the path of the JSON-lines file to write")
    try:
        limits = ImageLimits(max_pixels=a.max_pixels, max_bytes=a.max_bytes)
    except ValueError as e:
        raise as_input_error(e) from None
    if a.max_regions < 0:
        raise InputError(f"--max-regions {a.max_regions}: must be 0 (no regions) or more")
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
    calibration = calibration_values(cal)
    map_settings = settings.for_map(MAP_OF[how])
    # regions need the map and its contour threshold (files from before maps were calibrated have none)
    regions = a.max_regions > 0 and map_settings.threshold is not None
    want_maps = a.maps is not None or how != PAPER_AGGREGATION or regions
    paths = collect_image_paths(a.paths)
    names = map_names(paths) if a.maps is not None else {}
    scorer = make_scorer(model, a, a.batch_size)
    # Lines go straight to stdout in a plain run; with --out, or under torchrun, they are kept for the one write.
    keep = a.out is not None or d.enabled
    lines: list[str] = []
    emit = lines.append if keep else (lambda text: print(text, flush=True))
    share = d.shard(len(paths), unit=a.batch_size)  # whole batches: each batch as in a single-process run
    t0, scored, failed, error = time.perf_counter(), 0, 0, None
    stream = decode_stream(paths[share.start : share.stop], arch["isize"], arch["nc"], workers=a.workers,
                           prefetch=4 * a.batch_size, limits=limits)
    def score_lines(good: list) -> list[dict]:
        """The JSON lines of the decoded images of one batch, scored together (a non-finite score is an error
        line, never a silent "normal")."""
        res = scorer(torch.stack([d.tensor for _, d in good]), error_map=want_maps).to("cpu")
        amaps = model_maps(res, how, settings) if a.maps is not None or regions else None
        s = image_scores(res, how, settings, amaps)
        z, abnormal = (t.tolist() for t in verdicts(torch.from_numpy(s), *calibration))
        out = []
        for j, ((path, decoded), v) in enumerate(zip(good, s.tolist())):
            if not math.isfinite(v):
                out.append({"path": str(path), "error": f"non-finite score ({v}): the image holds NaN/Inf values or "
                                                         "overflowed the model; it was not scored"})
                continue
            line = {"path": str(path), "score": v, "normalised_score": z[j],
                    "verdict": "abnormal" if abnormal[j] else "normal"}
            if regions and abnormal[j]:
                line["regions"] = find_regions(amaps[j], map_settings.threshold, decoded.height, decoded.width,
                                               a.max_regions)
            if a.maps is not None:
                line["map"] = write_map(Path(a.maps), names[path], path, amaps[j], map_settings, a.raw_maps)
            out.append(line)
        return out

    try:
        for batch in batches(stream, a.batch_size):
            bad = [item for _, item in batch if isinstance(item, BadImageError)]
            if bad and a.strict:
                raise bad[0]
            # The scanner's contract: a bad image is its own error line, in input order, and the rest is scored
            # (the batch's good images together, as they would be without it).
            good = [(path, item) for path, item in batch if not isinstance(item, BadImageError)]
            scored_lines = iter(score_lines(good) if good else [])
            for path, item in batch:
                line = {"path": str(path), "error": item.reason} if isinstance(item, BadImageError) \
                    else next(scored_lines)
                if "error" in line:
                    failed += 1
                else:
                    scored += 1
                emit(json.dumps(line))
    except InputError as e:
        if not d.enabled:
            raise
        error = str(e)  # met by this process alone: gathered, so that rank 0 reports it
    if d.enabled:
        reports = d.all_gather_json({"lines": lines, "scored": scored, "failed": failed, "error": error})
        errors = [r["error"] for r in reports if r["error"]]
        if errors:  # reported once, by rank 0
            if d.is_main:
                raise InputError(errors[0])
            return 2
        lines = [line for r in reports for line in r["lines"]]
        scored, failed = (sum(r[k] for r in reports) for k in ("scored", "failed"))
        if not d.is_main:
            return 1 if failed else 0
    if a.out is not None:
        write_text_atomic(a.out, "".join(line + "\n" for line in lines))
    elif keep:
        for line in lines:
            print(line)
        sys.stdout.flush()
    dt = time.perf_counter() - t0
    procs = f", {d.world_size} processes" if d.enabled else ""
    print(f"scored {scored} image(s) in {dt:.2f} s ({scored / dt if dt > 0 else 0:.1f} images/s, engine "
          f"{a.engine}, {a.dtype}{procs}){f'; {failed} could not be scored' if failed else ''}"
          f"{f'; wrote {a.out}' if a.out else ''}", file=sys.stderr)
    return 1 if failed else 0
