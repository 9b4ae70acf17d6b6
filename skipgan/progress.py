"""Progress of a loop, readable wherever it goes: tqdm's bar on a terminal, plain lines in a file or a pipe.

`skipgan train > log 2>&1` must leave a log a person can read. tqdm redraws its bar with carriage returns, and in
a file every redraw stays: hundreds of copies of one line around the few that matter. So `track` draws the bar
only where the stream is a terminal. Anywhere else it writes no bar: a loop that ends within `every` seconds
writes nothing (the caller's own line per epoch is the record), a longer one writes one plain line every `every`
seconds, so a long epoch in a log still shows it is moving. No flag decides this; `enabled=False` (`--no-progress`)
writes nothing anywhere.

    bar = track(batches, f"epoch {e}/{n}", enabled=show)
    for batch in bar:
        ...
        bar.set_postfix({"g": f"{g:.3g}"})
    bar.close()
    log_line(f"epoch {e}/{n}  G {g:.4f} ...")      # the one line per epoch, flushed
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

EVERY_S = 60.0  # seconds between two plain progress lines where the stream is not a terminal


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (a closed or unusual stream counts as not one)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def log_line(message: str) -> None:
    """`print`, flushed: a log file read while the run goes (`tail -f`) shows each line when it is written, and
    in `> log 2>&1` the lines keep their order with the progress lines on stderr."""
    print(message, flush=True)


def track(iterable: Iterable, desc: str, *, enabled: bool = True, stream: TextIO | None = None,
          every: float = EVERY_S) -> "tqdm | PlainProgress":
    """Iterate over `iterable` showing its progress on `stream` (default: stderr, looked up at the call). Returns an
    iterable with tqdm's `set_postfix(dict)` and `close()`: tqdm's bar on a terminal, else `PlainProgress`."""
    stream = sys.stderr if stream is None else stream
    if enabled and is_terminal(stream):
        return tqdm(iterable, desc=desc, leave=False, file=stream, dynamic_ncols=True)
    return PlainProgress(iterable, desc, stream if enabled else None, every)


class PlainProgress:
    """No bar: one plain line (`epoch 3/15: 120/500 after 60 s, g 1.2, d 0.7`) every `every` seconds on `stream`
    (None: silent). The line is written after the step that crosses the interval, so a loop shorter than `every`
    writes nothing."""

    def __init__(self, iterable: Iterable, desc: str, stream: TextIO | None, every: float = EVERY_S):
        self.iterable, self.desc, self.stream, self.every = iterable, desc, stream, every
        self.total = len(iterable) if hasattr(iterable, "__len__") else None
        self.postfix: dict[str, Any] = {}

    def __iter__(self) -> Iterator:
        if self.stream is None:
            yield from self.iterable
            return
        start = last = time.monotonic()
        for i, item in enumerate(self.iterable, 1):
            yield item
            now = time.monotonic()
            if now - last >= self.every:
                last = now
                self._line(i, now - start)

    def _line(self, done: int, seconds: float) -> None:
        count = f"{done}/{self.total}" if self.total is not None else str(done)
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        if sys.stdout is not None and sys.stdout is not self.stream:
            sys.stdout.flush()  # what the caller printed before comes first in a merged log
        print(f"{self.desc}: {count} after {seconds:.0f} s{extra}", file=self.stream, flush=True)

    def set_postfix(self, postfix: dict[str, Any]) -> None:
        self.postfix = dict(postfix)

    def close(self) -> None:
        pass
