"""The verdict lines of benchmarks/gpu_check.sh, from what its stages wrote (standard library only).

    python benchmarks/gpu_summary.py junit FILE.xml...    # one line per test file (pytest --junitxml)
    python benchmarks/gpu_summary.py table TABLE.json     # the GPU table's rows (benchmarks/gpu_table.py)

A test file's line: "<file>: N passed, N failed, N skipped (N cuda-marked) -> ok | FAIL (why)". FAIL when a test
failed or errored, when a cuda-marked test (junitxml property cuda=1, tests/cuda_support.py) was skipped -- on the
GPU machine a skip means something the check meant to run did not run --, when the file ran no test at all, or
when its XML is missing or unreadable (the stage timed out or crashed before pytest wrote it). A table row that
disagrees with eager fp32 ("WRONG") is a FAIL too. Exit status 1 on any FAIL, else 0.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def junit_line(path: Path) -> tuple[str, bool]:
    """(the file's line, ok) for one pytest --junitxml file."""
    name = path.name.removesuffix(".xml")
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return f"{name}: no result ({type(e).__name__}: the stage timed out or crashed before pytest wrote it) " \
               "-> FAIL", False
    passed = failed = skipped = cuda_skipped = 0
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
            cuda_skipped += props.get("cuda") == "1"
        else:
            passed += 1
    why = [w for w, bad in [(f"{failed} failed", failed), (f"{cuda_skipped} cuda-marked skipped", cuda_skipped),
                            ("no test ran", passed + failed + skipped == 0)] if bad]
    line = (f"{name}: {passed} passed, {failed} failed, {skipped} skipped ({cuda_skipped} cuda-marked) -> "
            + (f"FAIL ({', '.join(why)})" if why else "ok"))
    return line, not why


def table_lines(path: Path) -> tuple[list[str], bool]:
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError) as e:
        return [f"table: no result ({type(e).__name__}) -> FAIL"], False
    wrong = [r for r in rows if str(r.get("status", "")).startswith("WRONG")]
    other = [r for r in rows if r.get("status") != "ok" and r not in wrong]
    lines = [f"table: {len(rows)} rows, {len(wrong)} disagree with eager fp32, {len(other)} unavailable -> "
             + ("FAIL" if wrong or not rows else "ok")]
    lines += [f"  WRONG: {r['goal']} / {r['runtime']}: {r['status']}" for r in wrong]
    lines += [f"  unavailable: {r['goal']} / {r['runtime']}: {r['status']}" for r in other]
    return lines, bool(rows) and not wrong


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("junit", "table"):
        print(__doc__, file=sys.stderr)
        return 2
    ok = True
    if argv[0] == "junit":
        for f in argv[1:]:
            line, good = junit_line(Path(f))
            print(line)
            ok &= good
    else:
        lines, ok = table_lines(Path(argv[1]))
        print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
