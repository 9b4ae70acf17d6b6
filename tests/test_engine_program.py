"""The CPU replay of the engine's pass (skipgan/engine/program.py): each batch size's first pass recorded, later
ones replayed without the Python around the ops, with exactly the pass's results."""

import pytest
import torch

from skipgan import ops
from skipgan.engine import Screener
from skipgan.engine.program import Program

try:
    from model_fixtures import images, make
except ImportError:
    from tests.model_fixtures import images, make

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("probes, isize", [(0, 32), (3, 32), (2, 64)])
def test_replay_equals_the_pass_exactly(dtype, probes, isize):
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no bf16 on this CPU")
    m = make(isize, 2, probes=probes, width=8)
    plain = Screener.from_model(m, max_batch=4, dtype=dtype, replay=False)
    fast = Screener.from_model(m, max_batch=4, dtype=dtype, replay=True)
    for seed, n in [(1, 4), (2, 4), (3, 1), (4, 3), (5, 4), (6, 1)]:  # record, replay; other batch sizes; back
        x = images(n, 2, isize, seed=seed)
        want, got = plain.score(x, reconstruction=True), fast.score(x, reconstruction=True)
        assert torch.equal(got.score, want.score) and torch.equal(got.feature, want.feature)
        assert torch.equal(got.reconstruction, want.reconstruction)
    assert sorted(fast._programs) == [1, 3, 4] and not plain._programs


def test_a_map_request_runs_the_pass_itself_and_the_replay_goes_on():
    m = make(32, 1, probes=2, width=8)
    s = Screener.from_model(m, max_batch=2)
    x = images(2, 1, 32)
    first = s.score(x)
    with_map = s.score(x, error_map=True)
    assert with_map.error_map is not None and torch.equal(with_map.score, first.score)
    assert torch.equal(s.score(x).score, first.score)


def test_programs_are_bounded_and_fold_the_views():
    m = make(32, 1, probes=0, width=8)
    s = Screener.from_model(m, max_batch=6)
    for n in range(1, 7):
        s.score(images(n, 1, 32))
    assert len(s._programs) == s.MAX_PROGRAMS and sorted(s._programs) == [3, 4, 5, 6]
    calls = []

    class Count(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with Count(), torch.no_grad():
        s._run(6, None)
    assert len(s._programs[6].steps) < len(calls)  # the views of the preallocated buffers are constants


def test_record_then_replay_a_function():
    a, b = torch.ones(3), torch.zeros(3)

    def run():
        y = torch.mul(a, 2)   # a fresh tensor
        b.copy_(y.view(3))    # a view of it, then an in-place write into a persistent tensor

    p = Program.record(run)
    assert torch.equal(b, torch.full((3,), 2.0))
    a.fill_(5)
    p.replay()
    assert torch.equal(b, torch.full((3,), 10.0))
