"""The bench's table: per config, images/s of every runtime, the engine against the best peer of its precision and
of any precision, and the model's bounds on the measured machine."""

from __future__ import annotations

from typing import Any

from .peers import PEERS


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if v >= 1 else f"{v:.3g}"


def _best(rows: list[dict], pred) -> dict | None:
    ok = [r for r in rows if pred(r) and r["status"] == "ok" and r["img_s"]]
    return max(ok, key=lambda r: r["img_s"]) if ok else None


def _ratio(a: dict | None, b: dict | None) -> str:
    if a is None or b is None:
        return "n/a"
    return (f"{a['img_s'] / b['img_s']:.3g}x ({a['runtime']} {_fmt(a['img_s'])} vs {b['runtime']} "
            f"{_fmt(b['img_s'])} img/s)")


def format_machine(machine: dict | None) -> str:
    if not machine:
        return "machine limits: not measured"
    bf16 = machine.get("bf16_gflop_s")
    return (f"machine limits (measured in this run, {machine.get('threads', '?')} torch threads): read bandwidth "
            f"{machine['read_gb_s']:.1f} GB/s (x.sum() over {machine['bw_buffer_mb']} MB fp32); matmul "
            f"{machine['fp32_gflop_s']:.0f} GFLOP/s fp32, "
            + (f"{bf16:.0f} GFLOP/s bf16" if bf16 else "bf16 not supported")
            + f" ({machine['mm_n']}x{machine['mm_n']}, the fastest of "
            + "; ".join(f"{p} {', '.join(f'{k} {v:.0f}' for k, v in machine[f'{p}_gflop_s_by'].items())}"
                        for p in ("fp32", "bf16") if machine.get(f"{p}_gflop_s_by")) + ")"
            + "; % limit: of the slower of computing the FLOPs at that rate and streaming the weights once per call")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Per config: images/s of every runtime, the engine against the best peer of its precision and of any
    precision, and the model's bounds on this machine."""
    if not rows:
        return "(no results)"
    lines = [format_machine(rows[0].get("machine"))]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["isize"], r["K"], r["batch"]), []).append(r)
    for (isize, K, batch), rs in groups.items():
        bd = rs[0].get("bounds") or {}
        lines += ["", f"isize {isize}, K {K} probes, batch {batch}"
                  + (f"  (load {rs[0]['loadavg_1m']})" if rs[0].get("loadavg_1m") is not None else "")]
        lines.append(f"  {'runtime':<21} {'prec':<5} {'img/s':>9} {'ms/batch':>10} {'% limit':>8} {'max rel err':>11}"
                     "  status")
        for r in rs:
            err = "-" if r["max_rel_err"] is None else f"{r['max_rel_err']:.1e}"
            pct = "-" if r.get("pct_of_limit") is None else f"{r['pct_of_limit']:.0f}%"
            lines.append(f"  {r['runtime']:<21} {r['precision']:<5} {_fmt(r['img_s']):>9} "
                         f"{_fmt(r['ms_per_batch'], 2):>10} {pct:>8} {err:>11}  {r['status']}"
                         + (f"  [{r['note']}]" if r.get("note") and not r["status"].startswith("unavailable") else ""))
        is_engine = lambda r: PEERS[r["runtime"]].is_engine if r["runtime"] in PEERS else False  # noqa: E731
        is_peer = lambda r: r["runtime"] not in PEERS or not (  # noqa: E731
            PEERS[r["runtime"]].is_engine or PEERS[r["runtime"]].is_export)
        for p in ("fp32", "bf16", "int8"):  # the engine of each precision against the peers of that precision
            if any(r["runtime"] == f"engine_{p}" for r in rs):
                e = _best(rs, lambda r: r["runtime"] == f"engine_{p}")
                peer = _best(rs, lambda r: is_peer(r) and r["precision"] == p)
                lines.append(f"  engine_{p} / best {p} peer: {_ratio(e, peer)}")
        if any(is_engine(r) for r in rs):
            lines.append(f"  best engine / best peer (any precision): "
                         f"{_ratio(_best(rs, is_engine), _best(rs, is_peer))}")
        if bd:
            text = f"  bounds: {bd['flops_per_image'] / 1e9:.3g} GFLOP/image"
            if bd.get("compute_img_s_fp32"):
                text += f" -> compute-bound {_fmt(bd['compute_img_s_fp32'])} img/s fp32"
                if bd.get("compute_img_s_bf16"):
                    text += f", {_fmt(bd['compute_img_s_bf16'])} img/s bf16"
            text += f"; weights {bd['weight_bytes_fp32'] / 1e6:.1f} MB fp32"
            if bd.get("weight_stream_img_s_b1_fp32"):
                text += (f" -> weight-streaming bound at batch 1: {_fmt(bd['weight_stream_img_s_b1_fp32'])} img/s "
                         f"fp32, {_fmt(bd['weight_stream_img_s_b1_bf16'])} img/s bf16")
            lines.append(text)
    return "\n".join(lines)
