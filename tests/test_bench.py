"""skipgan.bench (the side-by-side throughput suite) and the `skipgan bench` flags, on tiny configurations."""

import argparse
import inspect
import json
import sys

import pytest
import torch
from torch import nn

from skipgan import bench
from skipgan.cli.bench import add_bench_parser, bench_settings
from skipgan.errors import InputError

TINY = dict(ngf=8, ndf=8, nz=16)


def test_conv_macs_of_known_layers():
    # Conv2d 3->64, k4 s2 p1 on 32x32: a 16x16x64 output, each a dot product of length 3*4*4
    assert bench.conv_macs(nn.Conv2d(3, 64, 4, 2, 1, bias=False), (32, 32)) == 16 * 16 * 64 * 3 * 16
    # ConvTranspose2d 128->3, k4 s2 p1 from 16x16: each of 16*16*128 inputs meets 3*4*4 weights
    assert bench.conv_macs(nn.ConvTranspose2d(128, 3, 4, 2, 1), (16, 16)) == 16 * 16 * 128 * 3 * 16
    # the discriminator's feature conv: 4x4 -> 1x1
    assert bench.conv_macs(nn.Conv2d(256, 100, 4, 1, 0), (4, 4)) == 100 * 256 * 16


def test_flops_per_image_agrees_with_a_hook_count():
    model = bench.make_model(32, 1, probes=2, **TINY)
    counted = []

    def hook(m, inp, out):
        if isinstance(m, nn.ConvTranspose2d):
            counted.append(inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1])
        else:
            counted.append(out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.score(torch.zeros(1, 1, 32, 32))  # the whole batches: G on K=2 probes, D on [x; x_hat]
    for h in handles:
        h.remove()
    assert bench.flops_per_image(model) == 2 * sum(counted)
    assert bench.generator_macs(model) * 2 + bench.discriminator_macs(model) * 2 == sum(counted)


def test_make_model_probes_and_randomised_bn():
    m = bench.make_model(32, 1, probes=3, **TINY)
    assert not m.training and bench.num_probes(m) == 3
    bn = next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d))
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert bench.num_probes(bench.make_model(32, 1, probes=0, **TINY)) == 0
    assert bench.num_probes(bench.with_probes(m, 1)) == 1 and bench.num_probes(m) == 3


def test_int8_rows_are_checked_against_eager_and_compared_with_the_int8_peers():
    from skipgan.engine.cpu import int8_restriction

    if int8_restriction() is not None:
        pytest.skip(f"no fast int8 here: {int8_restriction()}")
    runtimes = ["eager", "onnxruntime_int8", "engine_int8"]
    rows = bench.run([(2, 32, 1)], runtimes=runtimes, min_time=0.05, threads=1, model_kwargs=TINY, rounds=1,
                     machine=dict(bw_mb=8, mm_n=128, min_time=0.02))
    engine = next(r for r in rows if r["runtime"] == "engine_int8")
    assert engine["status"] == "ok" and engine["precision"] == "int8", engine
    assert engine["max_rel_err"] <= bench.TOLERANCE["int8"]
    ort = next(r for r in rows if r["runtime"] == "onnxruntime_int8")
    assert ort["status"] == "ok" or ort["status"].startswith("unavailable: "), ort  # onnxruntime: the export extra
    from skipgan.bench.table import format_table

    assert "engine_int8 / best int8 peer" in format_table(rows)


def test_run_tiny_config_rows_and_table():
    runtimes = ["eager", "eager_channels_last", "engine_fp32"]
    rows = bench.run([(2, 32, 1)], runtimes=runtimes, min_time=0.05, threads=1, model_kwargs=TINY, rounds=2,
                     machine=dict(bw_mb=8, mm_n=128, min_time=0.02))
    assert [r["runtime"] for r in rows] == runtimes
    for r in rows:
        assert (r["batch"], r["isize"], r["K"]) == (2, 32, 1)
        if r["runtime"] == "engine_fp32" and r["status"].startswith("unavailable: "):
            continue  # the engine's native ops are not built here: reported, not raised
        assert r["status"] == "ok", r
        assert r["img_s"] > 0 and r["ms_per_batch"] > 0
        assert r["max_rel_err"] <= bench.TOLERANCE["fp32"]
    assert rows[0]["max_rel_err"] == 0.0  # eager is the reference
    assert rows[0]["machine"]["read_gb_s"] > 0 and rows[0]["bounds"]["flops_per_image"] > 0
    json.dumps(rows)  # the --json rows are plain data
    table = bench.format_table(rows)
    assert "eager_channels_last" in table and "engine_fp32 / best fp32 peer" in table and "GB/s" in table


