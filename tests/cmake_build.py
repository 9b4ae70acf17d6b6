"""One CMake build of the C++ side per test session (libskipgan_ops, its smoke test, the scanner), shared by
test_cmake_build.py and test_scanner.py. Configured with NO -D paths: CMakeLists.txt finds torch through this
Python, and for a CUDA torch the toolkit and nvrtc, itself (what users get)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVAILABLE = (os.path.exists(os.path.join(ROOT, "CMakeLists.txt")) and shutil.which("cmake") is not None
             and sys.platform.startswith("linux"))
SKIP_REASON = "needs the source tree's CMakeLists.txt and cmake on Linux"


def run(cmd: list[str], **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def build(directory: str) -> str:
    """Configure and build into `directory`. WITH_CUDA only where a GPU can run it (gpu_check.sh): every CI pip
    install compiles the CUDA kernels already."""
    import torch

    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    cuda = "ON" if torch.cuda.is_available() else "OFF"
    run(["cmake", "-S", ROOT, "-B", directory, "-DSKIPGAN_BUILD_TESTS=ON", "-DSKIPGAN_BUILD_SCANNER=ON",
         f"-DWITH_CUDA={cuda}"], env=env)
    run(["cmake", "--build", directory, f"-j{os.environ.get('MAX_JOBS', '2')}"], env=env)
    return directory


@pytest.fixture(scope="session")
def cmake_build(tmp_path_factory):
    if not AVAILABLE:
        pytest.skip(SKIP_REASON)
    # SKIPGAN_TEST_CMAKE_DIR: build incrementally in a kept folder while developing (CI builds from scratch)
    return build(os.environ.get("SKIPGAN_TEST_CMAKE_DIR") or str(tmp_path_factory.mktemp("cmake")))
