"""`skipgan` end to end on a tiny configuration, and every bad input → one line, exit code 2."""

import dataclasses
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skipgan.cli import build_parser, main
from skipgan.cli.flags import settings_from_args
from skipgan.model import Architecture
from skipgan.train import TrainConfig

TINY = ["--epochs", "1", "--ngf", "4", "--ndf", "4", "--nz", "8", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--abnormal-class", "3", "--out", str(out), *TINY]) == 0
    return out


def write_png(path, value, size=8):
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def test_train_writes_model_metrics_and_plots(trained, capsys):
    names = {p.name for p in trained.iterdir()}
    assert {"model.safetensors", "metrics.json", "roc.png", "pr.png", "histogram.png", "examples.png",
            "checkpoint.safetensors"} <= names
    assert not [n for n in names if ".tmp" in n]
    m = json.loads((trained / "metrics.json").read_text())
    assert 0.0 <= m["auroc"] <= 1.0
    assert m["abnormal_class"] == 3 and m["n_abnormal"] == 183
    assert {"average_precision", "f1_max", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "confusion_matrix",
            "auroc_pixel", "auroc_feature", "calibration"} <= set(m)
    assert m["calibration"]["target_fpr"] == 0.01


def test_evaluate_reproduces_train_metrics(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained / "model.safetensors"), "--out", str(tmp_path), "--device", "cpu"]) == 0
    a = json.loads((trained / "metrics.json").read_text())
    b = json.loads((tmp_path / "metrics.json").read_text())
    assert a["auroc"] == b["auroc"] and a["confusion_matrix"] == b["confusion_matrix"]
    assert "AUROC" in capsys.readouterr().out


