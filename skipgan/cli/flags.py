"""The command line's flags: derived from the settings dataclasses (one flag per field), the one --aggregation flag,
the --device rule, the image paths a command is given, and settings errors turned into messages naming the flag."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence, get_type_hints

import torch

from ..anomaly_map import AGGREGATIONS
from ..data.images import is_image_file
from ..errors import InputError
from ..train.config import TrainConfig


# ---------------------------------------------------------------------------------- flags from the settings
def flag_of(f: dataclasses.Field | str) -> str:
    """The flag of a settings field: --batch-size for batch_size (or the field's metadata 'flag')."""
    name = f if isinstance(f, str) else f.metadata.get("flag", f.name)
    return "--" + name.replace("_", "-")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of the settings dataclass `cls` that are flags (all but those marked metadata cli=False)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_settings_flags(parser, cls: type) -> None:
    """One flag per field of `cls` (TrainConfig, Architecture): its type and default from the declaration, help
    (and choices, metavar) from the field's metadata; a bool field is a switch (store_true)."""
    hints = get_type_hints(cls)
    for f in cli_fields(cls):
        meta = f.metadata
        kw: dict[str, Any] = {"dest": f.name, "default": f.default}
        text = meta.get("help", "").replace("%", "%%")
        if hints[f.name] is bool:
            kw["action"] = "store_true" if not f.default else argparse.BooleanOptionalAction
        else:
            kw["type"] = hints[f.name]
            kw.update({k: meta[k] for k in ("choices", "metavar") if k in meta})
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        parser.add_argument(flag_of(f), help=text or None, **kw)


def settings_from_args(cls: type, a: argparse.Namespace, **given):
    """An instance of `cls` from the parsed flags that `add_settings_flags` added (and `given` fields)."""
    return cls(**{f.name: getattr(a, f.name) for f in cli_fields(cls)}, **given)


def as_input_error(e: ValueError, *settings: type) -> InputError:
    """Turn a settings ValueError 'name=value: must be ...' into a message naming the flag: '--name value: ...'.

    `settings`: dataclasses whose fields may name a flag of another name (Architecture's nc is --channels).
    """
    msg = str(e)
    m = re.match(r"(\w+)=", msg)
    if m:
        flags = {f.name: flag_of(f) for cls in settings for f in dataclasses.fields(cls)}
        msg = flags.get(m.group(1), flag_of(m.group(1))) + " " + msg[m.end():]
    return InputError(msg)


# ------------------------------------------------------------------------------------------ --aggregation
def add_aggregation_flag(parser, help: str) -> None:
    """--aggregation for the commands that read a model file (score, evaluate, export): the same flag as the
    TrainConfig field `skipgan train` derives it from (its name), with the choices a model file stores (all but
    'auto', which is decided at training), default None: the model's own."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == "aggregation")
    parser.add_argument(flag_of(f), choices=AGGREGATIONS, default=None, help=help)


# ------------------------------------------------------------------------------------------ devices, paths
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


def collect_image_paths(args: Sequence[str]) -> list[Path]:
    """Files as given; folders expanded (recursively, sorted) to the image files inside them."""
    paths: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                raise InputError(f"{p}: folder holds no images (png, jpg, bmp, tif); pass image files or folders")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise InputError(f"{p}: no such file or folder; pass image files or folders of images")
    return paths
