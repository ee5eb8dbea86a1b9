"""Every outcome a mutation's use case can return is a member of its GraphQL result union."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest
from graphql import GraphQLNonNull, GraphQLObjectType, GraphQLUnionType

from resolvers import outcomes
from schema import schema
from schema.errors import ERROR_TYPES
from schema.results import SUCCESS_TYPES, USE_CASES, answer, graphql_type, outcomes_of

MUTATIONS = schema._schema.mutation_type.fields


def _union(field_name: str) -> GraphQLUnionType:
    result = MUTATIONS[field_name].type
    assert isinstance(result, GraphQLNonNull)
    assert isinstance(result.of_type, GraphQLUnionType)
    return result.of_type


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.capitalize() for p in rest)


def test_every_mutation_runs_a_registered_use_case() -> None:
    assert {_camel(name) for name in USE_CASES} == set(MUTATIONS)


@pytest.mark.parametrize("name", sorted(USE_CASES))
def test_each_outcome_of_the_use_case_is_a_member_of_the_union(name: str) -> None:
    use_case = USE_CASES[name]
    declared = outcomes_of(use_case)
    members = {t.name for t in _union(_camel(name)).types}
    expected = {graphql_type(o).__strawberry_definition__.name for o in declared}  # type: ignore[attr-defined]
    assert members == expected
    # exactly one success outcome; every other outcome is a declared error
    successes = [o for o in declared if o in SUCCESS_TYPES]
    assert len(successes) == 1, declared
    assert all(o in ERROR_TYPES for o in declared if o not in SUCCESS_TYPES), declared
    # the annotation the union came from is the one the type checker holds the use case to
    assert inspect.iscoroutinefunction(use_case)
    assert get_type_hints(use_case)["return"] is not None


def test_every_declared_error_has_a_graphql_type_implementing_error() -> None:
    names = {t.name for t in schema._schema.type_map.values()}
    for problem in outcomes.PROBLEMS:
        assert problem.graphql_name in names, problem
        error_type = schema._schema.type_map[problem.graphql_name]
        assert isinstance(error_type, GraphQLObjectType)
        fields = error_type.fields
        assert list(fields)[:2] == ["code", "message"], problem


def test_an_undeclared_outcome_is_refused_not_answered() -> None:
    allowed = outcomes_of(USE_CASES["create_learner"])
    with pytest.raises(TypeError, match="not a declared outcome"):
        answer(outcomes.EvidenceLocked(id="x"), allowed)
