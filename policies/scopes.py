"""One SQL predicate per (resource, scope). The policy OR-s the predicates a principal holds.

Every predicate is a WHERE clause over the resource's table; where it must look at
assignments or allocations it tests membership of an uncorrelated `IN (…)` set of the
principal's own rows. Lists, counts, single rows, dataloader batches and mutation targets
all filter in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true

from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AuditEvent,
    AutoAllocationRule,
    Department,
    Evidence,
    Learner,
    Licence,
    LicencePool,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    User,
    UserKind,
    WebhookDelivery,
    WebhookEndpoint,
)
from policies.principal import Principal
from policies.vocabulary import Resource, Role, Scope

Predicate = Callable[[Principal, datetime], ColumnElement[bool]]

PREDICATES: dict[tuple[Resource, Scope], Predicate] = {}


def predicate(resource: Resource, scope: Scope) -> Callable[[Predicate], Predicate]:
    def register(fn: Predicate) -> Predicate:
        assert (resource, scope) not in PREDICATES, (resource, scope)
        PREDICATES[(resource, scope)] = fn
        return fn

    return register


def in_organisation(column: ColumnElement[int] | object, p: Principal) -> ColumnElement[bool]:
    if p.organisation_id is None:
        return false()
    return column == p.organisation_id  # type: ignore[return-value]


def active_allocation(p: Principal, now: datetime) -> ColumnElement[bool]:
    """An allocation to the principal that grants access at `now`."""
    return and_(
        Allocation.assessor_id == p.user_id,
        Allocation.ended_at.is_(None),
        or_(Allocation.expires_at.is_(None), Allocation.expires_at > now),
    )


def active_assignment(p: Principal) -> ColumnElement[bool]:
    """An active assignment of the principal, in the organisation they act in."""
    return and_(
        RecordAssignment.user_id == p.user_id,
        RecordAssignment.ended_at.is_(None),
        in_organisation(RecordAssignment.organisation_id, p),
    )


# Learners -------------------------------------------------------------------------------


@predicate(Resource.LEARNER, Scope.ORGANISATION)
def learner_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(Learner.organisation_id, p)


@predicate(Resource.LEARNER, Scope.TEAM)
def learner_in_team(p: Principal, now: datetime) -> ColumnElement[bool]:
    if p.location_id is None and p.department_id is None:
        return false()
    clauses = [in_organisation(Learner.organisation_id, p)]
    if p.location_id is not None:
        clauses.append(Learner.location_id == p.location_id)
    if p.department_id is not None:
        clauses.append(Learner.department_id == p.department_id)
    return and_(*clauses)


# Assigned and allocated scopes are uncorrelated IN (...) sets: the principal's own
# assignments or allocations are few, and the planner turns them into primary-key probes
# instead of testing every row of a large organisation. `correlate(None)` keeps them
# uncorrelated wherever they are nested (a filter's EXISTS over the same tables included).


def assigned_record_ids(p: Principal) -> Select[int]:
    return select(RecordAssignment.record_id).where(active_assignment(p)).correlate(None)


def assigned_learner_ids(p: Principal) -> Select[int]:
    return (
        select(ApprenticeRecord.learner_id)
        .where(ApprenticeRecord.id.in_(assigned_record_ids(p)))
        .correlate(None)
    )


def allocated_learner_ids(p: Principal, now: datetime) -> Select[int]:
    return select(Allocation.learner_id).where(active_allocation(p, now)).correlate(None)


@predicate(Resource.LEARNER, Scope.ASSIGNED)
def learner_assigned(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Learner.id.in_(assigned_learner_ids(p))


@predicate(Resource.LEARNER, Scope.ALLOCATED)
def learner_allocated(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Learner.id.in_(allocated_learner_ids(p, now))


@predicate(Resource.LEARNER, Scope.SELF)
def learner_self(p: Principal, now: datetime) -> ColumnElement[bool]:
    return and_(Learner.user_id == p.user_id, in_organisation(Learner.organisation_id, p))


def learner_ids(fn: Predicate, p: Principal, now: datetime) -> Select[int]:
    return select(Learner.id).where(fn(p, now)).correlate(None)


# Apprentice records ---------------------------------------------------------------------


@predicate(Resource.RECORD, Scope.ORGANISATION)
def record_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(ApprenticeRecord.organisation_id, p)


@predicate(Resource.RECORD, Scope.TEAM)
def record_in_team(p: Principal, now: datetime) -> ColumnElement[bool]:
    return ApprenticeRecord.learner_id.in_(learner_ids(learner_in_team, p, now))


@predicate(Resource.RECORD, Scope.ASSIGNED)
def record_assigned(p: Principal, now: datetime) -> ColumnElement[bool]:
    return ApprenticeRecord.id.in_(assigned_record_ids(p))


@predicate(Resource.RECORD, Scope.ALLOCATED)
def record_allocated(p: Principal, now: datetime) -> ColumnElement[bool]:
    return ApprenticeRecord.learner_id.in_(allocated_learner_ids(p, now))


@predicate(Resource.RECORD, Scope.SELF)
def record_self(p: Principal, now: datetime) -> ColumnElement[bool]:
    return ApprenticeRecord.learner_id.in_(learner_ids(learner_self, p, now))


def record_ids(scope: Scope, p: Principal, now: datetime) -> Select[int]:
    return (
        select(ApprenticeRecord.id)
        .where(PREDICATES[(Resource.RECORD, scope)](p, now))
        .correlate(None)
    )


# Rows that hang off a record: visible where their record is ----------------------------


def _register_record_children() -> None:
    for resource, record_id, organisation_id in (
        (Resource.ASSIGNMENT, RecordAssignment.record_id, RecordAssignment.organisation_id),
        (Resource.EVIDENCE, Evidence.record_id, Evidence.organisation_id),
    ):
        for scope in (Scope.TEAM, Scope.ASSIGNED, Scope.ALLOCATED, Scope.SELF):

            def via_record(
                p: Principal, now: datetime, scope: Scope = scope, column: object = record_id
            ) -> ColumnElement[bool]:
                return column.in_(record_ids(scope, p, now))  # type: ignore[attr-defined, no-any-return]

            predicate(resource, scope)(via_record)

        def in_org(
            p: Principal, now: datetime, column: object = organisation_id
        ) -> ColumnElement[bool]:
            return in_organisation(column, p)

        predicate(resource, Scope.ORGANISATION)(in_org)


_register_record_children()


# A child's scope that reads "the row's parent passes the parent's predicate of the same
# scope", through the child's column holding the parent's id: (child, parent) → (the parent's
# model, that column, those scopes). For a child row reached from a parent row through that
# column (child.column = parent.id), the child's predicate of such a scope holds exactly when
# the parent's does (the parent's id is its primary key).
_VIA_RECORD = frozenset({Scope.TEAM, Scope.ASSIGNED, Scope.ALLOCATED, Scope.SELF})
VIA_PARENT: dict[tuple[Resource, Resource], tuple[type, str, frozenset[Scope]]] = {
    (Resource.ASSIGNMENT, Resource.RECORD): (ApprenticeRecord, "record_id", _VIA_RECORD),
    (Resource.EVIDENCE, Resource.RECORD): (ApprenticeRecord, "record_id", _VIA_RECORD),
    # A record's `assigned` scope is its own assignments, not its learner's: not here.
    (Resource.RECORD, Resource.LEARNER): (
        Learner,
        "learner_id",
        frozenset({Scope.TEAM, Scope.ALLOCATED, Scope.SELF}),
    ),
    # An allocation's `allocated` scope is the caller's own allocations: not here.
    (Resource.ALLOCATION, Resource.LEARNER): (
        Learner,
        "learner_id",
        frozenset({Scope.TEAM, Scope.ASSIGNED, Scope.SELF}),
    ),
    (Resource.LICENCE, Resource.LEARNER): (
        Learner,
        "learner_id",
        frozenset({Scope.TEAM, Scope.ASSIGNED, Scope.ALLOCATED, Scope.SELF}),
    ),
}


# Allocations ----------------------------------------------------------------------------


@predicate(Resource.ALLOCATION, Scope.ORGANISATION)
def allocation_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(Allocation.organisation_id, p)


@predicate(Resource.ALLOCATION, Scope.TEAM)
def allocation_in_team(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Allocation.learner_id.in_(learner_ids(learner_in_team, p, now))


@predicate(Resource.ALLOCATION, Scope.ASSIGNED)
def allocation_assigned(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Allocation.learner_id.in_(assigned_learner_ids(p))


@predicate(Resource.ALLOCATION, Scope.ALLOCATED)
def allocation_own(p: Principal, now: datetime) -> ColumnElement[bool]:
    return active_allocation(p, now)


@predicate(Resource.ALLOCATION, Scope.SELF)
def allocation_self(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Allocation.learner_id.in_(learner_ids(learner_self, p, now))


# People ---------------------------------------------------------------------------------


def staff_membership(p: Principal | None = None) -> ColumnElement[bool]:
    """The user (correlated) is staff: a membership holding a role other than LEARNER — in the
    principal's organisation when one is given, else anywhere. A learner's sign-in is not staff.
    """
    clauses = [
        Membership.user_id == User.id,
        MembershipRole.membership_id == Membership.id,
        MembershipRole.role != Role.LEARNER.value,
    ]
    if p is not None:
        clauses.append(in_organisation(Membership.organisation_id, p))
    return and_(
        User.kind == UserKind.STAFF,
        exists(select(Membership.id).where(*clauses).correlate(User)),
    )


@predicate(Resource.STAFF, Scope.ALL)
def staff_all(p: Principal, now: datetime) -> ColumnElement[bool]:
    return staff_membership()


@predicate(Resource.STAFF, Scope.ORGANISATION)
def staff_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return staff_membership(p)


@predicate(Resource.STAFF, Scope.SELF)
def staff_self(p: Principal, now: datetime) -> ColumnElement[bool]:
    return and_(User.id == p.user_id, staff_membership(p))


@predicate(Resource.EXTERNAL_ASSESSOR, Scope.ALL)
def external_assessor_all(p: Principal, now: datetime) -> ColumnElement[bool]:
    return User.kind == UserKind.EXTERNAL_ASSESSOR


@predicate(Resource.EXTERNAL_ASSESSOR, Scope.ALLOCATED_HERE)
def external_assessor_allocated_here(p: Principal, now: datetime) -> ColumnElement[bool]:
    return and_(
        User.kind == UserKind.EXTERNAL_ASSESSOR,
        exists(
            select(Allocation.id)
            .where(
                Allocation.assessor_id == User.id,
                in_organisation(Allocation.organisation_id, p),
                Allocation.ended_at.is_(None),
                or_(Allocation.expires_at.is_(None), Allocation.expires_at > now),
            )
            .correlate(User)
        ),
    )


# The organisation and its units ---------------------------------------------------------


@predicate(Resource.ORGANISATION, Scope.ALL)
def organisation_all(p: Principal, now: datetime) -> ColumnElement[bool]:
    return true()


@predicate(Resource.ORGANISATION, Scope.ORGANISATION)
def organisation_own(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(Organisation.id, p)


predicate(Resource.LOCATION, Scope.ALL)(lambda p, now: true())
predicate(Resource.DEPARTMENT, Scope.ALL)(lambda p, now: true())
predicate(Resource.LOCATION, Scope.ORGANISATION)(
    lambda p, now: in_organisation(Location.organisation_id, p)
)
predicate(Resource.DEPARTMENT, Scope.ORGANISATION)(
    lambda p, now: in_organisation(Department.organisation_id, p)
)


@predicate(Resource.AUDIT_EVENT, Scope.ORGANISATION)
def audit_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(AuditEvent.organisation_id, p)


# Course licences --------------------------------------------------------------------------
# A licence is visible exactly when its learner is: each scope tests the licence's learner
# against that scope's learners (the organisation scope reads the licence's own column).


@predicate(Resource.LICENCE, Scope.ORGANISATION)
def licence_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(Licence.organisation_id, p)


@predicate(Resource.LICENCE, Scope.TEAM)
def licence_in_team(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Licence.learner_id.in_(learner_ids(learner_in_team, p, now))


@predicate(Resource.LICENCE, Scope.ASSIGNED)
def licence_assigned(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Licence.learner_id.in_(assigned_learner_ids(p))


@predicate(Resource.LICENCE, Scope.ALLOCATED)
def licence_allocated(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Licence.learner_id.in_(allocated_learner_ids(p, now))


@predicate(Resource.LICENCE, Scope.SELF)
def licence_self(p: Principal, now: datetime) -> ColumnElement[bool]:
    return Licence.learner_id.in_(learner_ids(learner_self, p, now))


predicate(Resource.COURSE, Scope.ALL)(lambda p, now: true())
predicate(Resource.LICENCE_POOL, Scope.ALL)(lambda p, now: true())
predicate(Resource.LICENCE_POOL, Scope.ORGANISATION)(
    lambda p, now: in_organisation(LicencePool.organisation_id, p)
)
predicate(Resource.AUTO_ALLOCATION_RULE, Scope.ORGANISATION)(
    lambda p, now: in_organisation(AutoAllocationRule.organisation_id, p)
)


@predicate(Resource.AUDIT_EVENT, Scope.BY_SUPPORT)
def audit_by_support(p: Principal, now: datetime) -> ColumnElement[bool]:
    support_users = select(User.id).where(User.kind == UserKind.SUPPORT).correlate(None)
    return and_(AuditEvent.api_key_id.is_(None), AuditEvent.actor_id.in_(support_users))


@predicate(Resource.API_KEY, Scope.ORGANISATION)
def api_key_in_organisation(p: Principal, now: datetime) -> ColumnElement[bool]:
    return in_organisation(ApiKey.organisation_id, p)


predicate(Resource.WEBHOOK_ENDPOINT, Scope.ORGANISATION)(
    lambda p, now: in_organisation(WebhookEndpoint.organisation_id, p)
)
predicate(Resource.WEBHOOK_DELIVERY, Scope.ORGANISATION)(
    lambda p, now: in_organisation(WebhookDelivery.organisation_id, p)
)
