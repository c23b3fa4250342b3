"""The import graph of tasks/ and infra/: the largest modules, cycles, imports against the
layering.

Layers, from the bottom: the core (``infra/*.py``: configuration, catalogue, rendering,
wiring), the engines and steps (``infra.bringup``, ``infra.host``, ``infra.pki``), the
deploy over SSH (``infra.deploy``), then the tasks. An import from a lower layer into a
higher one runs against the layering. Imports inside functions count too (they are how
``invoke --list`` stays fast, and they are still dependencies). Cycles are strongly
connected groups of modules.

Usage: .venv/bin/python bench/import_graph.py [PROJECT_FOLDER]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

RANKS = (("tasks", 4), ("infra.deploy", 3), ("infra.bringup", 2), ("infra.host", 2),
         ("infra.pki", 2), ("infra", 1))


def rank(module: str) -> int:
    return next(r for prefix, r in RANKS if module == prefix or module.startswith(prefix + "."))


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in ("infra", "tasks"):
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    found = modules(root)
    known = set(found)
    # a package's __init__ re-exporting its modules is not a dependency on them
    graph = {name: {t for t in imports(name, path, known)
                    if not (path.name == "__init__.py" and t.startswith(name + "."))}
             for name, path in found.items()}
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in found.items()), reverse=True)
    print("largest modules: " + ", ".join(f"{n} {lines}" for lines, n in sizes[:3]))
    groups = cycles(graph)
    print(f"import cycles: {len(groups)}")
    for group in groups:
        print("  " + " <-> ".join(group))
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if rank(b) > rank(a))
    print(f"imports against the layering: {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
