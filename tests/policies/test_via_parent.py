"""When a child row's scope test is implied by its parent's (no database): the compiled read
path leaves the test out only in these cases. That the left-out test answers alike is proved
on data by tests/api/test_compiled.py (compiled == standard) and the authorisation proof."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from db.models import ApprenticeRecord, Learner, UserKind
from policies.enforcer import Policy, PolicyStore
from policies.principal import Principal
from policies.scopes import PREDICATES, VIA_PARENT
from policies.vocabulary import Resource, Role, Scope

STORE = PolicyStore()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def policy(*roles: Role) -> Policy:
    kind = UserKind.EXTERNAL_ASSESSOR if Role.EXTERNAL_ASSESSOR in roles else UserKind.STAFF
    principal = Principal(user_id=1, kind=kind, roles=frozenset(roles), organisation_id=1)
    return STORE.for_principal(principal, NOW)


@pytest.mark.parametrize(
    ("roles", "child", "parent", "model", "column", "implied"),
    [
        # An assessor's record is one assigned to them: so is every assignment under it.
        (
            (Role.ASSESSOR,),
            Resource.ASSIGNMENT,
            Resource.RECORD,
            ApprenticeRecord,
            "record_id",
            True,
        ),
        ((Role.ASSESSOR,), Resource.EVIDENCE, Resource.RECORD, ApprenticeRecord, "record_id", True),
        # ... and their learner's licences and allocations are their learner's.
        ((Role.ASSESSOR,), Resource.LICENCE, Resource.LEARNER, Learner, "learner_id", True),
        ((Role.ASSESSOR,), Resource.ALLOCATION, Resource.LEARNER, Learner, "learner_id", True),
        # But not every record of their learner: only the ones assigned to them.
        ((Role.ASSESSOR,), Resource.RECORD, Resource.LEARNER, Learner, "learner_id", False),
        # An external assessor sees their own allocations, not every one of their learner's.
        (
            (Role.EXTERNAL_ASSESSOR,),
            Resource.ALLOCATION,
            Resource.LEARNER,
            Learner,
            "learner_id",
            False,
        ),
        ((Role.EXTERNAL_ASSESSOR,), Resource.RECORD, Resource.LEARNER, Learner, "learner_id", True),
        # Organisation scopes read the child's own column: always tested.
        (
            (Role.SENIOR_ASSESSOR,),
            Resource.ASSIGNMENT,
            Resource.RECORD,
            ApprenticeRecord,
            "record_id",
            False,
        ),
        # One role with the organisation scope among several: tested.
        (
            (Role.ASSESSOR, Role.ADMIN),
            Resource.ASSIGNMENT,
            Resource.RECORD,
            ApprenticeRecord,
            "record_id",
            False,
        ),
        # Another column, another parent's model or an unlisted pair: tested.
        (
            (Role.ASSESSOR,),
            Resource.ASSIGNMENT,
            Resource.RECORD,
            ApprenticeRecord,
            "user_id",
            False,
        ),
        ((Role.ASSESSOR,), Resource.ASSIGNMENT, Resource.RECORD, Learner, "record_id", False),
        ((Role.ASSESSOR,), Resource.ASSIGNMENT, Resource.LEARNER, Learner, "learner_id", False),
    ],
)
def test_implied_by_parent(
    roles: tuple[Role, ...],
    child: Resource,
    parent: Resource,
    model: type,
    column: str,
    implied: bool,
) -> None:
    assert policy(*roles).implied_by_parent(child, parent, model, column) is implied


def test_every_listed_scope_has_predicates_on_both_sides() -> None:
    for (child, parent), (_, _, scopes) in VIA_PARENT.items():
        for scope in scopes:
            assert (child, scope) in PREDICATES, (child, scope)
            assert (parent, scope) in PREDICATES, (parent, scope)
    assert Scope.ORGANISATION not in {s for _, _, via in VIA_PARENT.values() for s in via}
