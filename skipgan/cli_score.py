"""`skipgan score`, and the scorer choice shared with `skipgan evaluate` (--engine, --dtype, --probes, --threads).

The fused engine (skipgan.engine.Screener) is the default; `--engine eager` scores with the model itself, for
comparison. Images are decoded on a pool of worker threads ahead of the engine (skipgan.data.stream).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Callable

import torch

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
                        "input, K times faster, less accurate; see README)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for scoring (default: torch's)")


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
                                           probes=a.probes, threads=a.threads)
        except ValueError as e:  # bad probes / dtype for this model or machine: "probes=9: ..." -> "--probes 9: ..."
            raise as_input_error(e) from None
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
    add_scorer_flags(p)
    p.set_defaults(func=cmd_score)


def cmd_score(a: argparse.Namespace) -> int:
    """One JSON line per image: {path, score, normalised_score, verdict}, or {path, error} for an image that
    could not be scored (a non-finite score is an error, never a silent "normal"). Exit 0 when every image
    was scored, 1 when some were not, 2 for a usage or model error."""
    from .cli import collect_image_paths, resolve_device
    from .data.images import CorruptImageError
    from .data.stream import batches, decode_stream
    from .metrics import normalise
    from .modelfile import load_model

    if a.batch_size < 1:
        raise InputError(f"--batch-size {a.batch_size}: must be at least 1")
    if a.workers is not None and a.workers < 1:
        raise InputError(f"--workers {a.workers}: must be at least 1")
    model, meta = load_model(a.model, resolve_device(a.device))
    arch, cal = meta["architecture"], meta["calibration"]
    paths = collect_image_paths(a.paths)
    scorer = make_scorer(model, a, a.batch_size)
    t0, scored, failed, skipped = time.perf_counter(), 0, 0, 0
    stream = decode_stream(paths, arch["isize"], arch["nc"], workers=a.workers, prefetch=4 * a.batch_size)
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
        s = scorer(torch.stack([t for _, t in good])).score.tolist()
        for (path, _), v in zip(good, s):
            if not math.isfinite(v):
                failed += 1
                line = {"path": str(path), "error": f"non-finite score ({v}): the image holds NaN/Inf values or "
                                                    "overflowed the model; it was not scored"}
            else:
                scored += 1
                line = {"path": str(path), "score": v, "normalised_score": normalise(v, cal["val_stats"]),
                        "verdict": "abnormal" if v > cal["threshold"] else "normal"}
            print(json.dumps(line), flush=True)
    dt = time.perf_counter() - t0
    if skipped:
        print(f"skipped {skipped} corrupt image(s)", file=sys.stderr)
    print(f"scored {scored} image(s) in {dt:.2f} s ({scored / dt if dt > 0 else 0:.1f} images/s, engine "
          f"{a.engine}, {a.dtype}){f'; {failed} could not be scored' if failed else ''}", file=sys.stderr)
    return 1 if failed else 0
