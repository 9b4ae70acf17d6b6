"""Markdown table of `skipgan bench --json` files: images/s per runtime (rows) and config (columns), and the
engine's ratio to the best peer of its precision and of any precision.

    python benchmarks/results/table.py benchmarks/results/bench_cpu_isize32.json [more.json ...]
"""

from __future__ import annotations

import json
import sys


def table(paths: list[str]) -> str:
    rows = [r for p in paths for r in json.load(open(p))["rows"]]
    configs = sorted({(r["isize"], r["K"], r["batch"]) for r in rows}, key=lambda c: (c[0], -c[1], c[2]))
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    at = {(r["runtime"], r["isize"], r["K"], r["batch"]): r for r in rows}
    head = "| runtime | " + " | ".join(f"isize {s}, K={k}, batch {b}" for s, k, b in configs) + " |"
    out = [head, "|---|" + "---:|" * len(configs)]

    def cell(r):
        if r is None:
            return "—"
        if r["status"] != "ok":
            return r["status"].split(":")[0]
        return f"{r['img_s']:,.0f}" if r["img_s"] >= 10 else f"{r['img_s']:.2f}"

    for name in runtimes:
        bold = name.startswith("engine")
        cells = [cell(at.get((name, *c))) for c in configs]
        out.append(f"| {'**' + name + '**' if bold else name} | " + " | ".join(f"**{x}**" if bold else x for x in cells) + " |")
    for prec in ("fp32", "bf16"):
        line = []
        for c in configs:
            eng = at.get((f"engine_{prec}", *c))
            peers = [r for (n, *cc), r in at.items() if tuple(cc) == c and not n.startswith("engine")
                     and r["status"] == "ok" and (prec == "bf16" or r["precision"] == "fp32")]
            if eng is None or eng["status"] != "ok" or not peers:
                line.append("—")
                continue
            best = max(peers, key=lambda r: r["img_s"])
            line.append(f"{eng['img_s'] / best['img_s']:.2f}× ({best['runtime']})")
        what = "best fp32 peer" if prec == "fp32" else "best peer, any precision"
        out.append(f"| engine_{prec} / {what} | " + " | ".join(line) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
