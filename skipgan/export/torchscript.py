"""TorchScript: `torch.jit.script` of the pipeline (native ops), metadata as the extra file `skipgan.json`.

Load: Python `import skipgan; m = torch.jit.load(path)`; C++ `torch::jit::load(path)` in a program linked with
libskipgan_ops (see scanner/). TorchScript is deprecated upstream (torch 2.14 warns when scripting) but it is what
C++ programs load today without a compiler at run time.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from ..fileio import atomic_path
from .metadata import KEY, dumps

EXTRA_FILE = f"{KEY}.json"


@contextlib.contextmanager
def quiet():
    """torch 2.14 warns on every torch.jit.script / save / load that TorchScript is deprecated (see above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def script(pipeline: torch.nn.Module) -> torch.jit.ScriptModule:
    with quiet():
        return torch.jit.script(pipeline)


def export_torchscript(pipeline: torch.nn.Module, metadata: dict, out: str | os.PathLike) -> None:
    scripted = script(pipeline)
    with atomic_path(out) as tmp, quiet():
        torch.jit.save(scripted, str(tmp), _extra_files={EXTRA_FILE: dumps(metadata)})


def load(path: str | os.PathLike, device: str = "cpu", extra_files: dict | None = None) -> torch.jit.ScriptModule:
    with quiet():
        return torch.jit.load(str(path), map_location=device, _extra_files=extra_files if extra_files else {})


def read_torchscript_metadata(path: str | os.PathLike) -> str:
    files = {EXTRA_FILE: ""}
    load(path, extra_files=files)
    return files[EXTRA_FILE]
