"""The policy file as a truth table (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.enforcer import POLICY_PATH, PolicyError, PolicyStore, compile_grants, load_enforcer
from policies.scopes import PREDICATES
from policies.vocabulary import Action, Resource, Role, Scope

ENFORCER = load_enforcer()
STORE = PolicyStore(ENFORCER)

# (role, resource, action) → the scopes DESIGN.md's table grants.
TRUTH: list[tuple[Role, Resource, Action, set[Scope]]] = [
    (Role.SUPER_ADMIN, Resource.LEARNER, Action.READ, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.LEARNER, Action.READ, {Scope.ORGANISATION}),
    (Role.SENIOR_ASSESSOR, Resource.LEARNER, Action.READ, {Scope.ORGANISATION}),
    (Role.MANAGER, Resource.LEARNER, Action.READ, {Scope.TEAM}),
    (Role.ASSESSOR, Resource.LEARNER, Action.READ, {Scope.ASSIGNED}),
    (Role.TRAINING_COORDINATOR, Resource.LEARNER, Action.READ, {Scope.ASSIGNED}),
    (Role.EXTERNAL_ASSESSOR, Resource.LEARNER, Action.READ, {Scope.ALLOCATED}),
    (Role.LEARNER, Resource.LEARNER, Action.READ, {Scope.SELF}),
    (Role.SUPPORT, Resource.LEARNER, Action.READ, set()),
    (Role.ASSESSOR, Resource.RECORD, Action.READ, {Scope.ASSIGNED}),
    (Role.EXTERNAL_ASSESSOR, Resource.RECORD, Action.READ, {Scope.ALLOCATED}),
    (Role.SUPPORT, Resource.RECORD, Action.READ, set()),
    (Role.SUPPORT, Resource.EVIDENCE, Action.READ, set()),
    (Role.SUPPORT, Resource.ORGANISATION, Action.CREATE, {Scope.ALL}),
    (Role.SUPPORT, Resource.EXTERNAL_ASSESSOR, Action.CREATE, {Scope.ALL}),
    (Role.SUPER_ADMIN, Resource.EXTERNAL_ASSESSOR, Action.CREATE, set()),
    (Role.ADMIN, Resource.ORGANISATION, Action.CREATE, set()),
    (Role.SUPPORT, Resource.STAFF, Action.CREATE, {Scope.ALL}),
    (Role.SUPER_ADMIN, Resource.STAFF, Action.CREATE, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.STAFF, Action.CREATE, {Scope.ORGANISATION}),
    (Role.SENIOR_ASSESSOR, Resource.STAFF, Action.CREATE, set()),
    (Role.MANAGER, Resource.STAFF, Action.CREATE, set()),
    (Role.ADMIN, Resource.LEARNER, Action.CREATE, {Scope.ORGANISATION}),
    (Role.SUPPORT, Resource.LEARNER, Action.CREATE, set()),
    (Role.SENIOR_ASSESSOR, Resource.RECORD, Action.CREATE, set()),
    (Role.EXTERNAL_ASSESSOR, Resource.STAFF, Action.READ, set()),
    (Role.ASSESSOR, Resource.STAFF, Action.READ, {Scope.SELF}),
    (Role.MANAGER, Resource.STAFF, Action.READ, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.AUDIT_EVENT, Action.READ, {Scope.ORGANISATION}),
    (Role.ASSESSOR, Resource.AUDIT_EVENT, Action.READ, set()),
    # Course licences (DESIGN.md: licences; course catalogue and pools; rules; their actions)
    *[
        (role, Resource.LICENCE, Action.READ, scopes)
        for role, scopes in (
            (Role.SUPER_ADMIN, {Scope.ORGANISATION}),
            (Role.ADMIN, {Scope.ORGANISATION}),
            (Role.SENIOR_ASSESSOR, {Scope.ORGANISATION}),
            (Role.MANAGER, {Scope.TEAM}),
            (Role.ASSESSOR, {Scope.ASSIGNED}),
            (Role.TRAINING_COORDINATOR, {Scope.ASSIGNED}),
            (Role.EXTERNAL_ASSESSOR, {Scope.ALLOCATED}),
            (Role.LEARNER, {Scope.SELF}),
            (Role.SUPPORT, set()),
        )
    ],
    *[
        (
            role,
            Resource.COURSE,
            Action.READ,
            set() if role is Role.EXTERNAL_ASSESSOR else {Scope.ALL},
        )
        for role in Role
    ],
    *[
        (role, Resource.LICENCE_POOL, Action.READ, scopes)
        for role, scopes in (
            (Role.SUPER_ADMIN, {Scope.ORGANISATION}),
            (Role.ADMIN, {Scope.ORGANISATION}),
            (Role.MANAGER, {Scope.ORGANISATION}),
            (Role.SUPPORT, {Scope.ALL}),
            (Role.SENIOR_ASSESSOR, set()),
            (Role.ASSESSOR, set()),
            (Role.TRAINING_COORDINATOR, set()),
            (Role.LEARNER, set()),
            (Role.EXTERNAL_ASSESSOR, set()),
        )
    ],
    *[
        (role, Resource.AUTO_ALLOCATION_RULE, action, scopes)
        for action in (Action.READ, Action.CREATE, Action.DELETE)
        for role, scopes in (
            (Role.SUPER_ADMIN, {Scope.ORGANISATION}),
            (Role.ADMIN, {Scope.ORGANISATION}),
            *[(r, set()) for r in Role if r not in (Role.SUPER_ADMIN, Role.ADMIN)],
        )
    ],
    *[
        (role, resource, Action.CREATE, {Scope.ALL} if role is Role.SUPPORT else set())
        for resource in (Resource.COURSE, Resource.LICENCE_POOL)
        for role in Role
    ],
    *[
        (role, Resource.LEARNER, Action.ALLOCATE_LICENCES, scopes)
        for role, scopes in (
            (Role.SUPER_ADMIN, {Scope.ORGANISATION}),
            (Role.ADMIN, {Scope.ORGANISATION}),
            (Role.MANAGER, {Scope.TEAM}),
            *[(r, set()) for r in Role if r not in (Role.SUPER_ADMIN, Role.ADMIN, Role.MANAGER)],
        )
    ],
    *[
        (role, Resource.LICENCE, Action.LAUNCH, scopes)
        for role, scopes in (
            (Role.SUPER_ADMIN, {Scope.ORGANISATION}),
            (Role.ADMIN, {Scope.ORGANISATION}),
            (Role.LEARNER, {Scope.SELF}),
            *[(r, set()) for r in Role if r not in (Role.SUPER_ADMIN, Role.ADMIN, Role.LEARNER)],
        )
    ],
    (Role.SUPER_ADMIN, Resource.AUDIT_EVENT, Action.READ, {Scope.ORGANISATION}),
    (Role.SUPPORT, Resource.AUDIT_EVENT, Action.READ, {Scope.BY_SUPPORT}),
    (Role.MANAGER, Resource.AUDIT_EVENT, Action.READ, set()),
    (Role.SUPER_ADMIN, Resource.API_KEY, Action.READ, {Scope.ORGANISATION}),
    (Role.SUPER_ADMIN, Resource.API_KEY, Action.CREATE, {Scope.ORGANISATION}),
    (Role.SUPER_ADMIN, Resource.API_KEY, Action.REVOKE, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.API_KEY, Action.READ, set()),
    (Role.ADMIN, Resource.API_KEY, Action.CREATE, set()),
    (Role.ADMIN, Resource.API_KEY, Action.REVOKE, set()),
    (Role.SUPPORT, Resource.API_KEY, Action.READ, set()),
    (Role.SUPPORT, Resource.API_KEY, Action.CREATE, set()),
    # Update or deactivate staff, update learners, archive or restore records: ADMIN (org);
    # support changes the name of a person who also belongs elsewhere.
    (Role.SUPER_ADMIN, Resource.LEARNER, Action.UPDATE, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.LEARNER, Action.UPDATE, {Scope.ORGANISATION}),
    (Role.MANAGER, Resource.LEARNER, Action.UPDATE, set()),
    (Role.SUPPORT, Resource.LEARNER, Action.UPDATE, set()),
    (Role.LEARNER, Resource.LEARNER, Action.UPDATE, set()),
    (Role.ADMIN, Resource.STAFF, Action.UPDATE, {Scope.ORGANISATION}),
    (Role.SUPPORT, Resource.STAFF, Action.UPDATE, {Scope.ALL}),
    (Role.SENIOR_ASSESSOR, Resource.STAFF, Action.UPDATE, set()),
    (Role.MANAGER, Resource.STAFF, Action.UPDATE, set()),
    (Role.ASSESSOR, Resource.STAFF, Action.UPDATE, set()),
    (Role.SUPER_ADMIN, Resource.STAFF, Action.DEACTIVATE, {Scope.ORGANISATION}),
    (Role.ADMIN, Resource.STAFF, Action.DEACTIVATE, {Scope.ORGANISATION}),
    (Role.SUPPORT, Resource.STAFF, Action.DEACTIVATE, set()),
    (Role.MANAGER, Resource.STAFF, Action.DEACTIVATE, set()),
    (Role.ADMIN, Resource.RECORD, Action.ARCHIVE, {Scope.ORGANISATION}),
    (Role.SENIOR_ASSESSOR, Resource.RECORD, Action.ARCHIVE, set()),
    (Role.ASSESSOR, Resource.RECORD, Action.ARCHIVE, set()),
    (Role.EXTERNAL_ASSESSOR, Resource.RECORD, Action.ARCHIVE, set()),
]


@pytest.mark.parametrize(("role", "resource", "action", "scopes"), TRUTH)
def test_truth_table(role: Role, resource: Resource, action: Action, scopes: set[Scope]) -> None:
    for scope in Scope:
        assert ENFORCER.enforce(role.value, resource.value, action.value, scope.value) == (
            scope in scopes
        ), (role, resource, action, scope)
    assert STORE.scopes(frozenset({role}), resource, action) == scopes


def test_several_roles_hold_the_union() -> None:
    held = STORE.scopes(frozenset({Role.MANAGER, Role.ASSESSOR}), Resource.LEARNER, Action.READ)
    assert held == {Scope.TEAM, Scope.ASSIGNED}


def test_no_roles_hold_nothing() -> None:
    for resource in Resource:
        for action in Action:
            assert STORE.scopes(frozenset(), resource, action) == frozenset()


def test_every_read_scope_in_the_policy_has_a_predicate() -> None:
    rows = ENFORCER.get_policy()
    assert rows, "policy.csv is empty"
    for _role, resource, action, scope in rows:
        if action == Action.READ.value:
            assert (Resource(resource), Scope(scope)) in PREDICATES, (resource, scope)


def test_a_scope_without_a_predicate_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "policy.csv"
    bad.write_text(POLICY_PATH.read_text() + "\np, LEARNER, audit_event, read, team\n")
    with pytest.raises(PolicyError, match="no SQL predicate"):
        compile_grants(load_enforcer(policy=bad))


def test_an_unknown_word_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "policy.csv"
    bad.write_text(POLICY_PATH.read_text() + "\np, LEARNER, learner, read, everybody\n")
    with pytest.raises(PolicyError, match="unknown word"):
        compile_grants(load_enforcer(policy=bad))


def test_policy_uses_only_the_vocabulary() -> None:
    for row in ENFORCER.get_policy():
        Role(row[0])
        Resource(row[1])
        Action(row[2])
        Scope(row[3])
    for child, parent in ENFORCER.get_grouping_policy():
        Role(child)
        Role(parent)
