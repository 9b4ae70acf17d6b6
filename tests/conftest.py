import os
import tempfile

try:
    from cmake_build import cmake_build  # noqa: F401  (session fixture: one C++ build per test run)
except ImportError:
    from tests.cmake_build import cmake_build  # noqa: F401

# The engine's measured plans (skipgan/engine/plan.py) go to a cache of this test run, not the user's: a run starts
# from no cache, and what it measures does not outlive it. Set at import, so subprocesses (CLI tests) inherit it.
_PLAN_CACHE = tempfile.TemporaryDirectory(prefix="skipgan-test-plans-")
os.environ["SKIPGAN_PLAN_CACHE"] = _PLAN_CACHE.name
