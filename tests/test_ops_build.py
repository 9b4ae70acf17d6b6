"""What the built library is: its build info, no Python inside, and its per-ISA CPU kernels."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from skipgan import ops

try:
    from isa_copies import assert_script_passes_with_isa
except ImportError:
    from tests.isa_copies import assert_script_passes_with_isa


def test_library_loaded_and_build_info():
    info = ops.build_info()
    assert info["available"], info.get("error")
    assert os.path.exists(info["library"])
    assert isinstance(info["cuda"], bool)
    assert bool(info["cuda_arch_list"]) == info["cuda"]
    # built against the torch that runs it (a mismatch would be an ABI hazard)
    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert info["cpu_isa"] in {"default", "avx2", "avx512"}
    if info["cuda"]:
        assert torch.version.cuda is not None


def test_cpu_kernels_run_in_parallel():
    # With ATen's OpenMP backend, at::parallel_for is an inline `omp parallel` compiled into OUR library: a build
    # without -fopenmp passes every numerics test while using one core.
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        assert ops.build_info()["openmp"]


def test_cuda_kernels_registered_as_built():
    # A build without CUDA kernels still registers a CUDA kernel: the one that explains how to rebuild.
    for op in ("conv_bn_act_out", "anomaly_score", "anomaly_score_out", "bias_act_out"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"skipgan::{op}", "CUDA")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"skipgan::{op}", "CPU")
    # col2im is CPU-only by design (on CUDA the engine runs cuDNN's transposed convs)
    assert torch._C._dispatch_has_kernel_for_dispatch_key("skipgan::col2im_bias_act_out", "CPU")


@pytest.mark.skipif(ops.build_info()["cuda"] or not torch.cuda.is_available(),
                    reason="needs a GPU and a build without CUDA kernels")
def test_clear_error_without_cuda_kernels():
    x = torch.rand(1, 3, 4, 4, device="cuda")
    with pytest.raises(RuntimeError, match="built without CUDA kernels.*FORCE_CUDA=1"):
        torch.ops.skipgan.anomaly_score(x, x, x.flatten(1), x.flatten(1), 0.9)


@pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("nm") is None, reason="needs binutils")
def test_library_has_no_python_dependency():
    """A C++ program (the scanner) must be able to load the same shared object."""
    lib = ops.build_info()["library"]
    needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    assert "libpython" not in needed and "torch_python" not in needed
    undefined = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True,
                               check=True).stdout.split()
    assert not [s for s in undefined if s.startswith(("Py", "_Py"))]


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("readelf") is None,
                    reason="needs readelf on Linux")
def test_library_links_libstdcxx_dynamically():
    """libstdc++ linked statically gives the library a second copy of the stream code next to the process's shared
    one. Formatting a TORCH_CHECK message then breaks: a segfault on a GPU machine whose compiler found no shared
    libstdc++, a message cut short (`x: expected a `) here when built with LDFLAGS=-static-libstdc++."""
    lib = ops.build_info()["library"]
    needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    assert "[libstdc++.so" in needed, f"{lib} does not load the shared libstdc++; rebuild with CXX=/usr/bin/g++"


@pytest.mark.skipif(shutil.which("objdump") is None or not sys.platform.startswith("linux")
                    or os.uname().machine != "x86_64", reason="needs objdump on x86-64")
def test_wide_instructions_only_in_isa_namespaces():
    """AVX / AVX-512 code may only live in the AVX2 / AVX512 copies of the CPU kernels.

    Anything else (say a c10 inline function compiled inside isa_avx512.cpp) could be the copy the linker keeps
    for every caller, and crash a CPU without AVX-512. csrc/cpu/isa_prelude.h exists to prevent that.
    """
    lib = ops.build_info()["library"]
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", lib], capture_output=True, text=True,
                         check=True).stdout
    offenders, wide, current = set(), set(), None
    for line in dis.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            current = head.group(1)
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].split():
            continue
        mnemonic = fields[1].split()[0]
        if mnemonic.startswith("v") or "%ymm" in line or "%zmm" in line:  # VEX / EVEX encoded
            wide.add(current)
            if "::AVX2::" not in current and "::AVX512::" not in current:
                offenders.add(current)
    assert wide, "no vectorised kernels found at all"
    assert not offenders, sorted(offenders)[:10]


SCRIPT = r"""
import torch, skipgan.ops as o
from skipgan.scoring import combine_scores, error_map
assert o.build_info()["cpu_isa"] == "{isa}", o.build_info()
g = torch.Generator().manual_seed(0)
for dt in (torch.float32, torch.bfloat16):
    for cl in (False, True):
        x = torch.rand(2, 3, 70, 61, generator=g).to(dt); xh = torch.rand(2, 3, 70, 61, generator=g).to(dt)
        if cl:
            x, xh = x.contiguous(memory_format=torch.channels_last), xh.contiguous(memory_format=torch.channels_last)
        f = torch.randn(2, 33, generator=g).to(dt); fh = torch.randn(2, 33, generator=g).to(dt)
        for margin in (0, 2):
            s, m, parts = o.anomaly_score(x, xh, f, fh, 0.9, margin=margin, error_map=True, parts=True)
            rs, rpix, rfeat = combine_scores(x, xh, f, fh, 0.9, margin)
            for got, ref in ((s, rs), (m, error_map(x, xh)), (parts[:, 0], rpix), (parts[:, 1], rfeat)):
                torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
        w = (torch.randn(5, 3, 4, 4, generator=g) / 7).to(dt); sc = torch.rand(5, generator=g); sh = torch.randn(5, generator=g)
        tol = dict(rtol=1e-4, atol=1e-5) if dt == torch.float32 else dict(rtol=3e-2, atol=3e-2)
        for act in o.ACTIVATIONS:
            got = o.conv_bn_act(x, w, sc, sh, stride=2, padding=1, act=act, act2="leaky_relu")
            ref = o.conv_bn_act_reference(x, w, sc, sh, stride=2, padding=1, act=act, act2="leaky_relu")
            torch.testing.assert_close(got, ref, **tol)
print("ok")
"""


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_other_cpu_kernel_copies(isa):
    """The copies this CPU does not pick by itself, forced the way ATen's own kernels are."""
    assert_script_passes_with_isa(SCRIPT, isa)


SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists(SETUP), reason="needs setup.py on Linux")
def test_setup_refuses_compiler_without_shared_libstdcxx(tmp_path):
    # Such a compiler links libstdc++ statically into the library, which then segfaults formatting its first
    # TORCH_CHECK message (seen on a GPU machine): the build must stop with the fix instead.
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\necho libstdc++.so\n")
    fake.chmod(0o755)
    env = {**os.environ, "CXX": str(fake)}
    env.pop("SKIPGAN_ALLOW_STATIC_LIBSTDCXX", None)
    r = subprocess.run([sys.executable, SETUP, "--version"], capture_output=True, text=True, env=env,
                       cwd=os.path.dirname(SETUP))
    assert r.returncode != 0
    assert "finds no shared libstdc++" in r.stderr and "CXX=/usr/bin/g++" in r.stderr
