"""torchrun scale-out on CPU: 2 processes, gloo, tiny configurations (skipgan/distributed.py).

The end-to-end tests launch the real thing, `python -m torch.distributed.run --standalone --nproc_per_node 2 -m
skipgan.cli ...`, and kill ranks from outside (SIGKILL, found through /proc by their RANK). One uninterrupted
2-process run (module fixture) is the reference for every other run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skipgan.cli import build_parser, main
from skipgan.cli.train import check_same_run, train_command
from skipgan.data.datasets import load_splits
from skipgan.distributed import DIGESTS_ENV, Dist, is_communication_error, state_digest
from skipgan.errors import InputError
from skipgan.model import Architecture, score_in_batches
from skipgan.modelfile import load_model
from skipgan.train import Trainer, TrainConfig, calibrate, split_validation
from skipgan.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from skipgan.train.trainer import convert_sync_batchnorm, rank_generator, revert_sync_batchnorm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")

EPOCHS = 2
TRAIN = ["--epochs", str(EPOCHS), "--ngf", "4", "--ndf", "4", "--nz", "8", "--batch-size", "16",
         "--abnormal-class", "3", "--no-progress", "--device", "cpu", "--dist-timeout", "60"]
HANG_GUARD_S = 300  # a test that waits longer than this has found a hang


def torchrun(*args, nproc=2, restarts=0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "--max-restarts", str(restarts), *args]


def env_with(**kw) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **kw}


def launch(cmd, env, merge_stderr=False) -> subprocess.Popen:
    """Start `cmd` in a session of its own, so that a hung job can be stopped with all its workers."""
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)


def finish(p: subprocess.Popen) -> tuple[str, str]:
    """(stdout, stderr) once `p` has ended; a job still running after HANG_GUARD_S is killed and fails the test."""
    try:
        out, err = p.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"hung for {HANG_GUARD_S} s: {(out or '')[-2000:]}{(err or '')[-2000:]}")
    finally:
        if p.poll() is None:  # an assertion failed while it ran
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return out or "", err or ""


def run(cmd, env) -> subprocess.CompletedProcess:
    p = launch(cmd, env)
    out, err = finish(p)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def worker_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (a child of the launcher), or None if there is none (yet)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == launcher_pid and f"RANK={rank}".encode() in (d / "environ").read_bytes().split(b"\0"):
                return int(d.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def kill_rank_after_first_checkpoint(p: subprocess.Popen, out: Path, rank: int = 1) -> None:
    """Wait for the run's first checkpoint (epoch 1 complete: the ranks are now in epoch 2) and SIGKILL `rank`."""
    ckpt = out / CHECKPOINT_NAME
    while not ckpt.is_file():
        assert p.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.02)
    pid = worker_pid(p.pid, rank)
    assert pid is not None, f"no worker with RANK={rank}"
    os.kill(pid, signal.SIGKILL)


