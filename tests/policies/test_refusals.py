"""Each mutation is declared once, next to its field (schema/*.py `mutation(...)`): the guard
(resource and action), the audit event, the repeat answer. The tables that read DESIGN.md on
their own (tests/authz/model.py, tests/policies/design_table.csv) must know every declared
mutation; FORBIDDEN messages come from the guard, in plain words."""

from __future__ import annotations

import re

from policies.vocabulary import NOUNS, VERBS, Action, Resource, refusal
from schema import schema
from schema.permissions import Guard
from schema.results import AUDITS, REPEATS
from tests.authz.model import ACTION_ROLES
from tests.policies.test_design_table import CELLS

MUTATIONS = schema._schema.mutation_type.fields


def guard_of(name: str) -> Guard:
    definition = MUTATIONS[name].extensions["strawberry-definition"]
    (guard,) = [e for e in definition.extensions if isinstance(e, Guard)]
    return guard


def test_every_mutation_is_declared_once_with_its_guard_audit_and_repeat() -> None:
    for name in MUTATIONS:
        guard = guard_of(name)  # exactly one guard
        assert guard.action is not None, name
        assert name in AUDITS and name in REPEATS, f"{name} lacks its audit or repeat declaration"


def test_the_independent_readings_of_design_know_every_declared_mutation() -> None:
    """The reference model and the design table read DESIGN.md, not the code: a declared
    mutation missing from either is a reading still to be written."""
    cells = {(c.resource, c.action) for c in CELLS}
    for name in MUTATIONS:
        assert name in ACTION_ROLES, f"tests/authz/model.py ACTION_ROLES has no {name}"
        guard = guard_of(name)
        pair = (guard.resource.value, guard.action.value)
        assert pair in cells, f"design_table.csv has no rows for {name}'s {pair}"


def test_every_mutation_refuses_in_plain_words() -> None:
    for name in MUTATIONS:
        guard = guard_of(name)
        message = refusal(guard.resource, guard.action)
        assert re.fullmatch(r"Your roles do not allow [a-z][A-Za-z -]+\.", message), (name, message)


def test_every_word_has_plain_english() -> None:
    assert set(NOUNS) == set(Resource)
    assert set(VERBS) == set(Action)
    for resource in Resource:
        for action in Action:
            for this in (False, True):
                message = refusal(resource, action, this=this)
                assert re.fullmatch(r"Your roles do not allow [a-z][A-Za-z -]+\.", message), message
    assert refusal(Resource.RECORD, Action.ARCHIVE, this=True) == (
        "Your roles do not allow archiving or restoring this apprentice record."
    )
