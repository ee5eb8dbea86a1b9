"""Every code an answer can carry is listed once, in resolvers/codes.py, and in the schema as
`enum ErrorCode`; `Error.code` and `ItemError.code` stay String!.

The answers of every test's requests are checked too (tests/helpers.py `answered_codes`, a
response hook on the test clients): a code answered anywhere that is not listed fails there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

from resolvers import outcomes
from resolvers.codes import ErrorCode
from resolvers.errors import OperationError
from schema import build_schema
from schema.extensions import MAX_ALIASES_EXCEEDED, MAX_DEPTH_EXCEEDED, MAX_TOKENS_EXCEEDED
from server.fairuse import RATE_LIMITED
from server.http import HTTP_CODES, REQUEST_ERRORS
from tests.helpers import answered_codes, codes_are_listed

ROOT = Path(__file__).resolve().parent.parent
LISTED = {code.value for code in ErrorCode}
# Where a code is written: these calls take one (positionally or as `code=`).
TAKES_A_CODE = {"ItemProblem", "Refused", "error_response", "problem", "_coded", "coded"}


def test_each_code_is_its_own_name_and_is_described() -> None:
    for code in ErrorCode:
        assert code.name == code.value
        assert code.description.strip().endswith("."), code


def test_every_declared_mutation_error_has_a_listed_code() -> None:
    assert outcomes.PROBLEMS
    for problem in outcomes.PROBLEMS:
        assert isinstance(problem.code, ErrorCode), problem


def test_every_top_level_error_has_a_listed_code() -> None:
    found, stack = set(), [OperationError]
    while stack:
        kind = stack.pop()
        found.add(kind)
        stack.extend(kind.__subclasses__())
    assert len(found) > 5
    for kind in found:
        assert isinstance(kind.code, ErrorCode), kind


def test_the_limits_and_the_http_layer_answer_listed_codes() -> None:
    for code in (
        MAX_DEPTH_EXCEEDED,
        MAX_ALIASES_EXCEEDED,
        MAX_TOKENS_EXCEEDED,
        RATE_LIMITED,
        *HTTP_CODES.values(),
        *REQUEST_ERRORS,
    ):
        assert isinstance(code, ErrorCode), code


def _written_codes(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants the source hands over as a code."""
    found: list[tuple[int, str]] = []

    def constant(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    constant(value)
        elif isinstance(node, ast.keyword) and node.arg == "code":
            constant(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                constant(node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in TAKES_A_CODE:
                for argument in node.args:
                    if isinstance(argument, ast.Constant) and str(argument.value).isupper():
                        constant(argument)
    return found


def test_no_code_is_written_outside_the_registry() -> None:
    """Codes are named `ErrorCode.X` where they are answered: a string literal handed over
    as a code would escape the list (and the schema's enum)."""
    written = []
    for package in ("db", "policies", "resolvers", "schema", "server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for line, value in _written_codes(ast.parse(path.read_text())):
                written.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert written == []


def test_the_scan_finds_codes_written_as_literals() -> None:
    source = """
ItemProblem(value, "NOT_LISTED", "message")
Refused(400, "ALSO_NOT", "message")
error = {"message": m, "extensions": {"code": "NOR_THIS"}}
GraphQLError(m, extensions=dict(code="NOR_THAT"))
class Problem(OperationError):
    code = "NEITHER"
"""
    assert {value for _, value in _written_codes(ast.parse(source))} == {
        "NOT_LISTED",
        "ALSO_NOT",
        "NOR_THIS",
        "NOR_THAT",
        "NEITHER",
    }


def test_the_schema_lists_every_code_and_the_fields_stay_strings() -> None:
    built = build_schema()._schema
    enum = built.type_map["ErrorCode"]
    assert isinstance(enum, GraphQLEnumType)
    assert set(enum.values) == LISTED
    assert enum.description
    for name, value in enum.values.items():
        assert value.description == ErrorCode[name].description
    for type_name in ("Error", "ItemError", "NotFoundError", "BulkRejectedError"):
        owner = built.type_map[type_name]
        assert isinstance(owner, GraphQLObjectType | GraphQLInterfaceType), type_name
        field = owner.fields["code"]
        assert isinstance(field.type, GraphQLNonNull), type_name
        assert isinstance(field.type.of_type, GraphQLScalarType), type_name
        assert field.type.of_type.name == "String"


def test_answered_codes_are_read_from_errors_and_from_error_types() -> None:
    body = {
        "data": {
            "allocateLicences": {
                "__typename": "BulkRejectedError",
                "code": "BULK_REJECTED",
                "message": "No change was made.",
                "items": [{"id": "x", "code": "ALREADY_LICENSED", "message": "Held."}],
            },
            "courses": {"edges": [{"node": {"code": "RCC3", "title": "Childcare"}}]},
        },
        "errors": [{"message": "m", "extensions": {"code": "FORBIDDEN"}}],
    }
    # A course's own `code` is no error code: it has no `message` beside it.
    assert answered_codes(body) == {"BULK_REJECTED", "ALREADY_LICENSED", "FORBIDDEN"}


async def test_an_answer_with_an_unlisted_code_fails_its_test() -> None:
    request = httpx.Request("POST", "http://caseload.test/graphql")
    listed = httpx.Response(
        200, json={"errors": [{"extensions": {"code": "FORBIDDEN"}}]}, request=request
    )
    await codes_are_listed(listed)
    unlisted = httpx.Response(
        200, json={"errors": [{"extensions": {"code": "SOMETHING_NEW"}}]}, request=request
    )
    with pytest.raises(AssertionError, match="SOMETHING_NEW"):
        await codes_are_listed(unlisted)