def digests(folder: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(run_dir / "model.safetensors")
    return model.state_dict()


# ------------------------------------------------------------------------------------------ the reference run
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-process training run: (run dir, digest dir, completed process)."""
    root = tmp_path_factory.mktemp("ddp")
    out, dig = root / "run", root / "digests"
    r = run(torchrun("-m", "skipgan.cli", "train", "--out", str(out), *TRAIN), env=env_with(**{DIGESTS_ENV: str(dig)}))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, dig, r


def test_training_finishes_rank0_alone_writes_and_talks(reference):
    out, _, r = reference
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["model.safetensors", "metrics.json", "checkpoint.safetensors", "roc.png", "pr.png",
                            "histogram.png", "examples.png"])  # one of each; no per-rank files, no temp files
    assert r.stdout.count(f"epoch 1/{EPOCHS}") == 1 and r.stdout.count("AUROC") == 1
    assert "2 processes (gloo), 16 images per process and step (global batch 32)" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["processes"] == 2 and 0.0 <= m["auroc"] <= 1.0
    _, meta = load_checkpoint(out)
    assert meta["epoch"] == EPOCHS and meta["world_size"] == 2
    assert all(np.isfinite(h[k]) for h in meta["history"] for k in ("g", "d", "con", "lat", "adv"))


def test_generator_and_discriminator_identical_on_both_ranks_after_every_epoch(reference):
    out, dig, _ = reference
    r0, r1 = digests(dig, 0), digests(dig, 1)
    assert [d["epoch"] for d in r0] == [d["epoch"] for d in r1] == list(range(1, EPOCHS + 1))
    for a, b in zip(r0, r1):
        assert (a["generator"], a["discriminator"]) == (b["generator"], b["discriminator"]), a["epoch"]
    assert r0[0]["generator"] != r0[1]["generator"]  # the digests do change: training happened
    model, _ = load_model(out / "model.safetensors")  # the model file holds the weights every rank had
    assert state_digest(model.generator) == r0[-1]["generator"]
    assert state_digest(model.discriminator) == r0[-1]["discriminator"]


def test_calibration_equals_single_process_on_the_same_validation_images(reference):
    out, _, _ = reference
    model, meta = load_model(out / "model.safetensors")
    cfg = TrainConfig.from_dict(meta["train"])
    splits = load_splits("digits", isize=32, abnormal_class=3, seed=cfg.seed)
    _, val = split_validation(splits.train, cfg.val_fraction, cfg.seed)
    s = score_in_batches(model, val)  # one process, every validation image, in order
    single = calibrate(model.lam * s.pixel + (1.0 - model.lam) * s.feature, cfg.target_fpr)
    gathered = json.loads((out / "metrics.json").read_text())["calibration"]
    assert gathered["val_stats"]["n"] == len(val)  # all of them once: no padding duplicates, none missing
    assert gathered["threshold"] == single["threshold"]
    assert gathered["val_stats"] == single["val_stats"]
    assert meta["calibration"]["threshold"] == single["threshold"]


# ------------------------------------------------------------------------------------------ failure and resume
def test_killed_rank_fails_the_job_keeps_the_checkpoint_and_resume_reaches_the_same_weights(reference, tmp_path):
    ref_out, ref_dig, _ = reference
    out = tmp_path / "run"
    p = launch(torchrun("-m", "skipgan.cli", "train", "--out", str(out), *TRAIN), env_with(), merge_stderr=True)
    try:
        kill_rank_after_first_checkpoint(p, out)
    finally:
        log, _ = finish(p)  # torchrun stops the other rank and gives up
    assert p.returncode != 0, log[-3000:]
    assert "exitcode  : -9" in log  # torchrun names the killed rank
    assert not (out / "model.safetensors").exists()
    # The last complete checkpoint is intact: it loads, and it holds exactly the reference run's epoch-1 state
    # (same seed, same world size: the same run, bit for bit).
    _, meta = load_checkpoint(out)
    assert meta["epoch"] == 1
    trainer = Trainer(Architecture(**meta["arch"]), TrainConfig.from_dict(meta["config"]), out_dir=out,
                      progress=False, log=lambda s: None)
    trainer.resume()
    ref1 = digests(ref_dig, 0)[0]
    assert state_digest(trainer.model.generator) == ref1["generator"]
    assert state_digest(trainer.model.discriminator) == ref1["discriminator"]
    # --resume under torchrun: every rank restores the checkpoint and the run ends where the reference ended.
    r = run(torchrun("-m", "skipgan.cli", "train", "--resume", str(out), "--no-progress", "--device", "cpu",
                     "--dist-timeout", "60"), env=env_with())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ref, got = final_state(ref_out), final_state(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ref_out, out))
    assert a["calibration"] == b["calibration"] and a["auroc"] == b["auroc"]


def test_max_restarts_with_auto_resume_recovers_from_a_killed_rank(reference, tmp_path):
    ref_out, _, _ = reference
    out = tmp_path / "run"
    p = launch(torchrun("-m", "skipgan.cli", "train", "--out", str(out), "--auto-resume", *TRAIN, restarts=1),
               env_with(), merge_stderr=True)
    try:
        kill_rank_after_first_checkpoint(p, out)
    finally:
        log, _ = finish(p)
    assert p.returncode == 0, log[-3000:]
    assert log.count("epoch 1/") == 1 and log.count(f"epoch {EPOCHS}/") == 1  # epoch 1 was not trained again
    ref, got = final_state(ref_out), final_state(out)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


# ------------------------------------------------------------------------------------------ scoring
def write_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (10 + i % 3, 12), dtype=np.uint8)
        paths.append(folder / f"im{i:02d}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def test_distributed_scoring_equals_single_process_line_for_line(reference, tmp_path, capsys):
    out, _, _ = reference
    model = str(out / "model.safetensors")
    paths = write_images(tmp_path / "imgs", 11)
    # A corrupt file in rank 1's share (batch 4: rank 0 scores images 0-3, rank 1 images 4-11).
    (tmp_path / "imgs" / "im09.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    # Line for line needs the same kernels in both runs: a measured plan depends on the threads a process has (one
    # process: all cores; under torchrun: a share), and another kernel rounds the last digit otherwise (the tuned
    # runs below agree to 1e-5). The fixed plan is the same everywhere.
    common = [model, str(tmp_path / "imgs"), "--device", "cpu", "--batch-size", "4", "--plan", "fixed"]
    strict = [*common, "--strict"]
    assert main(["score", *common]) == 1  # one process, stdout: the corrupt image's error line, exit 1
    single_stdout = capsys.readouterr().out
    assert main(["score", *common, "--out", str(tmp_path / "single.jsonl")]) == 1  # one process, --out
    tuned = [c for c in common if c not in ("--plan", "fixed")]
    assert main(["score", *tuned, "--out", str(tmp_path / "single_tuned.jsonl")]) == 1
    r = run(torchrun("-m", "skipgan.cli", "score", *tuned, "--out", str(tmp_path / "dist_tuned.jsonl")),
            env=env_with())
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    got, want = ([json.loads(line) for line in (tmp_path / f).read_text().splitlines()]
                 for f in ("dist_tuned.jsonl", "single_tuned.jsonl"))
    assert [g["path"] for g in got] == [w["path"] for w in want]
    for g, w in zip(got, want):
        if "error" in w:  # the corrupt image: the same error line
            assert g == w
            continue
        assert g["score"] == pytest.approx(w["score"], rel=1e-5) and g["verdict"] == w["verdict"]
    (tmp_path / "dist_tuned.jsonl").unlink()
    (tmp_path / "single_tuned.jsonl").unlink()
    r = run(torchrun("-m", "skipgan.cli", "score", *common, "--out", str(tmp_path / "dist.jsonl")), env=env_with())
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    single = (tmp_path / "single.jsonl").read_text()
    assert single == single_stdout
    assert (tmp_path / "dist.jsonl").read_text().splitlines() == single.splitlines()
    assert len(single.splitlines()) == len(paths)
    assert '"error"' in single.splitlines()[9] and "im09.png" in single.splitlines()[9]
    assert "scored 10 image(s)" in r.stderr and "1 could not be scored" in r.stderr and r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist.jsonl", "imgs", "single.jsonl"]  # no temp files
    # With --strict the corrupt image, met by rank 1 alone, ends the job: one line from rank 0, exit 2.
    r = run(torchrun("-m", "skipgan.cli", "score", *strict, "--out", str(tmp_path / "bad.jsonl")),
            env=env_with())
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("skipgan: error:")]
    assert len(errors) == 1 and "im09.png" in errors[0]
    assert "exitcode  : 2" in r.stderr
    assert not (tmp_path / "bad.jsonl").exists()


# ------------------------------------------------------------------------------------------ collectives
HELPER = textwrap.dedent("""
    import json, os, sys, time
    import torch
    from skipgan.distributed import PeerFailure, session

    out = sys.argv[1]
    with session(torch.device("cpu"), "auto", 3) as (d, _):
        res = {"rank": d.rank, "world": d.world_size, "backend": d.backend}
        # uneven and empty shares come back in order, without padding
        for n in (0, 1, 5):
            share = d.shard(n)
            rows = torch.arange(share.start, share.stop, dtype=torch.float64).repeat_interleave(2).view(-1, 2)
            res[f"gather{n}"] = d.all_gather_rows(rows)[:, 0].tolist()
        res["json"] = d.all_gather_json({"r": d.rank, "text": "é" * d.rank})
        res["mean"] = d.all_reduce_mean(torch.tensor([1.0, 2.0 + d.rank])).tolist()
        bn = torch.nn.BatchNorm1d(2)
        bn.running_mean.fill_(d.rank)
        d.average_buffers(bn)
        res["bn"] = bn.running_mean.tolist()
        # a rank that stops answering: rank 0's DDP backward times out (3 s) and becomes a PeerFailure
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(torch.nn.Linear(2, 1))
        if d.rank == 0:
            try:
                with d.guard("training"):
                    net(torch.ones(1, 2)).sum().backward()
                res["timeout"] = None
            except PeerFailure as e:
                res["timeout"] = str(e)
            open(os.path.join(out, "rank0.json"), "w").write(json.dumps(res))
            os._exit(0)  # the group is broken now; do not wait on it
        else:
            open(os.path.join(out, "rank1.json"), "w").write(json.dumps(res))
            while not os.path.exists(os.path.join(out, "rank0.json")):
                time.sleep(0.05)
            os._exit(0)
""")


def test_collectives_gather_in_order_and_time_out(tmp_path):
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    r = run(torchrun(str(script), str(tmp_path)), env=env_with())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    for x in res:
        assert (x["world"], x["backend"]) == (2, "gloo")
        assert x["gather0"] == [] and x["gather1"] == [0.0] and x["gather5"] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert x["json"] == [{"r": 0, "text": ""}, {"r": 1, "text": "é"}]
        assert x["mean"] == [1.0, 2.5] and x["bn"] == [0.5, 0.5]
    msg = res[0]["timeout"]
    assert msg and msg.startswith("rank 0 of 2: training failed") and "--dist-timeout 3 s" in msg


# ------------------------------------------------------------------------------------------ in-process units
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("n, unit", [(0, 1), (1, 1), (7, 1), (100, 1), (11, 4), (3, 4), (130, 64)])
def test_shards_cover_in_order_in_whole_units(world, n, unit):
    shares = [Dist(rank=r, world_size=world).shard(n, unit) for r in range(world)]
    assert [i for s in shares for i in s] == list(range(n))
    for s in shares:
        assert s.start % unit == 0 and (s.stop % unit == 0 or s.stop == n)
    blocks = [-(-len(s) // unit) for s in shares]
    assert max(blocks) - min(blocks) <= 1


def test_rank_generators_are_deterministic_and_distinct():
    draw = lambda *k: torch.randn(4, generator=rank_generator(*k))  # noqa: E731
    assert torch.equal(draw(0, 1, 0), draw(0, 1, 0))
    others = [draw(0, 1, 1), draw(0, 2, 0), draw(1, 1, 0)]
    assert not any(torch.equal(draw(0, 1, 0), o) for o in others)


def test_sync_batchnorm_conversion_round_trips():
    tr = Trainer(Architecture(32, 1, 4, 4, 8), TrainConfig(epochs=1), progress=False, log=lambda s: None)
    model = tr.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    params = {id(p) for p in model.parameters()}
    convert_sync_batchnorm(model)
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()) == n_bn > 0
    assert {id(p) for p in model.parameters()} == params  # the optimizers keep working on the same parameters
    revert_sync_batchnorm(model)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert {id(p) for p in model.parameters()} == params
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_sync_bn_is_refused_on_cpu_under_torchrun(tmp_path):
    with pytest.raises(ValueError, match="^sync_bn=True: .*CUDA"):
        Trainer(Architecture(32, 1, 4, 4, 8), TrainConfig(sync_bn=True), dist=Dist(rank=0, world_size=2))
    a = build_parser().parse_args(["train", "--sync-bn", "--out", str(tmp_path), "--device", "cpu"])
    with pytest.raises(InputError, match="^--sync-bn: "):
        train_command(a, Dist(rank=0, world_size=2), torch.device("cpu"))
    Trainer(Architecture(32, 1, 4, 4, 8), TrainConfig(sync_bn=True), progress=False)  # one process: plain BN


@pytest.mark.parametrize("argv, flag", [
    (["train", "--dist-timeout", "0"], "--dist-timeout 0"),
    (["train", "--dist-timeout", "inf"], "--dist-timeout inf"),
    (["train", "--dist-backend", "nccl", "--device", "cpu"], "--dist-backend nccl"),
    (["score", "m.safetensors", "x", "--dist-timeout", "-1"], "--dist-timeout -1"),
    (["train", "--auto-resume", "--resume", "runs/x"], "--auto-resume"),
])
def test_bad_torchrun_flags_are_one_line_errors(argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + (["--device", "cpu"] if "--device" not in argv else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"skipgan: error: {flag}")


def test_score_out_must_not_be_a_folder(tmp_path, capsys):
    assert main(["score", "m.safetensors", str(tmp_path), "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.startswith(f"skipgan: error: --out {tmp_path}: is a folder")


def test_auto_resume_refuses_a_checkpoint_of_another_run():
    cfg, info = TrainConfig(epochs=3), {"data": "digits", "isize": 32}
    check_same_run("runs/x", (cfg, info), (TrainConfig(epochs=3), dict(info)))  # the same run: fine
    with pytest.raises(InputError, match=r"^--auto-resume: runs/x holds a checkpoint of another run "
                                         r"\(--epochs 5 \(given: 3\)\)"):
        check_same_run("runs/x", (cfg, info), (TrainConfig(epochs=5), dict(info)))


def test_communication_errors_are_recognised():
    assert is_communication_error(RuntimeError("[third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection "
                                               "closed by peer"))
    assert is_communication_error(RuntimeError("NCCL error in: ... unhandled system error"))
    assert not is_communication_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
