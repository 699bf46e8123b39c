"""The layout's rules, checked on the source: two wings, no import circles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = {
    "stripe_events": ROOT / "src",
    "stripe_events_ops": ROOT / "ops",
    "stripe_events_local": ROOT / "ops",
    "stripe_events_testing": ROOT / "ops",
}


def modules() -> dict[str, Path]:
    """Every module of ours by dotted name: both wings, the app and its resources."""
    found = {"app": ROOT / "app.py"}
    for package, root in PACKAGES.items():
        for path in (root / package).rglob("*.py"):
            found[_dotted(path, root)] = path
    for path in (ROOT / "chalicelib").rglob("*.py"):
        found[_dotted(path, ROOT)] = path
    return found


def _dotted(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The modules of ours that `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import module` imports the module; `from module import name`,
            # the module itself.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: set(imports(name, path, set(found))) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def test_nothing_imports_in_a_circle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_runtime_never_reaches_the_operators_wing() -> None:
    edges = graph()
    runtime = [
        name for name in edges if name.split(".")[0] in ("stripe_events", "chalicelib", "app")
    ]
    for name in runtime:
        assert not [t for t in edges[name] if t.startswith("stripe_events_ops")], name
