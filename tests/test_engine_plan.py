"""The engine's layer plan (skipgan/engine/plan.py): measured once per machine, cached under a key of everything that
can change the answer, and every plan scores the same."""

import json
import os
import pytest
import torch
import torch.nn.functional as F

from skipgan import ops
from skipgan.engine import Screener
from skipgan.engine import plan as P
from skipgan.engine.cpu import bf16_fast, bf16_restriction
from skipgan.engine.layers import candidate_forms, form_kernels, make_layer

try:
    from model_fixtures import images, make
except ImportError:  # run from the repository root as a package
    from tests.model_fixtures import images, make

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="skipgan op library not built")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(P.PLAN_ENV, raising=False)
    return tmp_path


def test_tuned_plan_is_measured_then_read_from_the_cache(cache, monkeypatch):
    m = make(32, 1, probes=2, width=8)
    first = Screener.from_model(m, max_batch=4)
    assert first.plan.source == "measured" and first.plan.mode == "tuned"
    assert set(first.plan.choices) == {"enc0", "enc1", "enc2", "enc3", "enc4", "dec0", "dec1", "dec2", "dec3",
                                       "dec4", "pyr0", "pyr1", "pyr2", "feat"}
    files = list(cache.glob("plan-*.json"))
    assert len(files) == 1 and first.plan.path == str(files[0])
    stored = json.loads(files[0].read_text())
    assert stored["timings_ms"] and stored["key"]["dtype"] == "float32"

    def no_timing(*a, **k):
        raise AssertionError("a cached plan must not be measured again")

    monkeypatch.setattr(P, "tune", no_timing)
    second = Screener.from_model(m, max_batch=4)
    assert second.plan.source == "cache" and second.plan.choices == first.plan.choices
    assert second.plan.seconds == 0


def test_retune_measures_again_and_rewrites_the_cache(cache, monkeypatch):
    """A plan measured while another job loaded the machine would stay cached: --plan retune replaces it."""
    m = make(32, 1, probes=2, width=8)
    first = Screener.from_model(m, max_batch=4)
    path = cache / next(cache.glob("plan-*.json")).name
    stored = json.loads(path.read_text())
    stored["choices"] = {k: ["taps", "mm" if "mm" in form_kernels("taps", torch.float32, "cpu") else
                             form_kernels("taps", torch.float32, "cpu")[0]] for k in stored["choices"]}
    path.write_text(json.dumps(stored))  # what a busy machine might have cached
    assert Screener.from_model(m, max_batch=4).plan.source == "cache"
    again = Screener.from_model(m, max_batch=4, plan="retune")
    assert again.plan.source == "measured"
    assert json.loads(path.read_text())["choices"] == {k: list(v) for k, v in again.plan.choices.items()}
    monkeypatch.setenv("SKIPGAN_PLAN", "retune")
    assert Screener.from_model(m, max_batch=4).plan.source == "measured"
    assert first.plan.choices.keys() == again.plan.choices.keys()


def test_cache_key_covers_what_changes_the_answer(cache, monkeypatch):
    m = make(32, 1, probes=2, width=8)
    specs = Screener.from_model(m, max_batch=4, plan="fixed")._specs
    cpu = torch.device("cpu")
    base = P.plan_key(specs, torch.float32, cpu, 2)
    assert P.plan_key(specs, torch.float32, cpu, 2) == base  # stable
    for k in ("cpu", "cpu_flags", "arch", "torch", "aten_capability", "isa_env", "dtype", "threads", "layers"):
        assert k in base
    others = [P.plan_key(specs, torch.bfloat16, cpu, 2), P.plan_key(specs, torch.float32, cpu, 1),
              P.plan_key(specs[:-1], torch.float32, cpu, 2),
              P.plan_key(Screener.from_model(m, max_batch=8, plan="fixed")._specs, torch.float32, cpu, 2)]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41" if os.environ.get("ONEDNN_MAX_CPU_ISA") != "SSE41" else "AVX")
    others.append(P.plan_key(specs, torch.float32, cpu, 2))
    paths = {P.cache_path(k) for k in others} | {P.cache_path(base)}
    assert len(paths) == len(others) + 1  # each change is another file


@pytest.mark.parametrize("damage", ["other_key", "not_json", "unknown_form", "missing_layer"])
def test_a_stale_or_damaged_cache_is_ignored_and_replaced(cache, damage):
    m = make(32, 1, probes=0, width=8)
    first = Screener.from_model(m, max_batch=2)
    path = P.cache_path(P.plan_key(first._specs, torch.float32, torch.device("cpu"), torch.get_num_threads()))
    data = json.loads(path.read_text())
    if damage == "other_key":  # e.g. written by another torch under a colliding name
        data["key"]["torch"] = "0.0"
    elif damage == "unknown_form":
        data["choices"]["enc0"] = ["winograd", "onednn"]
    elif damage == "missing_layer":
        del data["choices"]["feat"]
    path.write_text("{not json" if damage == "not_json" else json.dumps(data))
    again = Screener.from_model(m, max_batch=2)
    assert again.plan.source == "measured"
    assert json.loads(path.read_text())["key"]["torch"] == torch.__version__  # rewritten, valid again


