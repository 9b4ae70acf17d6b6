"""benchmarks/gpu_check.sh, the one GPU run, on the CPU: its stages and budget, and the rule that makes it unable to
report a false pass -- a cuda-marked test that SKIPS is a failure (benchmarks/gpu_summary.py reads the junitxml
property cuda=1 that conftest.py gives every cuda-marked test)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
SUMMARY = ROOT / "benchmarks" / "gpu_summary.py"
pytestmark = pytest.mark.skipif(not SCRIPT.exists() or sys.platform != "linux",
                                reason="needs the source tree's benchmarks/ and bash")
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}


def summarise(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUMMARY), *map(str, args)], capture_output=True, text=True, timeout=60)


def junit(path: Path, cases: str) -> Path:
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


CUDA_PROP = '<properties><property name="cuda" value="1" /></properties>'


def test_stages_in_order_of_value_within_eight_minutes():
    out = subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60).stdout
    stages = re.findall(r"^  (\w+) +(\d+) s  (.*)$", out, re.M)
    assert [s[0] for s in stages] == ["env", "build", "ops", "engine", "exports", "scanner", "table"]
    assert sum(int(s[1]) for s in stages) <= 480
    assert "test_patch_knn" in dict((s[0], s[2]) for s in stages)["engine"]  # the knn map joins the stages
    assert re.search(r"budget: \d+ s of the stages' limits, within 480 s", out)


def test_a_skipped_cuda_marked_test_fails_the_summary(tmp_path):
    """A fake skip of a cuda-marked test makes the file (and so the run) FAIL; an unmarked skip does not; a missing
    result (a stage killed before pytest wrote it) or a file where nothing ran fails too."""
    marked = junit(tmp_path / "test_marked.xml", f'<testcase name="a">{CUDA_PROP}<skipped message="needs a CUDA GPU"/>'
                                                 '</testcase><testcase name="b"/>')
    r = summarise("junit", marked)
    assert r.returncode == 1 and "test_marked: 1 passed, 0 failed, 1 skipped (1 cuda-marked) -> FAIL" in r.stdout
    plain = junit(tmp_path / "test_plain.xml", '<testcase name="a"><skipped message="no onnx"/></testcase>'
                                               '<testcase name="b"/>')
    r = summarise("junit", plain)
    assert r.returncode == 0 and r.stdout.strip().endswith("-> ok")
    failed = junit(tmp_path / "test_failed.xml", f'<testcase name="a">{CUDA_PROP}<failure message="x"/></testcase>')
    assert summarise("junit", plain, failed).returncode == 1
    assert "no test ran" in summarise("junit", junit(tmp_path / "test_empty.xml", "")).stdout
    r = summarise("junit", plain, tmp_path / "test_missing.xml")
    assert r.returncode == 1 and "test_missing: no result" in r.stdout


def test_a_table_row_that_disagrees_with_eager_fails_the_summary(tmp_path):
    rows = [{"goal": "g", "runtime": "engine_fp16", "status": "ok"},
            {"goal": "g", "runtime": "eager_amp_fp16_channels_last", "status": "WRONG (max rel err 0.3 > 0.05)"}]
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows}))
    r = summarise("table", tmp_path / "t.json")
    assert r.returncode == 1 and "1 disagree with eager fp32" in r.stdout
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows[:1]}))
    assert summarise("table", tmp_path / "t.json").returncode == 0


def test_the_real_chain_a_cuda_test_skipped_without_a_gpu_fails_the_stage(tmp_path):
    """End to end with the real marker: the engine stage of gpu_check.sh run where no GPU is visible. Its
    cuda-marked tests (the CUDA graphs, the knn map, training) skip, and the stage's lines and the run's status
    say FAIL -- what a GPU machine whose tests silently skipped would report."""
    r = subprocess.run(["bash", str(SCRIPT), "engine"], capture_output=True, text=True, timeout=600,
                       env={**NO_GPU, "OUT": str(tmp_path)})
    summary = (tmp_path / "summary.txt").read_text()
    assert r.returncode == 1, summary
    assert re.search(r"test_engine: 0 passed, 0 failed, \d+ skipped \(\d+ cuda-marked\) -> FAIL", summary), summary
    assert "test_patch_knn: 0 passed" in summary and summary.strip().endswith("status FAIL")
    assert (tmp_path / "logs.tar.gz").exists()


def test_cuda_marked_tests_run_with_the_numerics_flags_pinned():
    """The fixture of every cuda-marked test (conftest.py): cuDNN TF32 on (so fp32 tests prove the engine's own
    precision), cuBLAS TF32 off, cuDNN deterministic (CUDA-graph replays compare bit for bit), no benchmarking --
    whatever was set before, and restored after."""
    import torch

    try:
        from cuda_support import PINNED, pinned_cuda_flags
    except ImportError:
        from tests.cuda_support import PINNED, pinned_cuda_flags
    before = [(obj, name, getattr(obj, name)) for obj, name, _ in PINNED]
    try:
        for obj, name, value in PINNED:
            setattr(obj, name, not value)
        with pinned_cuda_flags():
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            assert torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert all(getattr(obj, name) == (not value) for obj, name, value in PINNED)
    finally:
        for obj, name, value in before:
            setattr(obj, name, value)
