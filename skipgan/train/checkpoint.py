"""Per-epoch training checkpoints as safetensors (no pickle): weights, optimizer state, history, config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..tensorfile import load_tensors, prefixed, save_tensors, unprefixed

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_VERSION = 1


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimizer state_dict into tensors (per-parameter state) and JSON (param_groups)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{prefix}{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str, groups: list):
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in unprefixed(tensors, prefix).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    out_dir: str | os.PathLike, model: torch.nn.Module, opt_g, opt_d, meta: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    tensors = prefixed(model.state_dict(), "model.")
    tg, groups_g = optimizer_to_tensors(opt_g, "opt_g.")
    td, groups_d = optimizer_to_tensors(opt_d, "opt_d.")
    tensors.update(tg)
    tensors.update(td)
    if best_state is not None:
        tensors.update(prefixed(best_state, "best."))
    meta = dict(meta, version=CHECKPOINT_VERSION, opt_g_groups=groups_g, opt_d_groups=groups_d)
    path = Path(out_dir) / CHECKPOINT_NAME
    save_tensors(path, tensors, meta)
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; pass the --out folder of an earlier `skipgan train`")
    tensors, meta = load_tensors(path, what="checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {meta.get('version')!r} is not {CHECKPOINT_VERSION}; retrain")
    return tensors, meta


def restore(model, opt_g, opt_d, tensors, meta) -> dict[str, torch.Tensor] | None:
    """Load model and optimizer state in place; return the kept best weights, if any."""
    model.load_state_dict(unprefixed(tensors, "model."))
    optimizer_from_tensors(opt_g, tensors, "opt_g.", meta["opt_g_groups"])
    optimizer_from_tensors(opt_d, tensors, "opt_d.", meta["opt_d_groups"])
    best = unprefixed(tensors, "best.")
    return best or None
