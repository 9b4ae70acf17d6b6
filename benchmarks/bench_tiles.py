"""The CPU engine's generator tile (rows of the K·B generator batch per pass) at several sizes, one run: whether the
fixed pixel budget (skipgan.engine.screener.TILE_PIXELS) is the fastest on this machine.

    python benchmarks/bench_tiles.py                       # isize 32, K 8, batch 64, tiles of 64..512 rows
    python benchmarks/bench_tiles.py --isize 128 --batch 16 --tiles 8,16,32,64

A random default-width model; each tile size is a Screener of its own (its plan measured for its rows, or read from
the cache), timed in turn for `--rounds` rounds of `--min-time` seconds; median images/s per dtype.
"""

from __future__ import annotations

import argparse

import torch

from skipgan.bench import interleaved_rates, make_model
from skipgan.engine import Screener
from skipgan.engine.cpu import bf16_fast
from skipgan.engine.screener import TILE_PIXELS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isize", type=int, default=32)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tiles", default="64,128,256,512", help="generator rows per tile, comma-separated")
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    model = make_model(isize=a.isize, nc=1, probes=a.probes)
    x = torch.rand(a.batch, 1, a.isize, a.isize) * 2 - 1
    tiles = [int(t) for t in a.tiles.split(",")]
    default = max(1, TILE_PIXELS // (a.isize * a.isize))
    print(f"isize {a.isize}, K {a.probes}, batch {a.batch}; the fixed budget gives {default} rows per tile")
    for dt in ("fp32", *(["bf16"] if bf16_fast() else [])):
        engines = {t: Screener.from_model(model, dtype=dt, max_batch=a.batch, probes=a.probes, tile=t) for t in tiles}
        ips = interleaved_rates({t: (lambda s=s: s.score(x)) for t, s in engines.items()}, a.batch, a.rounds,
                                a.min_time)
        cells = ", ".join(f"{t} rows ({engines[t].tile_images} images): {v:.1f}" for t, v in ips.items())
        print(f"{dt} img/s: {cells}")


if __name__ == "__main__":
    main()
