import os
import tempfile

import pytest
import torch

try:
    from cmake_build import cmake_build  # noqa: F401  (session fixture: one C++ build per test run)
    from cuda_support import MARKER_HELP, SKIP_REASON, pinned_cuda_flags
except ImportError:
    from tests.cmake_build import cmake_build  # noqa: F401
    from tests.cuda_support import MARKER_HELP, SKIP_REASON, pinned_cuda_flags

# The engine's measured plans (skipgan/engine/plan.py) go to a cache of this test run, not the user's: a run starts
# from no cache, and what it measures does not outlive it. Set at import, so subprocesses (CLI tests) inherit it.
_PLAN_CACHE = tempfile.TemporaryDirectory(prefix="skipgan-test-plans-")
os.environ["SKIPGAN_PLAN_CACHE"] = _PLAN_CACHE.name


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_HELP)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.user_properties.append(("cuda", "1"))  # junitxml: gpu_check.sh counts a skip of it as a failure


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip(SKIP_REASON)


@pytest.fixture(autouse=True)
def _pinned_cuda_flags(request):
    """cuda-marked tests run with the numerics flags pinned (tests/cuda_support.py)."""
    if request.node.get_closest_marker("cuda") is None:
        yield
        return
    with pinned_cuda_flags():
        yield
