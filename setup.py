"""Builds the native op library csrc/ as the package module `skipgan._C`.

    pip install --no-build-isolation .          # or -e . ; torch must already be installed
    FORCE_CUDA=1 MAX_JOBS=2 pip install --no-build-isolation .   # CUDA kernels without a GPU (CI)

The CPU kernels are always built. The CUDA kernels are built when torch is a CUDA build and the toolkit's
nvcc is found (FORCE_CUDA unset), always with FORCE_CUDA=1 (an error if impossible), never with
FORCE_CUDA=0. TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0+PTX" (A100, H100, and PTX for newer GPUs).

`skipgan._C` holds no Python: it is a plain torch operator library that `skipgan/ops.py` loads with
torch.ops.load_library, and that C++ programs can load too (CMakeLists.txt builds the same sources).
Project metadata lives in pyproject.toml; this file only describes the extension.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
# Generated build config (skipgan_build_config.h); under build/, which git ignores.
GENERATED = ROOT / "build" / "generated"
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"
# Headers that a partial CUDA toolkit (nvcc + runtime only) lacks but ATen's CUDA headers may include.
LIBRARY_HEADERS = ("cusparse.h", "cublas_v2.h", "cudnn.h")


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: CUDA_HOME / CUDA_PATH, then /usr/local/cuda, then a real nvcc on PATH.

    torch.utils.cpp_extension would take dirname(dirname(which nvcc)), which is wrong for a wrapper script
    such as /usr/local/bin/nvcc (it would give /usr/local), so the choice is made here and handed to torch.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        root = Path(os.path.realpath(nvcc)).parent.parent
        if (root / "include" / "cuda_runtime.h").exists():
            return str(root)
    return None


def nvidia_pip_include_dirs(cuda_home: str) -> list[str]:
    """Include folders of the nvidia-* pip packages that provide headers the toolkit lacks."""
    missing = [h for h in LIBRARY_HEADERS if not (Path(cuda_home) / "include" / h).exists()]
    if not missing:
        return []
    import torch

    site = Path(torch.__file__).resolve().parent.parent
    dirs: list[str] = []
    for header in missing:
        for found in sorted(glob.glob(str(site / "nvidia" / "*" / "include" / header))):
            d = str(Path(found).parent)
            if d not in dirs:
                dirs.append(d)
            break
    return dirs


def check_shared_libstdcxx() -> None:
    """Refuse a C++ compiler that would link libstdc++ statically into skipgan._C.

    Seen on a GPU machine (2026-11-28) whose CXX, a /opt/gcc/bin/g++ wrapper, found no shared libstdc++: the
    library then carried its own copy of libstdc++'s stream code next to the process's shared one, and the first
    TORCH_CHECK message it formatted (any bad input) killed the interpreter with a segfault.
    """
    if not sys.platform.startswith("linux") or os.environ.get("SKIPGAN_ALLOW_STATIC_LIBSTDCXX") == "1":
        return
    import shlex
    import subprocess
    import sysconfig

    cxx = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++")
    try:
        found = subprocess.run([*cxx, "-print-file-name=libstdc++.so"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return  # the build itself will report a missing compiler
    if not os.path.isabs(found):
        sys.exit(f"setup.py: the C++ compiler {cxx[0]} finds no shared libstdc++ (-print-file-name=libstdc++.so "
                 f"gives {found!r}), so it would link libstdc++ statically into skipgan._C, which then crashes on "
                 "its first error message; build with a compiler that has one, e.g. CC=/usr/bin/gcc CXX=/usr/bin/g++")


def want_cuda(torch_cuda_version: str | None, cuda_home: str | None) -> bool:
    force = os.environ.get("FORCE_CUDA", "")
    if force == "0":
        return False
    if force == "1":
        if torch_cuda_version is None:
            sys.exit("setup.py: FORCE_CUDA=1 but the installed torch is a CPU-only build; install a CUDA torch.")
        if cuda_home is None or not (Path(cuda_home) / "bin" / "nvcc").exists():
            sys.exit(f"setup.py: FORCE_CUDA=1 but no CUDA toolkit with bin/nvcc was found (CUDA_HOME={cuda_home}); "
                     "set CUDA_HOME to the toolkit root.")
        return True
    return torch_cuda_version is not None and cuda_home is not None and (Path(cuda_home) / "bin" / "nvcc").exists()


def write_build_config(with_cuda: bool, arch_list: str) -> None:
    GENERATED.mkdir(parents=True, exist_ok=True)
    text = (
        "// Generated by setup.py; do not edit.\n"
        '#define SKIPGAN_BUILDER "setuptools"\n'
        f'#define SKIPGAN_CUDA_ARCH_LIST "{arch_list if with_cuda else ""}"\n'
    )
    path = GENERATED / "skipgan_build_config.h"
    if not path.exists() or path.read_text() != text:  # keep the mtime when unchanged: no needless rebuild
        path.write_text(text)


def extensions():
    import torch

    check_shared_libstdcxx()
    cuda_home = find_cuda_home()
    with_cuda = want_cuda(torch.version.cuda, cuda_home)
    if with_cuda:
        # Decided before torch.utils.cpp_extension reads it at import time (and patched in case it was
        # imported already).
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    from torch.utils import cpp_extension

    if with_cuda:
        cpp_extension.CUDA_HOME = cuda_home
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    write_build_config(with_cuda, arch_list)

    rel = lambda pattern: sorted(str(p.relative_to(ROOT)) for p in CSRC.glob(pattern))  # noqa: E731
    sources = rel("*.cpp") + rel("cpu/*.cpp")
    # -g0: the interpreter's CFLAGS carry -g, which doubles compile time and library size for no use here.
    # -Wno-unknown-pragmas: at::vec headers carry nvcc pragmas; -Wno-psabi: GCC notes on vector types by value.
    # -fopenmp: at::parallel_for is an inline `#pragma omp parallel` (ATen/ParallelOpenMP.h) compiled into THIS
    # library; without the flag it silently runs on one thread.
    cxx = ["-O3", "-g0", "-std=c++20", "-Wno-unknown-pragmas", "-Wno-psabi", "-fopenmp"]
    nvcc = ["-O3", "-std=c++20", "-lineinfo"]
    macros = []
    if with_cuda:
        sources += rel("cuda/*.cpp") + rel("cuda/*.cu")
        macros.append(("SKIPGAN_WITH_CUDA", None))
        # After the toolkit's own include folder on the command line, so they only fill gaps.
        for d in nvidia_pip_include_dirs(cuda_home):
            cxx += ["-idirafter", d]
            nvcc += [f"-I{d}"]
    print(f"setup.py: skipgan._C with {'CPU + CUDA (' + arch_list + ', ' + cuda_home + ')' if with_cuda else 'CPU only'}"
          f" kernels, torch {torch.__version__}", file=sys.stderr)

    ext_type = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    return [
        ext_type(
            name="skipgan._C",
            sources=sources,
            include_dirs=[str(GENERATED)],
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc} if with_cuda else {"cxx": cxx},
            extra_link_args=["-fopenmp"],
            # No libtorch_python link and no PyInit: the library is loaded with torch.ops.load_library.
            py_limited_api=True,
        )
    ], cpp_extension.BuildExtension


ext_modules, build_ext = extensions()

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