def test_every_forced_choice_scores_as_the_tuned_and_fixed_plans(cache):
    """Each layer's every candidate (form x kernel), forced in turn, gives the tuned plan's scores (fp32: 1e-5)."""
    m = make(32, 2, probes=3, width=8)
    x = images(5, 2, 32)
    tuned = Screener.from_model(m, max_batch=5)
    want = tuned.score(x)
    fixed = Screener.from_model(m, max_batch=5, plan="fixed").score(x)
    torch.testing.assert_close(fixed.score, want.score, rtol=1e-5, atol=0)
    for spec in tuned._specs:
        for form in candidate_forms(spec.layer, spec.size, spec.fold):
            for kernel in form_kernels(form, torch.float32, "cpu"):
                forced = dict(tuned.plan.choices, **{spec.name: (form, kernel)})
                s = Screener.from_model(m, max_batch=5, plan=forced)
                assert s.plan.source == "forced" and s.plan.choices[spec.name] == (form, kernel)
                got = s.score(x)
                torch.testing.assert_close(got.score, want.score, rtol=1e-5, atol=0, msg=f"{spec.name} {form}/{kernel}")
                torch.testing.assert_close(got.feature, want.feature, rtol=1e-5, atol=1e-9)


def test_a_forced_plan_that_does_not_fit_is_a_clear_error(cache):
    m = make(32, 1, width=8)
    with pytest.raises(ValueError, match="forced plan names every layer"):
        Screener.from_model(m, max_batch=2, plan={"enc0": ("taps", "onednn")})


def test_tuning_stays_within_its_budget_and_keeps_the_fixed_choice_past_it(cache):
    """A fake clock that advances 1 s per reading: the budget stops the timing, the rest keeps the fixed rules."""
    m = make(32, 1, probes=0, width=8)
    specs = Screener.from_model(m, max_batch=4, plan="fixed")._specs
    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    plan, built = P.tune(specs, torch.float32, torch.device("cpu"), budget=12.0, clock=clock)
    assert plan.untimed and len(plan.timings_ms) < len(specs)
    # the budget is checked before every candidate: past it, at most the one candidate under way (its timed calls
    # read the clock twice each, the warm-up included) and the closing reading
    assert plan.seconds <= 12.0 + 2 * (P.REPEATS + 1) + 2
    fixed = Screener.from_model(m, max_batch=4, plan="fixed").plan.choices
    for name in plan.untimed:
        assert plan.choices[name] == fixed[name]
    assert set(plan.choices) == {s.name for s in specs}


def test_budget_grows_with_the_image_size():
    assert P.budget_for(32) == 2.0 and P.budget_for(128) == 10.0 and P.budget_for(16) == 2.0
    assert P.budget_for(256) > P.budget_for(128)


def test_plan_selection_and_bad_values(cache, monkeypatch):
    m = make(32, 1, width=8)
    monkeypatch.setenv(P.PLAN_ENV, "fixed")
    assert Screener.from_model(m, max_batch=2).plan.source == "fixed"
    assert Screener.from_model(m, max_batch=2, plan="tuned").plan.mode == "tuned"  # the argument wins
    monkeypatch.setenv(P.PLAN_ENV, "fastest")
    with pytest.raises(ValueError, match="SKIPGAN_PLAN='fastest'"):
        Screener.from_model(m, max_batch=2)
    with pytest.raises(ValueError, match="plan='best'"):
        Screener.from_model(m, max_batch=2, plan="best")


