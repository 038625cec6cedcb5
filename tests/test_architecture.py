"""The engine's import graph: no cycles, no imports deferred into functions, and the layers
DESIGN.md section 5 draws (a core without I/O, a call service without HTTP).

Built from the source with `ast`, so it sees every module whether or not a test imports it.
Imports under `if TYPE_CHECKING:` are left out: they exist only for the type checker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ENGINE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    """The modules an import statement names (submodules for `from package import name`)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    yield base
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            yield f"{base}.{alias.name}"


def _top_level(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: its body, and inside its if/try blocks."""
    for statement in statements:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        elif isinstance(statement, ast.If):
            if not _is_type_checking(statement.test):
                yield from _top_level(statement.body)
            yield from _top_level(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody,
                          *(handler.body for handler in statement.handlers)):
                yield from _top_level(block)


def _parents(name: str) -> list[str]:
    """Importing `a.b.c` first runs `a` and `a.b`."""
    parts = name.split(".")
    return [".".join(parts[:index]) for index in range(1, len(parts))]


def imports_of(module: str) -> set[str]:
    """Every module, engine's or not, that importing `module` runs directly."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for statement in _top_level(tree.body):
        for name in _imported(statement, module):
            found.update([name, *_parents(name)])
    found.discard(module)
    return found


GRAPH = {module: {name for name in imports_of(module) if name in MODULES}
         for module in MODULES}
# A package's own modules import the package first; that is not an edge back to them.
for _module, _edges in GRAPH.items():
    _edges.difference_update(parent for parent in _parents(_module))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def closure(module: str) -> set[str]:
    """Every engine module importing `module` runs, itself included."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(GRAPH[current])
    return seen


def third_party(modules: set[str]) -> set[str]:
    """Top-level names of the non-engine modules those modules import."""
    return {name.split(".")[0] for module in modules for name in imports_of(module)
            if not name.startswith("engine")}


def test_the_graph_sees_the_known_edges() -> None:
    # Guards the parser: if it read nothing, every test below would pass for nothing.
    assert "engine.calls" in GRAPH["engine.bootstrap"]
    assert "engine.calls.service" in GRAPH["engine.calls"]
    assert "engine.runtime.step" in GRAPH["engine.calls.service"]
    assert "engine.flows.model" in GRAPH["engine.runtime.step"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_the_engine_has_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_no_engine_import_is_deferred_into_a_function() -> None:
    deferred = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, _top_level(tree.body)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top \
                    and any(name.startswith("engine") for name in _imported(node, module)):
                type_only = any(isinstance(parent, ast.If) and _is_type_checking(parent.test)
                                and node in ast.walk(parent) for parent in ast.walk(tree))
                if not type_only:
                    deferred.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert deferred == []


def test_importing_a_web_module_does_not_import_the_app() -> None:
    assert imports_of("engine.web") == set()
    assert "engine.web.app" not in closure("engine.web.voice")


@pytest.mark.parametrize(("package", "forbidden"), [
    # The pure core: plain values in, plain values out (DESIGN.md section 5).
    ("engine.flows", {"flask", "werkzeug", "twilio", "openai", "redis", "sqlite3", "requests",
                      "prometheus_client", "pusher"}),
    ("engine.runtime", {"flask", "werkzeug", "twilio", "openai", "redis", "sqlite3",
                        "requests", "prometheus_client", "pusher"}),
    # The call service drives any transport: no web framework, metrics or HTTP client.
    ("engine.calls", {"flask", "werkzeug", "prometheus_client", "openai", "requests", "httpx",
                      "urllib3", "pusher", "flask_limiter"}),
])
def test_layers_import_only_what_they_may(package: str, forbidden: set[str]) -> None:
    modules = set().union(*(closure(module) for module in MODULES
                            if module == package or module.startswith(package + ".")))
    leaks = {module: sorted(third_party({module}) & forbidden) for module in sorted(modules)}
    assert {module: names for module, names in leaks.items() if names} == {}
    engine_layers = {module for module in modules if module.startswith("engine.web")}
    assert engine_layers == set()
