"""skipgan::nearest_distances (the knn map's search) against its definition, ops.nearest_distances_reference."""

import pytest
import torch

from skipgan import ops
from skipgan.model.patch_knn import nearest_in_memory, nearest_rows

try:
    from isa_copies import assert_script_passes_with_isa
except ImportError:
    from tests.isa_copies import assert_script_passes_with_isa

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("q, m, c, qb, mb", [
    (1, 1, 16, 512, 4096),      # batch 1, a memory of one row
    (7, 5, 3, 2, 2),            # odd sizes, blocks smaller than both
    (300, 1000, 64, 512, 4096),  # one block each
    (513, 4097, 16, 512, 4096),  # one past a block in both
    (200, 2500, 48, 64, 700),    # many blocks, a ragged last one
])
def test_equals_the_reference(q, m, c, qb, mb):
    queries, memory = rand(q, c, seed=q), rand(m, c, seed=m)
    got = ops.nearest_distances(queries, memory, query_block=qb, memory_block=mb)
    torch.testing.assert_close(got, ops.nearest_distances_reference(queries, memory), rtol=1e-5, atol=1e-6)


def test_exact_next_to_a_memory_row_far_from_the_origin():
    """Where the GEMM form cancels (|q|² and |m|² large, their difference tiny), the distance is still exact: the
    GEMM only finds the candidates."""
    memory = rand(3000, 64, seed=1) * 10 + 100
    queries = memory[:500] + 1e-4 * torch.randn(500, 64, generator=torch.Generator().manual_seed(2))
    got = ops.nearest_distances(queries, memory)
    want = ops.nearest_distances_reference(queries, memory)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-9)
    assert float(want.max()) < 2e-3  # the case is the hard one: distances 1e-6 of the norms


