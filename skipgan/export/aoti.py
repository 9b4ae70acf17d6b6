"""AOTInductor: `torch.export` of the pipeline (native ops) compiled ahead of time into a `.pt2` package.

Dynamic batch (1..max_batch) and image size; the input's channel count and sample type are fixed at export
(the model's channels; --input-dtype). Load: Python `torch._inductor.aoti_load_package(path)` after
`import skipgan`; C++ `torch::inductor::AOTIModelPackageLoader(path)` in a program linked with libskipgan_ops.
Metadata: the package metadata key `skipgan` (AOTIModelPackageLoader::get_metadata()).
"""

from __future__ import annotations

import os

import torch
from torch.export import Dim

from ..fileio import atomic_path
from .metadata import KEY, dumps

MAX_SIDE = 16384  # largest image side an exported graph accepts


def dynamic_shapes(max_batch: int) -> dict:
    """Batch 1..max_batch, any image size from 8 to MAX_SIDE pixels a side (C and dtype fixed)."""
    return {"images": {0: Dim("batch", min=1, max=max(2, max_batch)), 2: Dim("height", min=8, max=MAX_SIDE),
                       3: Dim("width", min=8, max=MAX_SIDE)}}


def export_aoti(pipeline: torch.nn.Module, example: torch.Tensor, metadata: dict, out: str | os.PathLike,
                max_batch: int) -> None:
    program = torch.export.export(pipeline, (example,), dynamic_shapes=dynamic_shapes(max_batch))
    with atomic_path(out) as tmp:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": {KEY: dumps(metadata)}})


def read_aoti_metadata(path: str | os.PathLike) -> str:
    return torch._inductor.aoti_load_package(str(path)).get_metadata()[KEY]
