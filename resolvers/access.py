"""Who can currently see a learner, and why — decided by the policy's own scope predicates.

Candidates are everyone who could hold a scope over a learner: the organisation's members
(staff, and the learner's own sign-in), its active API keys, and external assessors with an
open allocation to the learner. For every candidate and every scope their roles hold, the
scope's SQL predicate is evaluated against the learners, all in one statement per 500
candidate scopes. A page of learners costs the same few statements as one learner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, or_, select
from strawberry.dataloader import DataLoader

from db.models import Allocation, ApiKey, Learner, Membership, MembershipRole, User, UserKind
from policies.identity import MembershipRow, Refused, key_principal, person_principal
from policies.principal import Principal
from policies.scopes import PREDICATES
from policies.vocabulary import Action, Resource, Role, Scope, refusal
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.loaders import loader

# SQLite allows 2,000 result columns, PostgreSQL 1,664: evaluate in chunks well below both.
CHUNK = 500


@dataclass(frozen=True)
class AccessGrant:
    user: User
    role: Role
    scope: Scope
    expires_at: datetime | None
    api_key_id: int | None = None


class AccessLoaders(LoaderGroup):
    @loader
    @staticmethod
    def grants(ctx: Context) -> DataLoader[int, list[AccessGrant]]:
        return DataLoader(load_fn=lambda ids: _grants(ctx, ids))


async def learner_access(ctx: Context, learner: Learner) -> list[AccessGrant]:
    return await ctx.loaders(AccessLoaders).grants.load(learner.id)


async def _grants(ctx: Context, ids: Sequence[int]) -> list[list[AccessGrant] | Exception]:
    learners = {
        row.id: row
        for row in await ctx.db.scalars(
            select(Learner).where(
                Learner.id.in_(ids), ctx.rules.where(Resource.LEARNER, Action.VIEW_ACCESS)
            )
        )
    }
    organisations = {learner.organisation_id for learner in learners.values()}
    sign_ins = {learner.user_id for learner in learners.values() if learner.user_id is not None}
    # Open (not ended) allocations: who might hold ALLOCATED, and when each stops granting.
    open_allocations: dict[tuple[int, int], datetime | None] = {
        (a.learner_id, a.assessor_id): a.expires_at
        for a in await ctx.db.scalars(
            select(Allocation).where(
                Allocation.learner_id.in_(list(learners)), Allocation.ended_at.is_(None)
            )
        )
    }
    candidates = await _members(ctx, organisations, sign_ins) + await _api_keys(ctx, organisations)
    candidates += _signed_in(
        person_principal((a, UserKind.EXTERNAL_ASSESSOR), (), slug=None)
        for a in sorted({assessor for _, assessor in open_allocations})
    )
    store = ctx.rules.store
    checks = [
        (principal, role, scope)
        for principal in candidates
        for role in sorted(principal.roles)
        for scope in sorted(store.scopes(frozenset({role}), Resource.LEARNER, Action.READ))
    ]
    held: defaultdict[int, list[tuple[Principal, Role, Scope]]] = defaultdict(list)
    for start in range(0, len(checks), CHUNK):
        chunk = checks[start : start + CHUNK]
        columns = [
            case((PREDICATES[(Resource.LEARNER, scope)](principal, ctx.now), 1), else_=0)
            for principal, _role, scope in chunk
        ]
        rows: Sequence[Any] = (
            await ctx.db.execute(select(Learner.id, *columns).where(Learner.id.in_(list(learners))))
        ).all()
        for learner_id, *values in rows:
            held[learner_id] += [check for check, value in zip(chunk, values, strict=True) if value]

    user_ids = list({p.user_id for found in held.values() for p, _, _ in found})
    users = {u.id: u for u in await ctx.db.scalars(select(User).where(User.id.in_(user_ids)))}
    answers: list[list[AccessGrant] | Exception] = []
    for learner_id in ids:
        if learner_id not in learners:
            answers.append(Forbidden(refusal(Resource.LEARNER, Action.VIEW_ACCESS, this=True)))
            continue
        grants = [
            AccessGrant(
                user=users[p.user_id],
                role=role,
                scope=scope,
                expires_at=open_allocations.get((learner_id, p.user_id))
                if scope is Scope.ALLOCATED
                else None,
                api_key_id=p.api_key_id,
            )
            for p, role, scope in held[learner_id]
        ]
        answers.append(sorted(grants, key=lambda g: (g.user.name, g.user.id, g.role, g.scope)))
    return answers


async def _members(ctx: Context, organisations: set[int], sign_ins: set[int]) -> list[Principal]:
    """Staff of the organisations, and the learners' own sign-ins, as who they are when they sign
    in there (a deactivated membership signs in as nobody, so it grants nothing)."""
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(Membership, MembershipRole.role)
            .join(MembershipRole, MembershipRole.membership_id == Membership.id)
            .where(
                Membership.organisation_id.in_(organisations),
                # LEARNER reaches only the learner themself: worth asking of sign-ins only.
                or_(
                    MembershipRole.role != Role.LEARNER.value,
                    Membership.user_id.in_(sign_ins),
                ),
            )
        )
    ).all()
    roles: defaultdict[int, set[Role]] = defaultdict(set)
    memberships: dict[int, Membership] = {}
    for membership, role in rows:
        roles[membership.id].add(Role(role))
        memberships[membership.id] = membership
    return _signed_in(
        person_principal(
            (m.user_id, UserKind.STAFF),
            [
                MembershipRow(
                    m.organisation_id,
                    None,
                    m.location_id,
                    m.department_id,
                    frozenset(roles[m.id]),
                    m.deactivated_at,
                )
            ],
            slug=None,
        )
        for m in memberships.values()
    )


async def _api_keys(ctx: Context, organisations: set[int]) -> list[Principal]:
    """The organisations' API keys that still work, as the principals they act as."""
    keys = await ctx.db.scalars(select(ApiKey).where(ApiKey.organisation_id.in_(organisations)))
    return _signed_in(
        key_principal(
            key_id=key.id,
            user_id=key.user_id,
            organisation_id=key.organisation_id,
            roles=key.roles,
            revoked_at=key.revoked_at,
            now=ctx.now,
        )
        for key in keys
    )


def _signed_in(found: Iterable[Principal | Refused]) -> list[Principal]:
    """The candidates who would sign in (policies/identity.py decides who would not)."""
    return [p for p in found if isinstance(p, Principal)]
