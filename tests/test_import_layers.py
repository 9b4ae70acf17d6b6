"""The floors of the house (docs/architecture.md, "Floors: what may import what"): no module of skipgan imports from
a floor above its own, at module level or inside a function, and every module stands on some floor. The floors
are read from that page, so the page and this test cannot drift apart."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def read_floors(page: str) -> list[list[str]]:
    """The rooms of each floor, top floor first, from the page's code block under '## Floors': one floor per label
    line ('label    room, room, ...', continued on indented lines), floors parted by '↓'. A room is a package
    ('cli/') or a module ('scoring.py'); '__init__.py' is the package itself."""
    section = page.split("## Floors", 1)[1]
    block = section.split("```", 2)[1]
    floors: list[list[str]] = []
    for line in block.splitlines()[1:]:
        if not line.strip() or line.strip() == "↓":
            continue
        rooms_text = line if line[0].isspace() else (re.split(r"\s{2,}", line.strip(), maxsplit=1) + [""])[1]
        rooms = re.findall(r"[\w]+(?:/|\.py)", rooms_text)
        if line[0].isspace():
            floors[-1].extend(rooms)
        else:
            floors.append(rooms)
    return floors


def room_names(package: str, rooms: list[str]) -> list[str]:
    """Rooms as dotted prefixes: 'cli/' -> 'skipgan.cli', 'scoring.py' -> 'skipgan.scoring', '__init__.py' ->
    'skipgan'."""
    names = []
    for room in rooms:
        stem = room.rstrip("/").removesuffix(".py")
        names.append(package if stem == "__init__" else f"{package}.{stem}")
    return names


def modules(package_dir: Path, package: str) -> dict[str, Path]:
    """{dotted name: file} of every module under package_dir (a package's __init__.py is the package)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) of every import of the package in `path`, wherever it stands (module level, inside a
    function, under `if TYPE_CHECKING`); `from pkg import name` counts as the submodule pkg.name where that is one."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    top = name.split(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return found


def floor_of(name: str, floors: list[list[str]]) -> int | None:
    """The floor (0 = top) of module `name`: the floor of the longest room that is `name` or a package above it
    (the top package itself is a room of its own, not a package of every module)."""
    best = None
    for i, rooms in enumerate(floors):
        for room in rooms:
            inside = name.startswith(room + ".") and "." in room
            if (name == room or inside) and (best is None or len(room) > len(best[1])):
                best = (i, room)
    return None if best is None else best[0]


def violations(package_dir: Path, package: str, floors_rooms: list[list[str]]) -> list[str]:
    """Every upward import and every module on no floor, one line each."""
    floors = [room_names(package, rooms) for rooms in floors_rooms]
    found = modules(package_dir, package)
    out = []
    for name, path in found.items():
        mine = floor_of(name, floors)
        if mine is None:
            out.append(f"{name}: on no floor of docs/architecture.md (place it there)")
            continue
        for line, target in imports(name, path, set(found)):
            theirs = floor_of(target, floors)
            if theirs is not None and theirs < mine:
                out.append(f"{path.relative_to(package_dir.parent)}:{line}: {name} imports {target}, a floor above "
                           f"it ({', '.join(floors_rooms[theirs])} over {', '.join(floors_rooms[mine])})")
    return out


def test_the_page_names_the_floors():
    floors = read_floors(ARCHITECTURE.read_text())
    assert len(floors) >= 5 and floors[0] == ["cli/"] and "__init__.py" in floors[-1]


def test_no_module_imports_from_a_floor_above_its_own():
    floors = read_floors(ARCHITECTURE.read_text())
    assert violations(ROOT / "skipgan", "skipgan", floors) == []


FAKE_FLOORS = [["cli/"], ["model/", "modelfile.py"], ["errors.py", "__init__.py"]]


def fake_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fake"
    for rel, text in {"__init__.py": "", "cli/__init__.py": "from ..model import net\n",
                      "model/__init__.py": "", "model/net.py": "from ..errors import Oops\n",
                      "modelfile.py": "from .model.net import Net\n", "errors.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_a_clean_fake_package_passes(tmp_path):
    assert violations(fake_package(tmp_path, {}), "fake", FAKE_FLOORS) == []


@pytest.mark.parametrize("planted", [
    "from ..cli import main\n",  # relative, at module level
    "import fake.cli\n",  # absolute
    "def f():\n    from .. import cli\n    return cli\n",  # inside a function: the cycle-hiding kind
])
def test_a_planted_upward_import_fails(tmp_path, planted):
    got = violations(fake_package(tmp_path, {"model/net.py": planted}), "fake", FAKE_FLOORS)
    assert len(got) == 1 and "fake.model.net imports fake.cli, a floor above it" in got[0]


def test_a_module_on_no_floor_fails(tmp_path):
    got = violations(fake_package(tmp_path, {"stray.py": ""}), "fake", FAKE_FLOORS)
    assert got == ["fake.stray: on no floor of docs/architecture.md (place it there)"]


def test_the_floors_block_parses():
    page = "## Floors\n\n```\ntop        a/, b.py\n  ↓\nlow        c.py,\n           __init__.py (the package)\n```\n"
    assert read_floors(page) == [["a/", "b.py"], ["c.py", "__init__.py"]]
