"""The package's layers only point down: every import inside ``bench`` (function-local ones too) goes to a
module of the same or a lower layer, so there are no import cycles between packages and nothing to hide."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

# Lower layers never import higher ones. Each top-level module or package of bench/ has one layer.
LAYERS = {
    "errors": 0, "templates": 0, "interrupt": 0,
    "spec": 1, "scaffold": 1,
    "results": 2, "summary": 2, "data": 2, "track": 2,
    "train": 3, "board": 3,
    "measure": 4, "box": 4.5,
    "downstream": 5, "export": 5,
    "harness": 6,
    "executor": 7, "driver": 7.5,
    "check": 8, "study": 8, "tune": 8, "verify": 8,
    "cli": 9, "__main__": 9,
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "bench" and len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_every_import_inside_bench_points_down_or_sideways():
    upward, unassigned = [], set()
    for path in sorted((ROOT / "bench").rglob("*.py")):
        relative = path.relative_to(ROOT / "bench")
        here = relative.parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        if here not in LAYERS:
            unassigned.add(here)
            continue
        for line, module in _imports(path):
            there = _part(module)
            if there is None or there == here:
                continue
            if there not in LAYERS:
                unassigned.add(there)
            elif LAYERS[there] > LAYERS[here]:
                upward.append(f"bench/{relative}:{line} ({here}, layer {LAYERS[here]}) imports {module} "
                              f"(layer {LAYERS[there]})")
    assert not unassigned, f"give these parts of bench a layer in LAYERS: {sorted(unassigned)}"
    assert not upward, "upward imports:\n" + "\n".join(upward)
