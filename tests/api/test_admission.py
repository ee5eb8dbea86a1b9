"""Every limit holds on both read paths (schema/admission.py): a request over one is refused
with the same answer whether the compiled path is on or off, and the compiled path never
answers it; within the limits, the compiled path does answer it, so a check it skipped would
show here as data where the standard executor refuses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import AppFactory
from tests.factories import World

PAGE = "{ learners(first: 5) { edges { node { id name } } } }"
SEARCH = (
    "query Page($search: String) { "
    "learners(first: 5, filter: {search: $search}) { edges { node { id name } } } }"
)
TWO = (
    "{ a: learners(first: 5) { edges { node { id } } } "
    "b: learners(first: 5) { edges { node { id } } } }"
)


def body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


@dataclass(frozen=True)
class Case:
    overrides: dict[str, object]  # the limit, as a setting
    refused: bytes  # a request over it
    code: str
    status: int = 200
    # The same request within the limits (default: the refused one, under default settings).
    admitted: bytes | None = None
    field: str | None = field(default=None)
    # The rate limit's message names the points spent, CPU time included: alike but for that.
    timed: bool = False


CASES = {
    "depth": Case({"max_query_depth": 2}, body(PAGE), "MAX_DEPTH_EXCEEDED"),
    "aliases": Case({"max_aliases": 1}, body(TWO), "MAX_ALIASES_EXCEEDED"),
    "tokens": Case({"max_tokens": 10}, body(PAGE), "MAX_TOKENS_EXCEEDED"),
    "cost": Case({"max_cost": 5}, body(PAGE), "MAX_COST_EXCEEDED"),
    "nul in the document": Case(
        {},
        body(PAGE.replace("first: 5", 'first: 5, filter: {search: "a\\u0000"}')),
        "INVALID",
        admitted=body(PAGE.replace("first: 5", 'first: 5, filter: {search: "a"}')),
    ),
    "nul in a variable": Case(
        {},
        body(SEARCH, {"search": "a\x00"}),
        "INVALID",
        admitted=body(SEARCH, {"search": "a"}),
        field="search",
    ),
    "lone surrogate in a variable": Case(
        {},
        json.dumps({"query": SEARCH}).encode()[:-1] + b', "variables": {"search": "\\ud800"}}',
        "INVALID",
        admitted=body(SEARCH, {"search": "Ann"}),
        field="search",
    ),
    "rate limit": Case(
        {"rate_points_per_minute": 3}, body(PAGE), "RATE_LIMITED", status=429, timed=True
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_request_over_a_limit_is_refused_alike_by_both_paths(
    api_with: AppFactory, world: World, case: Case
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ann Able")

    async def send(compiled: bool, request: bytes, **overrides: object) -> tuple[int, Any, int]:
        """(status, body, requests the compiled path answered) from a new app."""
        api = await api_with(compiled_reads=compiled, **overrides)
        headers = {
            "Authorization": f"Bearer {api.token(admin, org)}",
            "Content-Type": "application/json",
        }
        response = await api.client.post("/graphql", content=request, headers=headers)
        reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
        return response.status_code, response.json(), reads.answered if reads else 0

    # Within the limits, the compiled path answers: skipping a check there would answer data.
    status, answered, by_compiled = await send(True, case.admitted or case.refused)
    assert (status, by_compiled) == (200, 1), answered
    assert "errors" not in answered and all(page["edges"] for page in answered["data"].values()), (
        answered
    )

    compiled = await send(True, case.refused, **case.overrides)
    standard = await send(False, case.refused, **case.overrides)
    status, refused, by_compiled = compiled
    assert by_compiled == 0, refused  # refused before the compiled path could answer
    if case.timed:
        for error in [*refused["errors"], *standard[1]["errors"]]:
            error["message"] = re.sub(r"costs \d+ points", "costs N points", error["message"])
    assert (status, refused) == standard[:2]  # the same status and body
    assert status == case.status, refused
    assert {e["extensions"]["code"] for e in refused["errors"]} == {case.code}, refused
    assert refused.get("data") is None, refused
    if case.field is not None:
        assert refused["errors"][0]["extensions"]["field"] == case.field, refused
