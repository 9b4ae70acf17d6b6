"""Shared pieces of the pytest-benchmark suites in benchmarks/bench_ops_*.py.

Every benchmark puts `case` (what is computed, on which shapes), `impl` (who computes it) and `bytes` /
`images` in extra_info. At the end of the run a table compares, per case, every impl with the reference impl
of that case (`eager`) and with the machine's read bandwidth measured in the same run (`read_bw` impls), so
each claimed speed-up is a ratio of two numbers from one run on one machine.

    pytest benchmarks/bench_ops_anomaly_score.py benchmarks/bench_ops_conv_bn_act.py --benchmark-columns=median,iqr
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
import torch

from skipgan.bench import cpu_model  # one definition, shared with `skipgan bench`


def pytest_benchmark_update_machine_info(config, machine_info):
    from skipgan import ops

    machine_info["cpu_model"] = cpu_model()
    machine_info["cores"] = os.cpu_count()
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["skipgan_ops"] = ops.build_info()
    machine_info["loadavg_at_end"] = os.getloadavg()
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name()


@pytest.fixture(autouse=True)
def _record_load(request):
    """The 1-minute load average before each benchmark: other jobs on a shared machine skew timings."""
    bench = request.node.funcargs.get("benchmark")
    if bench is not None:
        bench.extra_info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    yield


def pytest_terminal_summary(terminalreporter, config):
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not bs.benchmarks:
        return
    cases: dict[str, dict[str, object]] = defaultdict(dict)
    for b in bs.benchmarks:
        if b.stats and "case" in b.extra_info:
            cases[b.extra_info["case"]][b.extra_info["impl"]] = b
    if not cases:
        return
    tw = terminalreporter
    tw.write_sep("-", "skipgan ops: medians, GB/s and ratios measured in this run")
    tw.write_line(f"cpu: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
                  f"load average now {os.getloadavg()[0]:.2f}")
    for case, impls in cases.items():
        eager = impls.get("eager")
        bw = [v for k, v in impls.items() if k.startswith("read_bw")]
        tw.write_line(f"{case}")
        for name, b in impls.items():
            med = b.stats.median
            line = f"    {name:<24} {med * 1e3:9.3f} ms"
            nbytes = b.extra_info.get("bytes")
            if nbytes:
                line += f"  {nbytes / med / 1e9:7.2f} GB/s"
            if eager is not None and b is not eager:
                line += f"  {eager.stats.median / med:5.2f}x eager"
            if bw and nbytes and not name.startswith("read_bw"):
                peak = max(x.extra_info["bytes"] / x.stats.median for x in bw)
                line += f"  {100 * nbytes / med / peak:5.1f}% of read bw"
            if "images" in b.extra_info:
                line += f"  {b.extra_info['images'] / med:10.0f} img/s"
            tw.write_line(line)
