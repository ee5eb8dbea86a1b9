"""Casbin, loaded once; a request-scoped Policy that turns held scopes into SQL."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import casbin
from sqlalchemy import ColumnElement, false, or_

from policies.principal import Principal
from policies.scopes import PREDICATES, VIA_PARENT
from policies.vocabulary import Action, Resource, Role, Scope

POLICY_DIR = Path(__file__).resolve().parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

# Scopes that name which organisation a create happens in, rather than a set of rows.
ORGANISATION_SCOPES = frozenset({Scope.ALL, Scope.ORGANISATION})

Grants = dict[tuple[Role, Resource, Action], frozenset[Scope]]


class PolicyError(Exception):
    """policy.csv says something the vocabulary or the predicates do not know."""


def load_enforcer(model: Path = MODEL_PATH, policy: Path = POLICY_PATH) -> casbin.Enforcer:
    return casbin.Enforcer(str(model), str(policy))


def compile_grants(enforcer: casbin.Enforcer) -> Grants:
    """Ask Casbin, once per role, for every (resource, action, scope) it allows.

    Casbin is the authority (role inheritance included); the table is how a request asks
    without paying for `enforce()` per check.
    """
    grants: defaultdict[tuple[Role, Resource, Action], set[Scope]] = defaultdict(set)
    for role in Role:
        for row in enforcer.get_implicit_permissions_for_user(role.value):
            try:
                resource, action, scope = Resource(row[1]), Action(row[2]), Scope(row[3])
            except ValueError as exc:
                raise PolicyError(f"unknown word in policy row {row}: {exc}") from exc
            if action is Action.CREATE:
                if scope not in ORGANISATION_SCOPES:
                    raise PolicyError(f"create rows take scope all or organisation: {row}")
            elif (resource, scope) not in PREDICATES:
                raise PolicyError(f"scope {scope} has no SQL predicate for {resource}")
            grants[(role, resource, action)].add(scope)
    return {key: frozenset(scopes) for key, scopes in grants.items()}


class PolicyStore:
    """Loaded at start; hands out a Policy per request."""

    def __init__(self, enforcer: casbin.Enforcer | None = None) -> None:
        self.enforcer = enforcer or load_enforcer()
        self.grants = compile_grants(self.enforcer)

    def scopes(
        self, roles: frozenset[Role], resource: Resource, action: Action
    ) -> frozenset[Scope]:
        held: set[Scope] = set()
        for role in roles:
            held |= self.grants.get((role, resource, action), frozenset())
        return frozenset(held)

    def for_principal(self, principal: Principal, now: datetime) -> Policy:
        return Policy(self, principal, now)


@dataclass(frozen=True)
class Policy:
    """What one principal may do, at one instant (expiry is decided against `now`)."""

    store: PolicyStore
    principal: Principal
    now: datetime

    def scopes(self, resource: Resource, action: Action = Action.READ) -> frozenset[Scope]:
        return self.store.scopes(self.principal.roles, resource, action)

    def holds(self, resource: Resource, action: Action) -> bool:
        return bool(self.scopes(resource, action))

    def where(self, resource: Resource, action: Action = Action.READ) -> ColumnElement[bool]:
        """The rows of `resource` this principal may `action`: OR of held scopes, else none."""
        if action is Action.CREATE:
            raise ValueError("create scopes name an organisation; use may_act_in")
        scopes = sorted(self.scopes(resource, action))
        if not scopes:
            return false()
        clauses = [PREDICATES[(resource, scope)](self.principal, self.now) for scope in scopes]
        return clauses[0] if len(clauses) == 1 else or_(*clauses)

    def implied_by_parent(
        self, child: Resource, parent: Resource, parent_model: type, column: str
    ) -> bool:
        """Whether every `child` row whose `column` holds the id of a `parent_model` row the
        caller may read as `parent` is one the caller may read too (READ): each scope held on
        the parent is one held on the child that reads through that parent
        (scopes.VIA_PARENT). A statement that reaches the child from an already scoped parent
        then needs no second test."""
        via = VIA_PARENT.get((child, parent))
        if via is None or via[0] is not parent_model or via[1] != column:
            return False
        return self.scopes(parent) <= via[2] & self.scopes(child)

    def may_act_in(self, resource: Resource, action: Action, organisation_id: int) -> bool:
        """Whether `action` on `resource` is allowed inside the given organisation."""
        scopes = self.scopes(resource, action)
        if Scope.ALL in scopes:
            return True
        return Scope.ORGANISATION in scopes and organisation_id == self.principal.organisation_id