def test_score_prints_one_json_line_per_image(trained, tmp_path, capsys):
    write_png(tmp_path / "a.png", 0)
    write_png(tmp_path / "b.png", 255)
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["score", str(trained / "model.safetensors"), str(tmp_path), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"].rsplit("/", 1)[1] for line in lines] == ["a.png", "b.png"]
    for line in lines:
        # a flagged image's line also says where (regions of its map; tests/test_anomaly_maps.py)
        assert set(line) - {"regions"} == {"path", "score", "normalised_score", "verdict"}
        assert ("regions" in line) == (line["verdict"] == "abnormal")
        assert line["verdict"] in ("normal", "abnormal")


def test_score_corrupt_image_is_an_error_line_and_the_rest_is_scored(trained, tmp_path, capsys):
    """The scanner's contract: the bad image's line says why, the others are scored, exit 1; --strict stops."""
    write_png(tmp_path / "a_good.png", 10)
    (tmp_path / "b_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_png(tmp_path / "c_good.png", 11)
    model = str(trained / "model.safetensors")
    assert main(["score", model, str(tmp_path), "--device", "cpu"]) == 1
    cap = capsys.readouterr()
    lines = [json.loads(line) for line in cap.out.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["a_good.png", "b_bad.png", "c_good.png"]
    assert set(lines[1]) == {"path", "error"} and "cannot decode" in lines[1]["error"]
    assert "score" in lines[0] and "score" in lines[2]
    assert "Traceback" not in cap.err and "1 could not be scored" in cap.err
    assert main(["score", model, str(tmp_path), "--device", "cpu", "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b_bad.png" in err
    # --skip-bad, the old way to go on, still parses (the default does it now)
    assert main(["score", model, str(tmp_path), "--device", "cpu", "--skip-bad"]) == 1


def test_resume_finished_run_is_a_no_op_retrain(trained, capsys):
    before = json.loads((trained / "metrics.json").read_text())
    assert main(["train", "--resume", str(trained), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((trained / "metrics.json").read_text())["auroc"] == before["auroc"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--isize", "48", *TINY], "--isize 48: must be a power of two from 32 to 512 (32, 64, 128, 256 or 512)"),
        (["train", "--isize", "16", *TINY], "--isize 16: must be a power of two"),
        (["train", "--channels", "-1", *TINY], "--channels -1: must be a positive integer"),
        (["train", "--channels", "0", *TINY], "--channels must be a positive integer"),
        (["train", *TINY, "--ngf", "0"], "--ngf 0: must be a positive integer"),
        (["train", *TINY, "--epochs", "0"], "--epochs 0: must be at least 1"),
        (["train", "--val-fraction", "1", *TINY], "--val-fraction 1.0: must be in (0, 1)"),
        (["train", "--lam", "2", *TINY], "--lam 2"),
        (["train", "--target-fpr", "1.5", *TINY], "--target-fpr 1.5"),
        (["train", "--batch-size", "1", *TINY], "--batch-size 1"),
        (["train", "--data", "imagenet:/x", *TINY], "imagenet"),
        (["train", "--data", "folder:/no/such/dir", *TINY], "/no/such/dir"),
        (["train", "--resume", "/no/such/run", *TINY], "/no/such/run"),
        (["evaluate", "/no/model.safetensors"], "/no/model.safetensors"),
        (["score", "/no/model.safetensors", "x.png"], "/no/model.safetensors"),
        (["score", "/no/model.safetensors", "x.png", "--max-pixels", "0"], "--max-pixels 0: must be at least 1"),
        (["score", "/no/model.safetensors", "x.png", "--max-bytes", "-5"], "--max-bytes -5: must be at least 1"),
        (["train", *TINY, "--device", "tpu"], "--device tpu"),
        (["train", "--score-margin", "8", *TINY], "--score-margin 8: must be in [0, 8)"),
        (["train", "--noise-std", "0", "--score-draws", "4", *TINY], "--score-draws 4: must be 0 unless noise_std > 0"),
        (["train", "--mask-block", "5", *TINY], "--mask-block 5: must be 0 or a divisor of isize 32"),
        (["train", "--mask-block", "16", "--mask-groups", "5", *TINY], "--mask-groups 5: must be from 2 to"),
        (["train", "--noise-std", "-1", *TINY], "--noise-std -1"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys, tmp_path):
    argv = [a if a != "*OUT*" else str(tmp_path) for a in argv] + (["--out", str(tmp_path / "o")]
                                                                    if argv[0] == "train" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("skipgan: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_unreadable_model_file(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    assert main(["score", str(bad), str(bad)]) == 2
    assert f"{bad}: not a readable model file" in capsys.readouterr().err


def test_console_script_entry_point_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "skipgan.cli", "evaluate", str(tmp_path / "none.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("skipgan: error:")


# ---- the train flags are derived from the settings' declarations (TrainConfig, Architecture) -----------------
def parse_train(*argv):
    return build_parser().parse_args(["train", *argv])


def test_every_setting_is_a_flag_with_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    for cls in (TrainConfig, Architecture):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                flag = "--" + f.name.replace("_", "-")
                # a switch that defaults to on also has its --no- form (argparse.BooleanOptionalAction)
                on = f.default is True
                assert flags[f.name].option_strings == [flag] + (["--no-" + flag[2:]] if on else []), f.name
                assert flags[f.name].default == f.default and flags[f.name].help, f.name
            else:
                assert f.name not in flags
    assert {f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("cli", True)} == {"beta1", "beta2"}
    assert flags["amp"].choices == ("none", "bf16", "fp16") and flags["select"].choices == ("last", "val")
    assert flags["channels"].default is None  # Architecture.nc: the data's channel count unless forced


def test_defaults_and_flags_build_the_settings():
    a = parse_train()
    assert settings_from_args(TrainConfig, a) == TrainConfig()
    assert settings_from_args(Architecture, a, nc=3) == Architecture()
    a = parse_train("--epochs", "3", "--batch-size", "16", "--lr", "1e-3", "--w-adv", "2", "--w-con", "40",
                    "--w-lat", "3", "--lam", "0.5", "--val-fraction", "0.2", "--target-fpr", "0.05", "--seed", "7",
                    "--amp", "bf16", "--channels-last", "--noise-std", "0", "--score-draws", "0", "--mask-block", "8",
                    "--mask-groups", "2", "--score-margin", "1", "--balance-lam", "--select", "val",
                    "--isize", "64", "--ngf", "8", "--ndf", "16", "--nz", "10", "--channels", "2")
    assert settings_from_args(TrainConfig, a) == TrainConfig(
        epochs=3, batch_size=16, lr=1e-3, w_adv=2.0, w_con=40.0, w_lat=3.0, lam=0.5, val_fraction=0.2,
        target_fpr=0.05, seed=7, amp="bf16", channels_last=True, noise_std=0.0, score_draws=0, mask_block=8,
        mask_groups=2, score_margin=1, balance_lam=True, select="val")
    assert settings_from_args(Architecture, a, nc=a.channels) == Architecture(isize=64, nc=2, ngf=8, ndf=16, nz=10)


def test_bad_choice_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as ei:
        parse_train("--amp", "fp8")
    assert ei.value.code == 2 and "--amp" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the engine
def score_lines(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, [json.loads(line) for line in cap.out.splitlines()], cap.err


def test_score_engine_equals_eager(trained, tmp_path, capsys):
    for i, v in enumerate((0, 40, 128, 200, 255)):
        write_png(tmp_path / f"{i}.png", v, size=20)
    model = str(trained / "model.safetensors")
    code, fused, err = score_lines(["score", model, str(tmp_path), "--device", "cpu", "--batch-size", "2"], capsys)
    assert code == 0 and "images/s" in err and "engine fused" in err
    code, eager, _ = score_lines(["score", model, str(tmp_path), "--device", "cpu", "--engine", "eager"], capsys)
    assert code == 0 and [a["path"] for a in fused] == [b["path"] for b in eager]
    assert np.allclose([a["score"] for a in fused], [b["score"] for b in eager], rtol=1e-4, atol=1e-7)
    # the speed knobs run and still give one line per image
    for extra in (["--probes", "0"], ["--probes", "1", "--threads", "1"], ["--workers", "1"]):
        code, lines, _ = score_lines(["score", model, str(tmp_path), "--device", "cpu", *extra], capsys)
        assert code == 0 and len(lines) == 5


def test_evaluate_engine_and_eager_agree(trained, tmp_path, capsys):
    model = str(trained / "model.safetensors")
    assert main(["evaluate", model, "--out", str(tmp_path / "f"), "--device", "cpu"]) == 0
    assert main(["evaluate", model, "--out", str(tmp_path / "e"), "--device", "cpu", "--engine", "eager"]) == 0
    f, e = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "fe")
    assert f["engine"] == "fused" and e["engine"] == "eager"
    assert abs(f["auroc"] - e["auroc"]) < 1e-3 and (tmp_path / "f" / "examples.png").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--probes", "99"], "--probes 99: must be from 0 to the model's"),
    (["--dtype", "fp16"], "--dtype fp16: not supported on CPU"),
    (["--dtype", "tf32"], "--dtype tf32: TF32 is a CUDA precision"),
    (["--dtype", "tf32", "--engine", "eager"], "--dtype tf32: a precision of the fused engine"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--workers", "0"], "--workers 0: must be at least 1"),
])
def test_score_bad_engine_flags(trained, tmp_path, capsys, flags, needle):
    write_png(tmp_path / "a.png", 3)
    assert main(["score", str(trained / "model.safetensors"), str(tmp_path), "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_score_non_finite_is_an_error_line_never_normal(trained, tmp_path, capsys, monkeypatch):
    import torch

    from skipgan.cli import score as score_command
    from skipgan.scoring import Scores

    def broken(model, a, max_batch):  # a scorer whose second image overflows
        def score(x, error_map=False, reconstruction=False):
            s = torch.zeros(x.shape[0])
            s[1] = float("inf")
            maps = torch.zeros(x.shape[0], *x.shape[2:]) if error_map else None  # regions read the map
            return Scores(s, s.clone(), s.clone(), error_map=maps)
        return score

    monkeypatch.setattr(score_command, "make_scorer", broken)
    for i in range(3):
        write_png(tmp_path / f"{i}.png", i)
    code, lines, err = score_lines(["score", str(trained / "model.safetensors"), str(tmp_path), "--device", "cpu"],
                                   capsys)
    assert code == 1 and "1 could not be scored" in err
    assert "error" in lines[1] and "verdict" not in lines[1] and lines[1]["path"].endswith("1.png")
    assert lines[0]["verdict"] == lines[2]["verdict"] == "normal"
