"""The knn memory of a trained model fitted again, as its trainer fitted it: for models trained before the knn map
existed, and for trying other knn settings on a run's models without retraining (benchmarks/accuracy/
local_defects.py `knn` and `digits`). With the run's own settings and seed the memory is the trainer's, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

from ..model import SkipGANomaly
from ..model.patch_knn import KnnSettings, PatchKnn
from .trainer import split_validation


def refit_knn(model: SkipGANomaly, meta: dict[str, Any], images: torch.Tensor,
              settings: KnnSettings | None = None, seed: int | None = None) -> None:
    """Set `model.knn` to a memory fitted from `images`, the normal training images the run was given (its whole
    training split), with the validation share held out the same way as in training (the run's val_fraction and
    seed in `meta`, the model file's metadata) for the statistics of the map's parts. settings: default
    skipgan's; seed: the memory's draw, default the run's seed (as the trainer draws it)."""
    run = meta.get("train", {})
    run_seed = run.get("seed", 0)
    train, val = split_validation(images, run["val_fraction"], run_seed)
    model.knn = PatchKnn.fit(model, train, settings or KnnSettings(), seed=run_seed if seed is None else seed,
                             calibration=val)
