"""Per-request dataloaders: one SQL statement per batch, scoped by the policy.

Loaders named `*_ref` fetch rows that a visible parent points at (the organisation, unit or
person shown on a visible learner, record, assignment or allocation): the parent's
visibility is the grant. Every loader of learner data applies the policy's predicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from strawberry.dataloader import DataLoader

from db.models import (
    Allocation,
    ApprenticeRecord,
    Department,
    Evidence,
    Learner,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    User,
)
from policies.vocabulary import Resource, Role
from resolvers.context import Context


def by_id(
    ctx: Context, model: Any, where: Callable[[], ColumnElement[bool]] | None = None
) -> DataLoader[int, Any]:
    async def load(ids: Sequence[int]) -> list[Any]:
        stmt = select(model).where(model.id.in_(ids))
        if where is not None:
            stmt = stmt.where(where())
        found = {row.id: row for row in await ctx.db.scalars(stmt)}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def _grouped(
    ctx: Context, column: Any, stmt: Callable[[Sequence[Any]], Select[Any]]
) -> DataLoader[Any, list[Any]]:
    async def load(keys: Sequence[Any]) -> list[list[Any]]:
        groups: defaultdict[Any, list[Any]] = defaultdict(list)
        for row in await ctx.db.scalars(stmt(keys)):
            groups[getattr(row, column.key)].append(row)
        return [groups.get(k, []) for k in keys]

    return DataLoader(load_fn=load)


class Loaders:
    def __init__(self, ctx: Context) -> None:
        rules = ctx.rules
        now = ctx.now
        self.organisation_ref = by_id(ctx, Organisation)
        self.location_ref = by_id(ctx, Location)
        self.department_ref = by_id(ctx, Department)
        self.user_ref = by_id(ctx, User)
        self.learner = by_id(ctx, Learner, lambda: rules.where(Resource.LEARNER))
        self.record = by_id(ctx, ApprenticeRecord, lambda: rules.where(Resource.RECORD))

        self.records_by_learner = _grouped(
            ctx,
            ApprenticeRecord.learner_id,
            lambda keys: (
                select(ApprenticeRecord)
                .where(ApprenticeRecord.learner_id.in_(keys), rules.where(Resource.RECORD))
                .order_by(ApprenticeRecord.id)
            ),
        )
        self.assignments_by_record = _grouped(
            ctx,
            RecordAssignment.record_id,
            lambda keys: (
                select(RecordAssignment)
                .where(
                    RecordAssignment.record_id.in_(keys),
                    RecordAssignment.ended_at.is_(None),
                    rules.where(Resource.ASSIGNMENT),
                )
                .order_by(RecordAssignment.id)
            ),
        )
        self.allocations_by_learner = _grouped(
            ctx,
            Allocation.learner_id,
            lambda keys: (
                select(Allocation)
                .where(
                    Allocation.learner_id.in_(keys),
                    Allocation.ended_at.is_(None),
                    or_(Allocation.expires_at.is_(None), Allocation.expires_at > now),
                    rules.where(Resource.ALLOCATION),
                )
                .order_by(Allocation.id)
            ),
        )
        self.evidence_by_record = _grouped(
            ctx,
            Evidence.record_id,
            lambda keys: (
                select(Evidence)
                .where(Evidence.record_id.in_(keys), rules.where(Resource.EVIDENCE))
                .order_by(Evidence.id)
            ),
        )
        self.nodes: dict[str, DataLoader[int, Any]] = {}  # node(id:), one loader per type
        self.roles_by_user = self._roles(ctx)
        self.caseload_by_user = self._caseload(ctx)

    @staticmethod
    def _caseload(ctx: Context) -> DataLoader[int, int]:
        """Each user's active assignments that the caller can see."""
        rules = ctx.rules

        async def load(user_ids: Sequence[int]) -> list[int]:
            stmt = (
                select(RecordAssignment.user_id, func.count())
                .where(
                    RecordAssignment.user_id.in_(user_ids),
                    RecordAssignment.ended_at.is_(None),
                    rules.where(Resource.ASSIGNMENT),
                )
                .group_by(RecordAssignment.user_id)
            )
            rows: Sequence[Any] = (await ctx.db.execute(stmt)).all()
            counts = {user_id: count for user_id, count in rows}
            return [int(counts.get(u, 0)) for u in user_ids]

        return DataLoader(load_fn=load)

    @staticmethod
    def _roles(ctx: Context) -> DataLoader[int, list[Role]]:
        """Each user's roles in the organisation the caller acts in."""
        organisation_id = ctx.me.organisation_id

        async def load(user_ids: Sequence[int]) -> list[list[Role]]:
            if organisation_id is None:
                return [[] for _ in user_ids]
            stmt = (
                select(Membership.user_id, MembershipRole.role)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(
                    Membership.user_id.in_(user_ids),
                    Membership.organisation_id == organisation_id,
                )
            )
            roles: defaultdict[int, list[Role]] = defaultdict(list)
            rows: Sequence[Any] = (await ctx.db.execute(stmt)).all()
            for user_id, role in rows:
                roles[user_id].append(Role(role))
            order = list(Role)
            return [sorted(roles.get(u, []), key=order.index) for u in user_ids]

        return DataLoader(load_fn=load)
