"""TorchScript: `torch.jit.script` of the pipeline (native ops), metadata as the extra file `skipgan.json`.

Load: Python `import skipgan; m = torch.jit.load(path)` (or `load` here, which checks the device first); C++
`torch::jit::load(path)` in a program linked with libskipgan_ops (see scanner/, which checks it too). A file runs
on the device it was exported for (metadata "device"; metadata.check_device). TorchScript is deprecated upstream
(torch 2.14 warns when scripting) but it is what C++ programs load today without a compiler at run time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
import zipfile

import torch

from ..errors import InputError
from ..fileio import atomic_path
from .metadata import KEY, check_device, dumps

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


def load(path: str | os.PathLike, device: str = "cpu") -> torch.jit.ScriptModule:
    """The exported module on `device`; InputError, before anything is loaded, if the file was exported for another
    device (it names the export flag to use). Loaded, the file prepares itself for this machine
    (ScreeningPipeline.check_machine: an int8 file prepacks its weights, and is an InputError on a CPU whose u8s8
    products saturate)."""
    check_device(json.loads(read_torchscript_metadata(path)), device, path)
    with quiet():
        module = torch.jit.load(str(path), map_location=device)
    if hasattr(module, "check_machine"):  # files of earlier versions have none
        try:
            module.check_machine()
        except torch.jit.Error as e:
            # TorchScript puts its interpreter traceback first and the raised message last
            why = re.sub(r"^(builtins\.)?RuntimeError: ", "", str(e).strip().splitlines()[-1])
            raise InputError(f"{os.fspath(path)}: {why}") from None
    return module


def read_torchscript_metadata(path: str | os.PathLike) -> str:
    """The metadata JSON of an exported .pt, read from the archive without loading the module (so on any device)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.count("/") == 2 and n.split("/", 1)[1] == f"extra/{EXTRA_FILE}"]
            if names:
                return z.read(names[0]).decode()
    except (OSError, zipfile.BadZipFile):
        pass
    raise InputError(f"{os.fspath(path)}: not a TorchScript file written by `skipgan export` (no {EXTRA_FILE})")
