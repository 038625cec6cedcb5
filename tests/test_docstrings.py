"""Every public module, class and function of the engine says what it owns or promises.

Public: a name without a leading underscore, at the top of a module or in a public class.
A method that implements a documented method of a Protocol (a store backend's `commit_step`, a
responder's `answer`) takes its promise from there and needs no docstring of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "engine").rglob("*.py"))
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}


def _is_protocol(cls: ast.ClassDef) -> bool:
    return any((isinstance(base, ast.Name) and base.id == "Protocol")
               or (isinstance(base, ast.Attribute) and base.attr == "Protocol")
               for base in cls.bases)


def protocol_methods(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of the documented methods of the engine's Protocols."""
    return {member.name for tree in trees.values() for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef) and _is_protocol(cls)
            for member in cls.body
            if isinstance(member, ast.FunctionDef) and ast.get_docstring(member)}


def undocumented() -> list[str]:
    trees = _trees()
    promised = protocol_methods(trees)
    missing = []
    for path, tree in trees.items():
        where = path.relative_to(ROOT)
        if not ast.get_docstring(tree):
            missing.append(f"{where}: module")
        for node in tree.body:
            if not isinstance(node, Definition) or node.name.startswith("_"):
                continue
            if not ast.get_docstring(node):
                missing.append(f"{where}:{node.lineno}: {node.name}")
            if isinstance(node, ast.ClassDef):
                missing += [f"{where}:{member.lineno}: {node.name}.{member.name}"
                            for member in node.body
                            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef)
                            and not member.name.startswith("_")
                            and member.name not in promised
                            and not ast.get_docstring(member)]
    return missing


def test_the_check_finds_what_it_looks_for() -> None:
    # Guards the check: a source it could not read would make the test below pass for nothing.
    assert len(SOURCES) > 50
    assert "commit_step" in protocol_methods(_trees())


def test_public_modules_classes_and_functions_have_docstrings() -> None:
    assert undocumented() == []
