"""safetensors files with a JSON metadata block: the only on-disk format for weights and checkpoints.

safetensors holds raw tensors and a string→string header, so loading can never execute code (unlike pickle).
Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import InputError
from .fileio import atomic_path

META_KEY = "skipgan"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    # safetensors refuses shared or non-contiguous storage: give it private contiguous CPU copies.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def load_tensors(path: str | os.PathLike, what: str = "model file") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata); any unreadable file is an InputError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} not found; pass the path of a .safetensors file written by skipgan")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable {what} ({first}); re-create it with `skipgan train`") from None
    if META_KEY not in header:
        raise InputError(f"{path}: safetensors file without skipgan metadata; re-create it with `skipgan train`")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise InputError(f"{path}: corrupt skipgan metadata; re-create it with `skipgan train`") from None
    return tensors, meta


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in state.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
