"""The CMake build of csrc/ (libskipgan_ops, for C++ programs) configures, builds and passes its C++-only smoke test.

CPU kernels only (WITH_CUDA=OFF) to keep CI short: the CUDA sources are compiled and linked by every CI run's
`FORCE_CUDA=1` pip install already. About a minute on 2 cores.
"""

import glob
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "CMakeLists.txt")) or shutil.which("cmake") is None
    or not sys.platform.startswith("linux"),
    reason="needs the source tree's CMakeLists.txt and cmake on Linux")


def cuda_torch_args() -> list[str]:
    """find_package(Torch) of a CUDA build of torch looks for the toolkit even with WITH_CUDA=OFF; a toolkit
    without nvrtc (the pip package holds it) needs it named (see the top of CMakeLists.txt)."""
    if torch.version.cuda is None:
        return []
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if not os.path.exists(os.path.join(home, "bin", "nvcc")):
        pytest.skip(f"torch is a CUDA build but no CUDA toolkit at {home} (set CUDA_HOME)")
    args = [f"-DCUDA_TOOLKIT_ROOT_DIR={home}", f"-DCMAKE_CUDA_COMPILER={home}/bin/nvcc"]
    site = os.path.dirname(os.path.dirname(torch.__file__))
    nvrtc = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so.*")))
    if nvrtc:
        args.append(f"-DCUDA_nvrtc_LIBRARY={nvrtc[0]}")
    return args


def run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_cmake_builds_library_and_cpp_smoke_test_passes(tmp_path):
    build = str(tmp_path / "build")
    run(["cmake", "-S", ROOT, "-B", build, f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
         "-DSKIPGAN_BUILD_TESTS=ON", "-DWITH_CUDA=OFF", *cuda_torch_args()])
    run(["cmake", "--build", build, f"-j{os.environ.get('MAX_JOBS', '2')}"])
    lib = os.path.join(build, "libskipgan_ops.so")
    assert os.path.exists(lib)
    # the C++ program loads the library without Python, calls both ops through the dispatcher, checks the numbers
    out = run(["ctest", "--test-dir", build, "--output-on-failure"])
    assert "100% tests passed" in out
    if shutil.which("readelf"):
        needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
        assert "[libstdc++.so" in needed and "libpython" not in needed
