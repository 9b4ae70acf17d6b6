"""Who scores, for `skipgan score` and `skipgan evaluate`: the flags --engine, --dtype, --probes, --threads, --plan,
-v, --aggregation, and the scorer they choose.

The fused engine (skipgan.engine.Screener) is the default; `--engine eager` scores with the model itself, for
comparison."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Callable

import torch

from ..engine import Screener
from ..engine.plan import PLANS
from ..engine.screener import PRECISIONS, TF32, intra_op_threads
from ..errors import InputError
from ..model import score_in_batches
from ..model.corruption import select_probes
from ..quant import file_precision, quantized
from ..scoring import Scores
from .flags import add_aggregation_flag, as_input_error

ENGINES = ("fused", "eager")


def add_scorer_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--engine", choices=ENGINES, default="fused",
                   help="fused: the native engine (default); eager: the PyTorch model, for comparison")
    g.add_argument("--dtype", choices=PRECISIONS, default=None,
                   help="engine precision (default: the model file's: fp32, or int8 for a file made by skipgan "
                        "quantize, which scores in int8 only): bf16 needs AVX512-BF16/AMX on CPU; fp16 is CUDA "
                        "only; fp32 is true fp32, tf32 (CUDA, fused engine) lets cuDNN use TF32 tensor cores for its "
                        "convolutions; int8 needs AVX512-VNNI/AMX")
    g.add_argument("--probes", type=int, default=None, metavar="K",
                   help="score through the first K of the model's stored noise probes (default: all; 0: the clean "
                        "input, K times faster, less accurate; see docs/performance.md)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for scoring (default: torch's)")
    g.add_argument("--plan", choices=PLANS, default=None,
                   help="how the CPU engine picks each layer's kernel: tuned (default, or $SKIPGAN_PLAN): timed on this "
                        "machine once, then cached; retune: timed again now, the cache rewritten (after tuning on a "
                        "busy machine); fixed: the built-in rules")
    g.add_argument("-v", "--verbose", action="store_true", help="print the engine's plan on stderr")
    add_aggregation_flag(g, help="image score: the model's own (default), mean (the paper's), max or topk of the "
                                 "anomaly map, knn (max of the patch-distance map) (each calibrated in the model "
                                 "file; see docs/scoring-and-maps.md)")


def make_scorer(model, a: argparse.Namespace, max_batch: int) -> Callable[..., Scores]:
    """scorer(x [B, C, S, S] in [-1, 1], error_map=False, reconstruction=False) -> Scores (on x's device), per the
    --engine/--dtype/--probes/--threads flags."""
    if a.threads is not None and a.threads < 1:
        raise InputError(f"--threads {a.threads}: must be at least 1")
    device = next(model.parameters()).device
    check_precision(model, a)
    if a.engine == "fused":
        try:
            screener = Screener.from_model(model, device=device, dtype=a.dtype, max_batch=max_batch,
                                           probes=a.probes, threads=a.threads, plan=a.plan)
        except ValueError as e:  # bad probes / dtype for this model or machine: "probes=9: ..." -> "--probes 9: ..."
            raise as_input_error(e) from None
        if a.verbose and screener.plan is not None:
            print(f"[score] {screener.plan.describe()}", file=sys.stderr, flush=True)
        if a.verbose and screener.int8:
            print(f"[score] int8 products (oneDNN u8s8), activations {str(screener.dtype).removeprefix('torch.')}",
                  file=sys.stderr, flush=True)
        return screener.score
    return eager_scorer(model, a, max_batch)


def check_precision(model, a: argparse.Namespace) -> None:
    """Sets a.dtype to the model file's precision when not given; an int8 model file (skipgan quantize) scores in
    int8 only (its thresholds are its int8 scores'), and int8 needs such a file."""
    a.dtype = file_precision(model, a.dtype, getattr(a, "model", "the model"), "score")


def eager_scorer(model, a: argparse.Namespace, batch_size: int) -> Callable[..., Scores]:
    """The PyTorch model itself (with the chosen probes; bf16/fp16 through autocast), for comparison."""
    try:
        chosen = select_probes(model.probe_scale, model.probe_shift, model.probe_weight, a.probes)
    except ValueError as e:
        raise as_input_error(e) from None
    model.probe_scale, model.probe_shift, model.probe_weight = chosen
    if a.dtype == TF32:
        raise InputError("--dtype tf32: a precision of the fused engine (--engine fused); the eager model computes "
                         "as PyTorch's global flags say")
    device = next(model.parameters()).device
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.dtype)

    # an int8 file: its reference semantics (fake quantisation in fp32, skipgan/quant/int8.py) around every call, a
    # context manager per call (quantized() swaps weights in and restores them)
    int8 = (lambda: quantized(model, model.int8)) if model.int8 is not None else contextlib.nullcontext

    def score(x: torch.Tensor, error_map: bool = False, reconstruction: bool = False) -> Scores:
        with intra_op_threads(a.threads), torch.autocast(device.type, dtype=amp, enabled=amp is not None), int8():
            return score_in_batches(model, x, batch_size * max(1, model.probe_weight.shape[0]),
                                    with_error_map=error_map, keep_reconstructions=reconstruction)

    return score