def test_an_unwritable_cache_still_gives_a_measured_plan(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(P.CACHE_ENV, str(blocker / "plans"))  # a folder under a file: cannot be made
    s = Screener.from_model(make(32, 1, width=8), max_batch=2)
    assert s.plan.source == "measured" and s.plan.path is None


def test_score_verbose_prints_the_plan_and_plan_flag(tmp_path, cache, capsys):
    """`skipgan score -v` names the plan on stderr; `--plan fixed` is taken."""
    from data_fixtures import gray8, write_png
    from skipgan.cli import main
    from skipgan.modelfile import save_model

    save_model(tmp_path / "m.safetensors", make(32, 1, probes=2, width=8), {"threshold": 1.0, "val_stats": {"mean": 0.0, "std": 1.0}})
    for i in range(3):
        write_png(tmp_path / "imgs" / f"{i}.png", gray8(32, 32, seed=i))
    for flag, want in (([], "plan tuned"), (["--plan", "fixed"], "plan fixed, fixed rules")):
        assert main(["score", str(tmp_path / "m.safetensors"), str(tmp_path / "imgs"), "--device", "cpu", "-v",
                     *flag]) == 0
        err = capsys.readouterr().err
        assert want in err and "enc0=" in err


@pytest.mark.parametrize("transposed,size,c_in,c_out,stride,padding", [
    (False, 2, 3, 5, 2, 1), (False, 4, 2, 3, 2, 1), (False, 4, 3, 2, 1, 0), (True, 1, 3, 4, 2, 1), (True, 2, 2, 3, 2, 1),
    (True, 2, 3, 2, 1, 0)])
def test_dense_matrix_is_the_layers_response_to_the_unit_basis(transposed, size, c_in, c_out, stride, padding):
    """The dense form's matrix, placed tap by tap, is the layer applied to every unit input (its definition)."""
    from skipgan.engine.fold import FoldedConv
    from skipgan.engine.layers import dense_matrix

    g = torch.Generator().manual_seed(0)
    shape = (c_in, c_out, 4, 4) if transposed else (c_out, c_in, 4, 4)
    layer = FoldedConv(torch.randn(shape, generator=g), None, stride, padding, transposed)
    d = size * size * c_in
    basis = torch.eye(d).view(d, size, size, c_in).permute(0, 3, 1, 2)
    conv = F.conv_transpose2d if transposed else F.conv2d
    want = conv(basis, layer.weight, stride=stride, padding=padding).permute(0, 2, 3, 1).reshape(d, -1)
    torch.testing.assert_close(dense_matrix(layer, size), want, rtol=0, atol=0)


def test_bf16_is_refused_where_onednn_is_restricted_below_its_bf16_instructions(monkeypatch):
    from skipgan.engine.cpu import bf16_restriction

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert "restricted to AVX2" in bf16_restriction()
    with pytest.raises(ValueError, match="dtype=bf16: oneDNN is restricted to AVX2 .*use fp32"):
        Screener.from_model(make(32, 1, width=8), dtype="bf16", max_batch=2)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert bf16_restriction() is None
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert "neither AVX512-BF16 nor AMX" in bf16_restriction()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not in this torch build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_plan_of_direct_convolutions_scores_as_the_fixed_plan(cache, dtype):
    """Every layer that can (all but the folding last one) on oneDNN's direct convolution, at once."""
    if dtype == torch.bfloat16 and not bf16_fast():
        pytest.skip(f"no fast bf16: {bf16_restriction()}")
    m = make(64, 3, probes=2, width=8)
    x = images(3, 3, 64)
    fixed = Screener.from_model(m, max_batch=3, plan="fixed", dtype=dtype)
    forced = {s.name: ("conv", "onednn") if "conv" in candidate_forms(s.layer, s.size, s.fold) else c
              for s, c in zip(fixed._specs, fixed.plan.choices.values())}
    assert sum(c[0] == "conv" for c in forced.values()) == len(forced) - 1
    got = Screener.from_model(m, max_batch=3, plan=forced, dtype=dtype).score(x[:2])  # a partial batch too
    want = fixed.score(x[:2])
    tol = dict(rtol=1e-5, atol=0) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(got.score, want.score, **tol)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not in this torch build")
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("size, batch", [(8, 1), (6, 3)])
def test_direct_conv_layer_equals_the_convolution(transposed, size, batch):
    """The direct form of one layer (shift and LeakyReLU through the native epilogue) against F.conv2d /
    F.conv_transpose2d; odd channel counts, batch 1, a partial batch."""
    from skipgan.engine.fold import FoldedConv
    torch.manual_seed(0)
    c_in, c_out = 5, 7
    w = torch.randn(c_in, c_out, 4, 4) if transposed else torch.randn(c_out, c_in, 4, 4)
    fc = FoldedConv(weight=w, shift=torch.randn(c_out), stride=2, padding=1, transposed=transposed)
    layer = make_layer(fc, size, batch + 1, torch.float32, "cpu", "conv", "onednn")
    x = torch.randn(batch, c_in, size, size)
    ref = (F.conv_transpose2d(x, w, fc.shift, 2, 1) if transposed else F.conv2d(x, w, fc.shift, 2, 1))
    ref = F.leaky_relu(ref, 0.2)
    b = 0 if transposed else 1
    src = torch.zeros(batch, size + 2 * b, size + 2 * b, c_in)
    src[:, b:b + size, b:b + size] = x.permute(0, 2, 3, 1)
    o = fc.out_size(size)
    out = torch.empty(batch, o, o, c_out).permute(0, 3, 1, 2)
    layer(src, torch.empty(1), torch.empty(1), ops.ACTIVATIONS["leaky_relu"], 0.2, out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
