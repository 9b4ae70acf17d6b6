"""The `cuda` marker (registered in conftest.py): a test that needs a CUDA GPU.

    CUDA = pytest.mark.cuda           # then @CUDA on the test, or pytestmark = CUDA

Without a GPU such a test skips ("needs a CUDA GPU"). Every cuda-marked test carries the junitxml property
cuda=1, so that benchmarks/gpu_check.sh (through benchmarks/gpu_summary.py) counts a cuda-marked test that skipped
there as a FAILURE: on the GPU machine a skip means something the check meant to run did not run.

While a cuda-marked test runs, the global flags that change CUDA numerics are pinned (pinned_cuda_flags), so that no
test depends on what an earlier one or the environment left set: cuDNN's TF32 ON (PyTorch's default: the engine and
the exports must set their own precision, and fp32 tests at 1e-4 prove they do), cuBLAS's TF32 off (PyTorch's
default), cuDNN deterministic and not benchmarking (a replayed CUDA graph and an eager run pick the same
algorithms, and no algorithm with atomics, so replays compare bit for bit).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

CUDA = pytest.mark.cuda
MARKER_HELP = ("cuda: needs a CUDA GPU; skipped without one, and a skip of it is a failure of "
               "benchmarks/gpu_check.sh (junitxml property cuda=1)")
SKIP_REASON = "needs a CUDA GPU"

# (object, attribute, value while a cuda-marked test runs)
PINNED = (
    (torch.backends.cudnn, "allow_tf32", True),
    (torch.backends.cuda.matmul, "allow_tf32", False),
    (torch.backends.cudnn, "deterministic", True),
    (torch.backends.cudnn, "benchmark", False),
)


@contextlib.contextmanager
def pinned_cuda_flags():
    """PINNED's values inside, the previous ones restored after (also when the test fails)."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in PINNED]
    try:
        for obj, name, value in PINNED:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
