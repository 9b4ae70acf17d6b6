"""The fused engine scores exactly what the eager model scores (eval mode), on every backend and shape."""

import pytest
import torch
from torch import nn

from skipgan import ops
from skipgan.engine import Screener, fold_conv
from skipgan.engine.cpu import bf16_fast, bf16_restriction
from skipgan.model.corruption import select_probes

try:
    from model_fixtures import images, make
except ImportError:  # run from the repository root as a package
    from tests.model_fixtures import images, make

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")
CUDA = pytest.mark.cuda  # conftest.py: skipped without a GPU; benchmarks/gpu_check.sh fails on such a skip


def assert_scores_close(got, want, rtol=1e-4):
    for name in ("score", "pixel", "feature"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=rtol, atol=1e-7, msg=name)


# ------------------------------------------------------------------------------------------------ folding
@pytest.mark.parametrize("transposed", [False, True])
def test_fold_conv_bn_matches_eager(transposed):
    torch.manual_seed(0)
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(6, 5, 4, 2, 1, bias=True)
    bn = nn.BatchNorm2d(5)
    bn.running_mean.normal_(0, 0.3)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.normal_(1, 0.2)
    bn.bias.data.normal_(0, 0.2)
    bn.eval()
    x = torch.randn(3, 6, 8, 8)
    f = fold_conv(conv, bn)
    conv_fn = nn.functional.conv_transpose2d if transposed else nn.functional.conv2d
    got = conv_fn(x, f.weight, f.shift, stride=2, padding=1)
    torch.testing.assert_close(got, bn(conv(x)).detach(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ fp32 equivalence
@pytest.mark.parametrize("backend", ["gemm", "vendor"])
@pytest.mark.parametrize("isize,nc,probes,margin", [
    (32, 1, 0, 0), (32, 1, 3, 0), (32, 3, 2, 2), (32, 2, 0, 1), (64, 1, 2, 0), (64, 3, 0, 3), (128, 1, 1, 0),
])
def test_engine_equals_eager_model(backend, isize, nc, probes, margin):
    m = make(isize, nc, probes, margin)
    x = images(5, nc, isize)
    with torch.no_grad():
        want = m.score(x, with_error_map=True)
    # max_batch 3 and a 2-image tile: several batches, a partial last batch and a partial last tile
    s = Screener.from_model(m, max_batch=3, backend=backend, tile=2 * max(1, probes))
    got = s.score(x, error_map=True, reconstruction=True)
    assert_scores_close(got, want)
    torch.testing.assert_close(got.error_map, want.error_map, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got.reconstruction, want.reconstruction, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype,rtol", [("fp32", 1e-4), ("bf16", 0.05)])
def test_engine_per_pixel_layers_full_and_partial_tiles(dtype, rtol):
    """Generator tiles of 64 images run the per-pixel GEMMs; the partial last tile falls back to the tap form."""
    if dtype == "bf16" and not bf16_fast():
        pytest.skip(f"no fast bf16: {bf16_restriction()}")
    m = make(32, 2, probes=8, margin=1)
    x = images(11, 2, 32)  # tiles of 8 images (64 generator rows), then 3 (24 rows)
    with torch.no_grad():
        want = m.score(x)
    s = Screener.from_model(m, dtype=dtype, max_batch=11, tile=64, plan="fixed")
    assert type(s.dec[3]).__name__ == "PixelConvT"
    got = s.score(x)
    torch.testing.assert_close(got.score, want.score, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("backend", ["gemm", "vendor"])
def test_engine_batch_one_and_odd_batches(backend):
    m = make(32, 1, probes=4)
    s = Screener.from_model(m, max_batch=7, backend=backend)
    for n in (1, 7, 3):
        x = images(n, 1, 32, seed=n)
        with torch.no_grad():
            assert_scores_close(s.score(x), m.score(x))


def test_engine_inpainting_probes():
    m = make(32, 1, masks=True)
    x = images(3, 1, 32)
    with torch.no_grad():
        assert_scores_close(Screener.from_model(m, max_batch=4).score(x), m.score(x))


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_probes_knob_uses_first_k_reweighted(k):
    m = make(32, 1, probes=4, seed=3)
    x = images(4, 1, 32)
    scale, shift, weight = select_probes(m.probe_scale, m.probe_shift, m.probe_weight, k)
    ref = make(32, 1, probes=4, seed=3)
    ref.probe_scale, ref.probe_shift, ref.probe_weight = scale, shift, weight  # the eager model with k probes
    with torch.no_grad():
        want = ref.score(x)
    assert_scores_close(Screener.from_model(m, probes=k, max_batch=4).score(x), want)


def test_probes_knob_rejects_partial_masks_and_too_many():
    with pytest.raises(ValueError, match="probes=2"):
        Screener.from_model(make(32, 1, masks=True), probes=2)
    with pytest.raises(ValueError, match="probes=9"):
        Screener.from_model(make(32, 1, probes=4), probes=9)


def test_engine_scores_do_not_depend_on_batching_or_tiling():
    m = make(32, 2, probes=3)
    x = images(6, 2, 32)
    a = Screener.from_model(m, max_batch=6, tile=18).score(x).score
    b = Screener.from_model(m, max_batch=2, tile=3).score(x).score
    torch.testing.assert_close(a, b, rtol=1e-5, atol=0)



def test_replayed_steps_score_as_the_recorded_call_at_every_batch_size():
    """The CPU engine records each batch size's steps at its first call and replays them after: the replay is the
    same ops on the same buffers (bitwise the first call's results), a partial last batch has its own recording, and
    new inputs are read (the steps hold views of the buffers, not of the first input)."""
    m = make(32, 1, probes=2)
    s = Screener.from_model(m, max_batch=4)
    x = images(7, 1, 32)
    first = s.score(x)
    assert sorted(s._steps) == [3, 4]
    again = s.score(x)
    torch.testing.assert_close(again.score, first.score, rtol=0, atol=0)
    direct = s.score(x, error_map=True)  # the error map's path is not replayed: the steps run as written
    torch.testing.assert_close(direct.score, first.score, rtol=0, atol=0)
    y = images(7, 1, 32, seed=5)
    torch.testing.assert_close(s.score(y).score, Screener.from_model(m, max_batch=4).score(y).score, rtol=0, atol=0)
    assert not torch.equal(s.score(y).score, first.score)


# ------------------------------------------------------------------------------------------------ bf16
@pytest.mark.skipif(not bf16_fast(), reason="no fast bf16 here (no AVX512-BF16/AMX, or restricted)")
def test_engine_bf16_close_to_fp32():
    m = make(32, 1, probes=4, width=16)
    x = images(8, 1, 32)
    with torch.no_grad():
        want = m.score(x)
    got = Screener.from_model(m, dtype="bf16", max_batch=8).score(x)
    # bf16 keeps 8 bits of mantissa: scores (means of squared errors) agree to a few percent (docs/performance.md)
    torch.testing.assert_close(got.score, want.score, rtol=0.05, atol=1e-4)
    # and rank images the same way up to near-ties
    assert torch.corrcoef(torch.stack([got.score, want.score]))[0, 1] > 0.98


# ------------------------------------------------------------------------------------------------ bad input
def test_engine_rejects_wrong_input_with_expected_shape():
    s = Screener.from_model(make(32, 1), max_batch=2)
    with pytest.raises(ValueError, match=r"expected a float tensor \[B, 1, 32, 32\]"):
        s.score(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 1, 32, 32\]"):
        s.score(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="dtype torch.uint8"):
        s.score(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))


def test_engine_rejects_bad_settings():
    m = make(32, 1)
    with pytest.raises(ValueError, match="fp16"):
        Screener.from_model(m, dtype="fp16")
    with pytest.raises(ValueError, match="dtype='int4'"):
        Screener.from_model(m, dtype="int4")
    with pytest.raises(ValueError, match="dtype=int8: this model has no int8 calibration"):
        Screener.from_model(m, dtype="int8")  # an fp32 model (skipgan quantize makes an int8 one)
    with pytest.raises(ValueError, match="max_batch=0"):
        Screener.from_model(m, max_batch=0)


def test_non_finite_input_gives_non_finite_score_for_that_image_only():
    m = make(32, 1)
    x = images(3, 1, 32)
    x[1, 0, 5, 5] = float("nan")
    s = Screener.from_model(m, max_batch=3).score(x).score
    assert torch.isfinite(s[0]) and not torch.isfinite(s[1]) and torch.isfinite(s[2])


def test_engine_threads_option_restores_torch_threads():
    before = torch.get_num_threads()
    Screener.from_model(make(32, 1), max_batch=2, threads=1).score(images(2, 1, 32))
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------------ the vendor path
def test_vendor_backend_asks_for_true_fp32_and_keeps_weights_channels_last(monkeypatch):
    """The CUDA path's contract, checked on the CPU: every convolution of the vendor backend is asked for true fp32
    (tf32=False, the op's own argument, whatever torch.backends.cudnn.allow_tf32 says), its weights are stored
    channels_last like its activations (cuDNN would reorder NCHW weights on every call), and "tf32", the explicit
    opt-in, is a CUDA precision."""
    asked = []
    op = torch.ops.skipgan.conv_bn_act_out

    def spy(*args):
        asked.append(args[12])
        return op(*args)

    monkeypatch.setattr(torch.ops.skipgan, "conv_bn_act_out", spy)
    m = make(32, 1, probes=2)
    s = Screener.from_model(m, max_batch=2, backend="vendor")
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w, _ in s._vendor_weights.values())
    got = s.score(images(2, 1, 32))
    assert asked and not any(asked)
    with torch.no_grad():
        assert_scores_close(got, m.score(images(2, 1, 32)))
    with pytest.raises(ValueError, match="tf32: TF32 is a CUDA precision"):
        Screener.from_model(m, max_batch=2, dtype="tf32", backend="vendor")


# ------------------------------------------------------------------------------------------------ CUDA
@CUDA
@pytest.mark.parametrize("dtype,rtol", [("fp32", 1e-4), ("tf32", 1e-2), ("fp16", 5e-2), ("bf16", 5e-2)])
def test_engine_cuda_matches_eager(dtype, rtol):
    """fp32 is true fp32 (the cuda fixture leaves cuDNN's global TF32 flag ON, so this checks the engine's own
    setting), tf32 the opt-in; a replayed CUDA graph gives the same numbers bit for bit (the fixture pins cuDNN
    deterministic: without it, algorithms with atomics may be picked for the transposed convolutions)."""
    m = make(32, 3, probes=2, margin=1, width=16)
    x = images(5, 3, 32)
    with torch.no_grad():
        want = m.score(x)
    s = Screener.from_model(m, device="cuda", dtype=dtype, max_batch=4)
    got = s.score(x.cuda())  # a full batch of 4 and a partial one of 1: two CUDA graphs
    torch.testing.assert_close(got.score.cpu(), want.score, rtol=rtol, atol=1e-4)
    assert set(s._graphs) == {4, 1}
    again = s.score(x.cuda())  # replayed graphs give the same numbers
    torch.testing.assert_close(again.score, got.score, rtol=0, atol=0)


def test_default_model_plan_uses_the_cheapest_exact_layer_forms():
    """isize 32: im2col GEMMs on the larger maps, per-pixel GEMMs where the zero border wastes 44 % of the taps
    (4x4 -> 2x2 and back), one dense matrix on the 1x1 maps; the last layer folds and mixes the probes."""
    kinds = lambda layers: [type(layer).__name__ for layer in layers]  # noqa: E731
    s = Screener.from_model(make(32, 1, probes=2), max_batch=32, plan="fixed")  # generator tiles of 64 images
    assert kinds(s.enc) == ["Im2colConv"] * 3 + ["PixelConv", "DenseConv"]
    assert kinds(s.dec) == ["Col2imConvT"] * 3 + ["PixelConvT", "DenseConv"]
    assert kinds(s.pyr) == ["Im2colConv"] * 3 and type(s.feat).__name__ == "DenseConv"
    small = Screener.from_model(make(32, 1, probes=2), max_batch=2, plan="fixed")  # skinny products: tap forms
    assert kinds(small.enc)[3] == "Im2colConv" and kinds(small.dec)[3] == "Col2imConvT"
    assert Screener.from_model(make(32, 1), max_batch=2, backend="vendor").backend == "vendor"
