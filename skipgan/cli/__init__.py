"""`skipgan` command line: train, evaluate, score, bench, export.

One module per command (train.py, evaluate.py, score.py, bench.py, export.py), each with its parser and its run;
flags.py derives flags from the settings dataclasses and holds the flags several commands share; scorer.py is the
scorer choice of score and evaluate; runner.py the exit codes and the torchrun wrapper. Every user-fixable problem
ends as one line `skipgan: error: ...` on stderr and exit code 2 (no traceback). Nothing in skipgan imports this
package: it is the top floor (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .bench import add_bench_parser
from .evaluate import add_evaluate_parser
from .export import add_export_parser
from .runner import call
from .quantize import add_quantize_parser
from .score import add_score_parser
from .train import add_train_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipgan", description="Skip-GANomaly image anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_score_parser(sub)
    add_bench_parser(sub)
    add_export_parser(sub)
    add_quantize_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["--help"]
    args = build_parser().parse_args(argv)
    return call(args.func, args)
