"""The house rules, checked on the source: the harness and its plug-ins meet only at ``bench.api``, and no
module-level import cycle exists between or inside the three packages.

Imports are read from the syntax tree (module level only, as Python runs them at import time), and importing
``a.b.c`` counts as importing ``a`` and ``a.b`` too, since Python runs their ``__init__`` first (except where
they are the importing module's own packages, which are already being imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "defenses", "classifiers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the three packages that importing ``name`` imports at once (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    targets: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    closed: set[str] = set()
    for t in targets:
        parts = t.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # A module's own packages are already being imported when it runs, so they are no edge of it.
    parts = name.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {t for t in closed if t in known and t not in ancestors}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: top_level_imports(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_level_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def all_imports(path: Path) -> set[str]:
    """Every module an import statement names anywhere in the file, deferred imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", sorted(modules()))
def test_rooms_are_entered_by_their_doors(name: str) -> None:
    path = modules()[name]
    imported = all_imports(path)
    if name.split(".")[0] == "bench":
        assert not {m for m in imported if m.split(".")[0] in ("defenses", "classifiers")}, (
            f"{name} imports a plug-in package; the harness reaches plug-ins only through registries"
        )
    else:
        wrong = {m for m in imported if m.split(".")[0] == "bench" and not (m == "bench.api" or
                                                                             m.startswith("bench.api."))}
        assert not wrong, f"{name} imports {sorted(wrong)}; a plug-in imports nothing of bench but bench.api"


def test_bench_api_depends_on_nothing_else_of_bench() -> None:
    """The contracts are the bottom layer: only the error types sit below them."""
    graph = import_graph()
    for name, targets in graph.items():
        if name == "bench.api" or name.startswith("bench.api."):
            below = ("bench", "bench.errors")
            outside = {t for t in targets if not (t.startswith("bench.api") or t in below)}
            assert not outside, f"{name} imports {sorted(outside)}"
