"""Imports run one way: server → schema → resolvers → policies → db."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["server", "schema", "resolvers", "policies", "db"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_layers_import_only_downwards() -> None:
    problems = []
    for rank, layer in enumerate(LAYERS):
        above = set(LAYERS[:rank])
        for path in (ROOT / layer).rglob("*.py"):
            for imported in _imports(path) & above:
                problems.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not problems, "\n".join(problems)


def test_resolvers_know_nothing_of_graphql_types_or_http() -> None:
    for path in (ROOT / "resolvers").rglob("*.py"):
        imported = _imports(path)
        assert "starlette" not in imported, path
        source = path.read_text()
        assert "strawberry.type" not in source and "import strawberry\n" not in source, path


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from schema.types import Learner\nimport server.app\n")
    assert {"schema", "server"} <= _imports(bad)
