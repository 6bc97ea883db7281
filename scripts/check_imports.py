"""Check the import graph of the apps: no cycle among their modules, no import from
jobs into sheets, and sheets (a plug-in) reaches jobs only through its declared surface,
`jobs.public`, and `jobs.models`; jobs' templates name no sheets URL either. Every runtime import counts, function-level ones included; imports
under `if TYPE_CHECKING:` do not (they never run).

import-linter (`lint-imports`, contracts in pyproject.toml) checks the layers; this
script adds what its contracts do not say: no cycle anywhere, even inside a layer.
Exit code 1 with the offending imports listed, else 0. Run by `make test`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ["jobs", "sheets", "config"]
PLUGINS = ["sheets"]
PLUGIN_SURFACE = {"jobs.public", "jobs.models"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Modules of ours that `path` imports at run time."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {_ours(target, known) for target in targets} - {None, name}


def _ours(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    sys.setrecursionlimit(10_000)
    known = modules()
    graph = {name: imported(path, name, known) for name, path in known.items()}
    problems = []
    for component in cycles(graph):
        problems.append("import cycle: " + " -> ".join(component))
    for name, targets in sorted(graph.items()):
        if name.split(".")[0] == "jobs":
            problems += [f"{name} imports {t}" for t in sorted(targets) if t.startswith("sheets")]
        if name.split(".")[0] in PLUGINS:
            problems += [
                f"{name} imports {t} (a plug-in uses jobs.public and jobs.models only)"
                for t in sorted(targets)
                if t.split(".")[0] == "jobs" and t not in PLUGIN_SURFACE
            ]
    problems += [
        f"{path.relative_to(ROOT)} names a sheets URL (jobs does not know its plug-ins)"
        for path in sorted((ROOT / "jobs").rglob("*.html"))
        if "'sheets:" in path.read_text() or '"sheets:' in path.read_text()
    ]
    for problem in problems:
        print(problem)
    edges = sum(map(len, graph.values()))
    print(f"{len(graph)} modules, {edges} imports: {len(problems) or 'no'} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
