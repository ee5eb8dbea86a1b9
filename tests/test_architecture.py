"""Imports run one way: server → schema → resolvers → policies → db; frameworks stay on top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["server", "schema", "resolvers", "policies", "db"]

# Frameworks a lower layer may not import; resolvers may use Strawberry's dataloader only.
FORBIDDEN = {
    "resolvers": {"starlette", "strawberry", "graphql", "uvicorn"},
    "policies": {"starlette", "strawberry", "graphql", "uvicorn"},
    "db": {"starlette", "strawberry", "graphql", "uvicorn", "casbin"},
}
ALLOWED = {"resolvers": {"strawberry.dataloader"}}


def imported_modules(source: str) -> set[str]:
    """The modules a file imports (absolute imports only), wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(layer: str, modules: set[str]) -> list[str]:
    above = set(LAYERS[: LAYERS.index(layer)])
    forbidden = FORBIDDEN.get(layer, set())
    allowed = ALLOWED.get(layer, set())
    bad = []
    for module in sorted(modules):
        top = module.split(".")[0]
        if top in above:
            bad.append(f"imports {module} from a layer above")
        elif top in forbidden and not any(
            module == a or module.startswith(a + ".") for a in allowed
        ):
            bad.append(f"imports the framework {module}")
    return bad


def test_layers_import_downwards_and_frameworks_stay_on_top() -> None:
    problems = [
        f"{path.relative_to(ROOT)} {problem}"
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        for problem in violations(layer, imported_modules(path.read_text()))
    ]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_violation() -> None:
    source = (
        "from schema.learners import Learner\n"
        "if True:\n"
        "    import strawberry as sb\n"
        "from strawberry.dataloader import DataLoader\n"
        "def f():\n"
        "    from starlette.requests import Request\n"
    )
    assert violations("resolvers", imported_modules(source)) == [
        "imports schema.learners from a layer above",
        "imports the framework starlette.requests",
        "imports the framework strawberry",
    ]
    assert "imports the framework strawberry.dataloader" in violations(
        "db", imported_modules(source)
    )
