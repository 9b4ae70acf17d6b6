"""Run a check script with one of the CPU kernel copies this machine would not pick by itself (shared by the ops
tests that cover every copy)."""

import os
import subprocess
import sys

import pytest
import torch


def assert_script_passes_with_isa(script: str, isa: str) -> None:
    """Run `script` ({isa} filled in) in a fresh interpreter with ATEN_CPU_CAPABILITY=isa, the switch ATen's own
    kernels obey; it must print "ok" last."""
    if isa == "avx2" and torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("CPU without AVX2")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa)
    res = subprocess.run([sys.executable, "-c", script.replace("{isa}", isa)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