def test_near_ties_in_one_block_take_the_exact_nearest():
    """Rows whose GEMM values tie within rounding: the scan re-ranks all of them, not only the GEMM's pick."""
    base = rand(1, 32, seed=3) * 50
    memory = base.repeat(64, 1) + 1e-5 * rand(64, 32, seed=4)
    queries = base + 1e-5 * rand(10, 32, seed=5)
    torch.testing.assert_close(ops.nearest_distances(queries, memory), ops.nearest_distances_reference(queries, memory),
                               rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("gemm", ["addmm", "onednn"])
def test_both_gemms_and_rows_with_more_candidates_than_the_scan_keeps(gemm):
    """Either GEMM gives the exact distances; 300 rows tied within rounding (more candidates than the one-pass scan
    keeps, 64) take its two-pass fallback."""
    if gemm == "onednn" and not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch")
    queries, memory = rand(200, 16, seed=11), rand(3000, 16, seed=12)
    torch.testing.assert_close(ops.nearest_distances(queries, memory, gemm=gemm),
                               ops.nearest_distances_reference(queries, memory), rtol=1e-5, atol=1e-6)
    base = rand(1, 16, seed=13) * 30
    tied = torch.cat([base.repeat(300, 1) + 1e-6 * rand(300, 16, seed=14), rand(100, 16, seed=15)])
    q = base + 1e-6 * rand(5, 16, seed=16)
    torch.testing.assert_close(ops.nearest_distances(q, tied, gemm=gemm), ops.nearest_distances_reference(q, tied),
                               rtol=1e-3, atol=1e-7)


def test_the_search_gemm_is_chosen_by_measurement_and_never_in_reduced_precision():
    from skipgan.model import patch_knn

    memory = rand(700, 16, seed=17)
    sq = memory.pow(2).sum(1)
    patch_knn._GEMM_CHOICE.clear()
    assert patch_knn.choose_search_gemm(memory, sq) in (0, 1)
    assert len(patch_knn._GEMM_CHOICE) == 1  # measured once per shape and thread count
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # oneDNN might then use bf16, outside the scan's error bound
        assert patch_knn.choose_search_gemm(memory, sq) == 0
    finally:
        torch.set_float32_matmul_precision(previous)


def test_non_contiguous_inputs_and_the_torch_search_agree():
    memory = rand(64, 900, seed=6).t()  # [900, 64] transposed view
    queries = rand(64, 400, seed=7).t()[::2]  # [200, 64], every other row
    memory_sq = memory.pow(2).sum(1)
    got = ops.nearest_distances(queries, memory, memory_sq)
    torch.testing.assert_close(got, ops.nearest_distances_reference(queries, memory), rtol=1e-5, atol=1e-6)
    # the fixed top-k search of graphs (torch.export, ONNX) and the blocked torch one give the same distances
    q, m = queries.contiguous(), memory.contiguous()
    torch.testing.assert_close(nearest_in_memory(q, m, memory_sq), got, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nearest_rows(q, m, memory_sq, 64, native=False), got, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nearest_rows(q, m, memory_sq, 64, native=True), got, rtol=0, atol=0)


def test_empty_queries_and_thread_counts():
    memory = rand(300, 16, seed=8)
    assert ops.nearest_distances(torch.empty(0, 16), memory).shape == (0,)
    queries = rand(700, 16, seed=9)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.nearest_distances(queries, memory)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(ops.nearest_distances(queries, memory), one, rtol=1e-6, atol=1e-7)


def test_opcheck_and_cpu_only():
    for q, m, c in ((5, 9, 4), (1, 1, 16), (33, 70, 8)):
        queries, memory = rand(q, c, seed=q), rand(m, c, seed=m)
        torch.library.opcheck(torch.ops.skipgan.nearest_distances.default,
                              (queries, memory, memory.pow(2).sum(1), 16, 32))
    assert torch._C._dispatch_has_kernel_for_dispatch_key("skipgan::nearest_distances", "CPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("skipgan::nearest_distances", "CUDA")


OP = r"skipgan::nearest_distances: "


def test_rejects_bad_input():
    q, m = rand(4, 8), rand(10, 8)
    sq = m.pow(2).sum(1)
    call = torch.ops.skipgan.nearest_distances
    with pytest.raises(RuntimeError, match=OP + r"queries: expected dtype Float, got Double"):
        call(q.double(), m, sq, 512, 4096)
    with pytest.raises(RuntimeError, match=OP + r"memory: expected 8 columns \(the queries' width\)"):
        call(q, rand(10, 7), sq, 512, 4096)
    with pytest.raises(RuntimeError, match=OP + r"memory: expected at least one row"):
        call(q, torch.empty(0, 8), torch.empty(0), 512, 4096)
    with pytest.raises(RuntimeError, match=OP + r"memory_sq: expected shape \[10\]"):
        call(q, m, sq[:9], 512, 4096)
    with pytest.raises(RuntimeError, match=OP + r"queries: expected a 2-D tensor"):
        call(q[0], m, sq, 512, 4096)
    with pytest.raises(RuntimeError, match=OP + r"query_block, memory_block: expected >= 1"):
        call(q, m, sq, 0, 4096)


SCRIPT = r"""
import torch, skipgan.ops as o
assert o.build_info()["cpu_isa"] == "{isa}", o.build_info()
g = torch.Generator().manual_seed(0)
for q, m, c in ((1, 1, 16), (37, 129, 3), (600, 5000, 64), (300, 9000, 16)):
    queries, memory = torch.rand(q, c, generator=g), torch.rand(m, c, generator=g)
    torch.testing.assert_close(o.nearest_distances(queries, memory, memory_block=1000),
                               o.nearest_distances_reference(queries, memory), rtol=1e-5, atol=1e-6)
print("ok")
"""


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_other_cpu_kernel_copies(isa):
    """The scan's copies this CPU does not pick by itself (ATEN_CPU_CAPABILITY)."""
    assert_script_passes_with_isa(SCRIPT, isa)
