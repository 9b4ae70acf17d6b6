"""Progress a person can read: a bar on a terminal, one plain line per epoch in a file or a pipe (no flag)."""

import io

import torch

from skipgan.model import Architecture
from skipgan.progress import EVERY_S, is_terminal, log_line, track
from skipgan.train import Trainer, TrainConfig


class Terminal(io.StringIO):
    def isatty(self):
        return True


def epochs_with_progress(stream, epochs=3, batches=40, **kw):
    """A tiny training-like loop: a progress display per epoch, then the caller's one line per epoch."""
    for e in range(1, epochs + 1):
        bar = track(range(batches), f"epoch {e}/{epochs}", stream=stream, **kw)
        for i in bar:
            bar.set_postfix({"g": f"{i / 3:.3g}"})
        bar.close()
        print(f"epoch {e}/{epochs}  G 0.5", file=stream)


def test_not_a_terminal_one_plain_line_per_epoch():
    log = io.StringIO()  # like `> log 2>&1`: isatty() is False
    assert not is_terminal(log)
    epochs_with_progress(log)
    text = log.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [f"epoch {e}/3  G 0.5" for e in (1, 2, 3)]


def test_not_a_terminal_a_long_loop_writes_plain_lines_now_and_then():
    log = io.StringIO()
    epochs_with_progress(log, epochs=1, batches=3, every=0.0)  # every 0 s: a line after every step
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines == ["epoch 1/1: 1/3 after 0 s, g 0", "epoch 1/1: 2/3 after 0 s, g 0.333",
                     "epoch 1/1: 3/3 after 0 s, g 0.667", "epoch 1/1  G 0.5"]
    assert EVERY_S >= 10  # a real log gets a line per long stretch, not per step


def test_a_terminal_keeps_the_bar():
    tty = Terminal()
    epochs_with_progress(tty, epochs=1)
    assert "\r" in tty.getvalue() and "epoch 1/1" in tty.getvalue()


def test_disabled_writes_nothing_anywhere():
    for stream in (io.StringIO(), Terminal()):
        bar = track(range(5), "epoch 1/1", stream=stream, enabled=False, every=0.0)
        assert list(bar) == [0, 1, 2, 3, 4]
        assert stream.getvalue() == ""


def test_log_line_prints_and_flushes(capsys):
    log_line("epoch 1/1")
    assert capsys.readouterr().out == "epoch 1/1\n"


def test_training_with_stderr_not_a_terminal_logs_one_line_per_epoch(capsys):
    """Trainer with progress on (the CLI's default) and stdout/stderr captured (not terminals, as in
    `skipgan train > log 2>&1`): no carriage return, and one line per epoch."""
    cfg = TrainConfig(epochs=3, batch_size=4, seed=0)
    images = torch.rand(24, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    Trainer(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8), cfg, progress=True).fit(images)
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert err == ""
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", f"{e}/3"] for e in (1, 2, 3)], out