def test_a_peer_that_fails_is_unavailable_and_a_wrong_one_flagged():
    model = bench.make_model(32, 1, probes=0, **TINY)
    x = bench.make_input(model, 2, torch.device("cpu"))
    ref = bench.reference_scores(model, x)

    def broken(model, x, dtype):
        raise RuntimeError("no such runtime here\nsecond line")

    b = bench.build_peer(bench.Peer("broken", "fp32", broken), model, x, ref)
    assert b.fn is None and b.status == "unavailable: RuntimeError: no such runtime here"
    off = bench.build_peer(bench.Peer("off", "fp32", lambda m, x, d: (lambda x: ref * 1.01)), model, x, ref)
    assert off.status.startswith("WRONG") and off.err == pytest.approx(0.01, rel=1e-3)
    rows = [dict(runtime=n, precision="fp32", batch=2, isize=32, K=0, img_s=v, ms_per_batch=1.0, max_rel_err=0,
                 status=s, note="") for n, v, s in [("eager", 10.0, "ok"), ("onnxruntime", 99.0, "WRONG (x)"),
                                                   ("engine_fp32", 20.0, "ok")]]
    assert "engine_fp32 / best fp32 peer: 2x (engine_fp32 20.0 vs eager 10.0" in bench.format_table(rows)


def parse(*argv):
    """`skipgan bench ARGV` as skipgan.cli.main does it: parse, then the command; InputError -> exit 2."""
    parser = argparse.ArgumentParser(prog="skipgan")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


@pytest.mark.parametrize("argv,flag", [
    (["--batch", "1,x"], "--batch"), (["--batch", "0"], "--batch"), (["--isize", "48"], "--isize 48"),
    (["--probes", "-1"], "--probes"), (["--runtimes", "eager,tensorrt"], "--runtimes"),
    (["--min-time", "soon"], "--min-time"), (["--min-time", "0"], "--min-time"), (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "--device"), (["--json", "/no/such/folder/x.json"], "--json"),
    (["--model", "/no/such/model.safetensors"], "/no/such/model.safetensors"),
])
def test_bad_flags_are_one_line_input_errors(argv, flag, capsys):
    a = parse(*argv)
    with pytest.raises(InputError) as e:
        a.func(a)
    msg = str(e.value)
    assert msg.startswith(flag) and "\n" not in msg
    assert capsys.readouterr().out == ""  # nothing ran


def mini_main(argv):
    """skipgan.cli.main's contract, for the bench parser alone: InputError -> one line on stderr, exit 2."""
    a = parse(*argv)
    try:
        return a.func(a)
    except InputError as e:
        print(f"skipgan: error: {e}", file=sys.stderr)
        return 2


def test_bad_flag_exits_2_with_one_line(capsys):
    assert mini_main(["--batch", "two"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("skipgan: error: --batch two:") and err.count("\n") == 1
    from skipgan import cli

    if "add_bench_parser" in inspect.getsource(cli.build_parser):  # once wired into skipgan.cli
        assert cli.main(["bench", "--batch", "two"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("skipgan: error: --batch two:") and err.count("\n") == 1


def test_good_flags_become_run_settings():
    kw = bench_settings(parse("--batch", "1,64,1", "--isize", "32", "--probes", "0,8", "--runtimes",
                              "eager,engine_bf16", "--min-time", "0.5", "--threads", "2"))
    assert [tuple(c) for c in kw["configs"]] == [(1, 32, 0), (64, 32, 0), (1, 32, 8), (64, 32, 8)]
    assert kw["runtimes"] == ["eager", "engine_bf16"] and kw["min_time"] == 0.5 and kw["threads"] == 2
    assert bench_settings(parse())["runtimes"] == list(bench.RUNTIMES)


def test_an_int8_model_file_is_benched_with_its_own_calibration(tmp_path, capsys):
    """`skipgan bench --model` of an int8 file: the float rows time its fp32 weights, engine_int8 its own int8
    grids (the file's, not new ones observed on the bench's input)."""
    from skipgan.engine.cpu import int8_restriction

    if int8_restriction() is not None:
        pytest.skip(f"no fast int8 here: {int8_restriction()}")
    try:
        from model_fixtures import make_int8
    except ImportError:
        from tests.model_fixtures import make_int8
    from skipgan.cli import main
    from skipgan.modelfile import save_model
    from skipgan.quant import calibrate

    path = tmp_path / "q.safetensors"
    save_model(path, make_int8(nc=1, probes=2), {"threshold": 0.5, "target_fpr": 0.05,
                                                 "val_stats": {"mean": 0.4, "std": 0.2, "n": 10}})
    observed = []
    real = calibrate.observe_input_ranges
    calibrate.observe_input_ranges = lambda *a, **k: observed.append(1) or real(*a, **k)
    try:
        out = tmp_path / "rows.json"
        assert main(["bench", "--model", str(path), "--batch", "2", "--probes", "2", "--runtimes",
                     "eager,engine_fp32,engine_int8", "--min-time", "0.05", "--rounds", "1", "--json", str(out)]) == 0
    finally:
        calibrate.observe_input_ranges = real
    rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    by = {r["runtime"]: r for r in rows}
    assert by["engine_int8"]["status"] == "ok" and by["engine_fp32"]["status"] == "ok", rows
    assert by["engine_int8"]["max_rel_err"] <= bench.TOLERANCE["int8"]
    assert not observed  # the file's own grids
