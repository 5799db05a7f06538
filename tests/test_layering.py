"""The package's shape (issue 20): rooms import downward only, and the low rooms load alone.

A room is a top-level module or package of ``vitkit``. Every ``import`` of another room counts,
at module level or inside a function: a lazy import that exists to dodge a cycle is still the cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import vitkit

SRC = Path(vitkit.__file__).parent
#: the top-level modules allowed beside the packages: foundations only
FOUNDATIONS = {"errors", "atomic", "files", "finite", "options", "dictconfig", "compiling", "cpuinfo", "version",
               "__main__"}
PACKAGES = {"data", "models", "objectives", "checkpoints", "train", "evaluate", "inspect", "deploy", "studies", "cli"}
MAX_FLOORS = 12


def _room(module: str, name: str | None = None) -> str:
    parts = module.split(".")
    if len(parts) > 1:
        return parts[1]
    if name and ((SRC / name).is_dir() or (SRC / f"{name}.py").is_file()):
        return name  # ``from vitkit import options``
    return "vitkit"  # the package top (its public API)


def _file_room(path: Path) -> str:
    rel = path.relative_to(SRC)
    return "vitkit" if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")


def room_imports() -> dict[str, dict[str, str]]:
    """room -> {imported room: first place it is imported}."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(SRC.rglob("*.py")):
        here = _file_room(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vitkit":
                targets = [_room(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [_room(alias.name) for alias in node.names if alias.name.split(".")[0] == "vitkit"]
            else:
                continue
            for target in targets:
                if target != here:
                    graph[here].setdefault(target, f"{path.relative_to(SRC)}:{node.lineno}")
    return graph


def floors(graph: dict[str, dict[str, str]]) -> dict[str, int]:
    """room -> 1 + the highest floor it imports; raises on a cycle, naming its imports."""
    floor: dict[str, int] = {}

    def visit(room: str, path: tuple[str, ...]) -> int:
        if room in path:
            cycle = [*path[path.index(room):], room]
            raise AssertionError("import cycle: " + " -> ".join(
                f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)))
        if room not in floor:
            floor[room] = 1 + max((visit(t, (*path, room)) for t in graph.get(room, {})), default=0)
        return floor[room]

    for room in list(graph):
        visit(room, ())
    return floor


def test_rooms_import_downward_only_within_twelve_floors():
    built = floors(room_imports())
    assert max(built.values()) <= MAX_FLOORS, built


def test_the_top_level_holds_packages_and_foundations_only():
    rooms = {p.name.removesuffix(".py") for p in SRC.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert rooms - FOUNDATIONS - PACKAGES == set()


#: importing a room runs the package top (vitkit/__init__.py, the public API: models, checkpoints, data)
#: first; what builds on those rooms must still stay out
@pytest.mark.parametrize(("module", "must_not_load"), [
    ("vitkit.models", ("vitkit.train", "vitkit.deploy", "vitkit.cli", "vitkit.studies", "vitkit.inspect")),
    ("vitkit.checkpoints", ("vitkit.train", "vitkit.deploy", "vitkit.cli", "vitkit.studies")),
    ("vitkit.objectives", ("vitkit.train", "vitkit.deploy", "vitkit.cli", "vitkit.studies")),
])
def test_a_low_room_loads_without_the_rooms_above_it(module, must_not_load):
    """Importing a room (and using its API) must not pull in the rooms that build on it."""
    code = (f"import sys, {module}; loaded = sorted(m for m in sys.modules if m.startswith({must_not_load!r}));"
            "print(' '.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == []
