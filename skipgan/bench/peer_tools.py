"""What every peer factory of the bench shares: the score as a plain forward, quiet exporters, one-line errors,
and the decoded-sample form the exports take."""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Callable

import torch
from torch import nn

from ..model import SkipGANomaly

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
Factory = Callable[[SkipGANomaly, torch.Tensor, torch.dtype], ScoreFn]


class ScoreOnly(nn.Module):
    """model.score(x).score as a plain forward: what TorchScript, torch.compile and the exporters get."""

    def __init__(self, model: SkipGANomaly):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.score(x).score


def one_line(e: BaseException, limit: int = 240) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def quiet():
    """Exporters and compilers chatter on stdout/stderr and in warnings; the table is what we print."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def note(fn: ScoreFn, text: str) -> ScoreFn:
    fn.note = text  # type: ignore[attr-defined]
    return fn


# The exports take decoded samples (preprocessing inside); the bench feeds them its [-1, 1] input as float samples
# in [0, 1], which their preprocessing maps back exactly (same size: the resize is the identity). The calibration
# only shifts the normalised scores and verdicts, not the scores timed here.
BENCH_CALIBRATION = {"threshold": 0.0, "val_stats": {"mean": 0.0, "std": 1.0}}


def as_samples(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5
