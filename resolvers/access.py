"""Who can currently see a learner, and why — decided by the policy's own scope predicates.

Candidates are the people who could hold a scope over the learner: the organisation's staff
(members with a role other than LEARNER), the learner's own sign-in, and external assessors
with an open allocation to them. For each candidate and each scope their roles hold, the
scope's SQL predicate is evaluated against this learner, all in one statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, or_, select

from db.models import Allocation, Learner, Membership, MembershipRole, User, UserKind
from policies.principal import Principal
from policies.scopes import PREDICATES
from policies.vocabulary import Action, Resource, Role, Scope, refusal
from resolvers.context import Context
from resolvers.errors import Forbidden

# SQLite allows 2,000 result columns, PostgreSQL 1,664: evaluate in chunks well below both.
CHUNK = 500


@dataclass(frozen=True)
class AccessGrant:
    user: User
    role: Role
    scope: Scope
    expires_at: datetime | None


async def _candidates(
    ctx: Context, learner: Learner, open_allocations: dict[int, datetime | None]
) -> list[Principal]:
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(Membership, MembershipRole.role)
            .join(MembershipRole, MembershipRole.membership_id == Membership.id)
            .where(
                Membership.organisation_id == learner.organisation_id,
                or_(
                    MembershipRole.role != Role.LEARNER.value, Membership.user_id == learner.user_id
                ),
            )
        )
    ).all()
    roles: defaultdict[int, set[Role]] = defaultdict(set)
    memberships: dict[int, Membership] = {}
    for membership, role in rows:
        roles[membership.user_id].add(Role(role))
        memberships[membership.user_id] = membership
    principals = [
        Principal(
            user_id,
            UserKind.STAFF,
            frozenset(roles[user_id]),
            organisation_id=m.organisation_id,
            location_id=m.location_id,
            department_id=m.department_id,
        )
        for user_id, m in memberships.items()
    ]
    principals += [
        Principal(a, UserKind.EXTERNAL_ASSESSOR, frozenset({Role.EXTERNAL_ASSESSOR}))
        for a in open_allocations
    ]
    return principals


async def learner_access(ctx: Context, learner: Learner) -> list[AccessGrant]:
    permitted = await ctx.db.scalar(
        select(Learner.id).where(
            Learner.id == learner.id, ctx.rules.where(Resource.LEARNER, Action.VIEW_ACCESS)
        )
    )
    if permitted is None:
        raise Forbidden(refusal(Resource.LEARNER, Action.VIEW_ACCESS, this=True))
    # Open (not ended) allocations: who might hold ALLOCATED, and when each stops granting.
    open_allocations: dict[int, datetime | None] = {
        a.assessor_id: a.expires_at
        for a in await ctx.db.scalars(
            select(Allocation).where(
                Allocation.learner_id == learner.id, Allocation.ended_at.is_(None)
            )
        )
    }
    store = ctx.rules.store
    checks: list[tuple[Principal, Role, Scope]] = [
        (principal, role, scope)
        for principal in await _candidates(ctx, learner, open_allocations)
        for role in sorted(principal.roles)
        for scope in sorted(store.scopes(frozenset({role}), Resource.LEARNER, Action.READ))
    ]
    held: list[tuple[Principal, Role, Scope]] = []
    for start in range(0, len(checks), CHUNK):
        chunk = checks[start : start + CHUNK]
        columns = [
            case((PREDICATES[(Resource.LEARNER, scope)](principal, ctx.now), 1), else_=0)
            for principal, _role, scope in chunk
        ]
        row = (await ctx.db.execute(select(*columns).where(Learner.id == learner.id))).one()
        held += [check for check, value in zip(chunk, row, strict=True) if value]

    user_ids = list({p.user_id for p, _, _ in held})
    users = {u.id: u for u in await ctx.db.scalars(select(User).where(User.id.in_(user_ids)))}
    grants = [
        AccessGrant(
            user=users[p.user_id],
            role=role,
            scope=scope,
            expires_at=open_allocations.get(p.user_id) if scope is Scope.ALLOCATED else None,
        )
        for p, role, scope in held
    ]
    return sorted(grants, key=lambda g: (g.user.name, g.user.id, g.role, g.scope))
