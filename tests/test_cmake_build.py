"""The CMake build of csrc/ (libskipgan_ops, for C++ programs) configures, builds and passes its C++-only smoke test.

CPU kernels only (WITH_CUDA=OFF) to keep CI short: the CUDA sources are compiled and linked by every CI run's
`FORCE_CUDA=1` pip install already. The build (tests/cmake_build.py) is shared with test_scanner.py.
"""

import os
import shutil
import subprocess

import pytest

try:
    from cmake_build import AVAILABLE, SKIP_REASON, run
except ImportError:
    from tests.cmake_build import AVAILABLE, SKIP_REASON, run

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=SKIP_REASON)


def test_cmake_builds_library_and_cpp_smoke_test_passes(cmake_build):
    build = cmake_build  # configured with no -D paths: torch, the CUDA toolkit and nvrtc are found by CMake
    lib = os.path.join(build, "libskipgan_ops.so")
    assert os.path.exists(lib)
    # the C++ program loads the library without Python, calls both ops through the dispatcher, checks the numbers
    out = run(["ctest", "--test-dir", build, "--output-on-failure"])
    assert "100% tests passed" in out
    if shutil.which("readelf"):
        needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
        assert "[libstdc++.so" in needed and "libpython" not in needed
