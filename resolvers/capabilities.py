"""Capabilities: what the caller may do with each object (`viewerCan`), and without one (`can`).

A flag is true exactly when the mutation it names, on that object alone, would answer neither
FORBIDDEN, NOT_FOUND nor a state error (an archived record, a launched or inactive licence, a
decided piece of evidence); the other items of a bulk call, seats and the values a mutation is
given are left out. Each flag is the mutation's own test in SQL: the read scopes (visibility),
the action's scopes (as `mutation_target` and the bulk mutations compute them) and the row's
state. One statement per type per request computes every flag of every object of that type
the response shows: never `enforce()` per row, never rows filtered in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, or_, select, true
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AutoAllocationRule,
    Course,
    Evidence,
    EvidenceStatus,
    Learner,
    Licence,
    LicenceStatus,
    Membership,
    MembershipRole,
    RecordAssignment,
    RecordStatus,
    User,
)
from policies.enforcer import ORGANISATION_SCOPES
from policies.scopes import in_organisation
from policies.vocabulary import Action, Resource, Role, Scope
from resolvers.context import Context, LoaderGroup
from resolvers.licences import is_current
from resolvers.loaders import loader

Flag = Callable[[Context], ColumnElement[bool]]


@dataclass(frozen=True, eq=False)
class Capabilities:
    """The flags of one type: each a condition over the type's table, besides visibility."""

    model: type
    visible: Resource  # what the caller must be able to read the row as (else NOT_FOUND)
    flags: Mapping[str, Flag]


def _may(resource: Resource, action: Action) -> Flag:
    return lambda ctx: ctx.rules.where(resource, action)


def _live_record(record_id: Any) -> ColumnElement[bool]:
    """The evidence's record is live. Correlated to the evidence only: nested in a statement
    that reads records around the evidence (the compiled path's `learner.evidence`), its own
    records table must stay its own."""
    return exists(
        select(ApprenticeRecord.id)
        .where(ApprenticeRecord.id == record_id, ApprenticeRecord.status == RecordStatus.LIVE)
        .correlate(Evidence)
    )


def _allocatable_learner(ctx: Context) -> ColumnElement[bool]:
    """Licences of learners the caller may allocate licences to (as recallLicences decides)."""
    allocatable = (
        select(Learner.id)
        .where(ctx.rules.where(Resource.LEARNER, Action.ALLOCATE_LICENCES))
        .correlate(None)
    )
    return Licence.learner_id.in_(allocatable)


LEARNER = Capabilities(
    Learner,
    Resource.LEARNER,
    {
        "update": _may(Resource.LEARNER, Action.UPDATE),
        "allocate_assessor": _may(Resource.LEARNER, Action.ALLOCATE),
        # allocateLicences issues licences in the caller's own organisation only.
        "allocate_licence": lambda ctx: and_(
            ctx.rules.where(Resource.LEARNER, Action.ALLOCATE_LICENCES),
            in_organisation(Learner.organisation_id, ctx.me),
        ),
    },
)

RECORD = Capabilities(
    ApprenticeRecord,
    Resource.RECORD,
    {
        "assign": lambda ctx: and_(
            ctx.rules.where(Resource.RECORD, Action.ASSIGN),
            ApprenticeRecord.status == RecordStatus.LIVE,
        ),
        "submit_evidence": lambda ctx: and_(
            ctx.rules.where(Resource.RECORD, Action.SUBMIT_EVIDENCE),
            ApprenticeRecord.status == RecordStatus.LIVE,
        ),
        # Archiving an archived record (restoring a live one) answers "unchanged", no error.
        "archive": _may(Resource.RECORD, Action.ARCHIVE),
        "restore": _may(Resource.RECORD, Action.ARCHIVE),
    },
)

EVIDENCE = Capabilities(
    Evidence,
    Resource.EVIDENCE,
    {
        # Decided evidence is locked (EvidenceLocked); so is evidence on an archived record.
        "decide": lambda ctx: and_(
            ctx.rules.where(Resource.EVIDENCE, Action.DECIDE),
            Evidence.status == EvidenceStatus.SUBMITTED,
            _live_record(Evidence.record_id),
        ),
    },
)

LICENCE = Capabilities(
    Licence,
    Resource.LICENCE,
    {
        # Only a licence never launched is recalled; a recalled one stays so ("unchanged").
        "recall": lambda ctx: and_(
            _allocatable_learner(ctx),
            Licence.launched_at.is_(None),
            or_(is_current(ctx.now), Licence.status == LicenceStatus.RECALLED),
        ),
        "launch": lambda ctx: and_(
            ctx.rules.where(Resource.LICENCE, Action.LAUNCH), is_current(ctx.now)
        ),
        # Completing a completed licence answers "unchanged".
        "complete": lambda ctx: and_(
            ctx.rules.where(Resource.LICENCE, Action.COMPLETE),
            or_(is_current(ctx.now), Licence.status == LicenceStatus.COMPLETED),
        ),
    },
)

COURSE = Capabilities(
    Course,
    Resource.COURSE,
    {
        # allocateLicences for this course: the learners and seats are the call's items.
        # It holds the action at all (no learner is read: that would join learners in).
        "allocate": lambda ctx: (
            true()
            if ctx.rules.holds(Resource.LEARNER, Action.ALLOCATE_LICENCES)
            and ctx.me.organisation_id is not None
            else false()
        ),
    },
)


def _membership_here(
    ctx: Context, *conditions: ColumnElement[bool], super_admin: bool = False
) -> ColumnElement[bool]:
    """The user (correlated) has a membership of the caller's organisation meeting these (and
    holding SUPER_ADMIN there). One subquery, its role joined in: nested in the compiled
    path's deepest statements, each level counts against SQLite's bounded parser."""
    found = select(Membership.id)
    if super_admin:
        found = found.join(MembershipRole, MembershipRole.membership_id == Membership.id).where(
            MembershipRole.role == Role.SUPER_ADMIN.value
        )
    return exists(
        found.where(
            Membership.user_id == User.id,
            in_organisation(Membership.organisation_id, ctx.me),
            *conditions,
        ).correlate(User)
    )


def _other_active_super_admin(ctx: Context) -> ColumnElement[bool]:
    """Another active super admin of the caller's organisation than the user (correlated)."""
    other = aliased(Membership)
    return exists(
        select(other.id)
        .join(MembershipRole, MembershipRole.membership_id == other.id)
        .where(
            other.user_id != User.id,
            in_organisation(other.organisation_id, ctx.me),
            other.deactivated_at.is_(None),
            MembershipRole.role == Role.SUPER_ADMIN.value,
        )
        .correlate(User)
    )


def _update_user(ctx: Context) -> ColumnElement[bool]:
    """updateStaffMember: support changes a name or picture; an admin only a member still active
    here (a deactivated one answers a ValidationError)."""
    allowed = ctx.rules.where(Resource.STAFF, Action.UPDATE)
    if ctx.me.organisation_id is None:
        return allowed
    return and_(allowed, _membership_here(ctx, Membership.deactivated_at.is_(None)))


def _deactivate_user(ctx: Context) -> ColumnElement[bool]:
    """deactivateStaffMember: a super admin only by a super admin (else FORBIDDEN), never the
    organisation's last active one (a ValidationError); deactivating again is "unchanged"."""
    allowed = ctx.rules.where(Resource.STAFF, Action.DEACTIVATE)
    held_here = _membership_here(ctx, super_admin=True)
    if Role.SUPER_ADMIN not in ctx.me.roles:
        return and_(allowed, ~held_here)
    last = _membership_here(ctx, Membership.deactivated_at.is_(None), super_admin=True)
    return and_(allowed, or_(~last, _other_active_super_admin(ctx)))


USER = Capabilities(
    User,
    Resource.STAFF,
    {"update": _update_user, "deactivate": _deactivate_user},
)

API_KEY = Capabilities(
    ApiKey,
    Resource.API_KEY,
    {"revoke": _may(Resource.API_KEY, Action.REVOKE)},  # a revoked key stays so: "unchanged"
)

RULE = Capabilities(
    AutoAllocationRule,
    Resource.AUTO_ALLOCATION_RULE,
    {"delete": _may(Resource.AUTO_ALLOCATION_RULE, Action.DELETE)},
)


def _deallocate(ctx: Context) -> ColumnElement[bool]:
    """deallocateAssessor(its learner, its assessor): the learner a target of allocating (as
    `mutation_target` decides); one ended already is answered unchanged."""
    learners = (
        select(Learner.id)
        .where(
            ctx.rules.where(Resource.LEARNER), ctx.rules.where(Resource.LEARNER, Action.ALLOCATE)
        )
        .correlate(None)
    )
    return Allocation.learner_id.in_(learners)


ALLOCATION = Capabilities(Allocation, Resource.ALLOCATION, {"deallocate": _deallocate})


def _unassign(ctx: Context) -> ColumnElement[bool]:
    """unassignRecords(its record, assigneeId: its user, role: its role): a live record the
    caller may assign (else FORBIDDEN, NOT_FOUND or RECORD_ARCHIVED), an assignee the caller can
    look up (else NOT_FOUND); one ended already is answered unchanged."""
    records = (
        select(ApprenticeRecord.id)
        .where(
            ctx.rules.where(Resource.RECORD),
            ctx.rules.where(Resource.RECORD, Action.ASSIGN),
            ApprenticeRecord.status == RecordStatus.LIVE,
        )
        .correlate(None)
    )
    people = (
        select(User.id)
        .where(or_(ctx.rules.where(Resource.STAFF), ctx.rules.where(Resource.EXTERNAL_ASSESSOR)))
        .correlate(None)
    )
    return and_(RecordAssignment.record_id.in_(records), RecordAssignment.user_id.in_(people))


ASSIGNMENT = Capabilities(RecordAssignment, Resource.ASSIGNMENT, {"unassign": _unassign})


def _columns(ctx: Context, spec: Capabilities) -> list[ColumnElement[Any]]:
    """Each flag as a column over the type's table (1 or 0), visibility included."""
    return [value.label(f"can_{name}") for name, value in flag_values(ctx, spec, list(spec.flags))]


def flag_values(
    ctx: Context, spec: Capabilities, names: Sequence[str]
) -> list[tuple[str, ColumnElement[Any]]]:
    """The named flags as values over the type's table (1 or 0), visibility included: what the
    compiled read path gathers for `viewerCan` (resolvers/compiled.py, Flags)."""
    visible = ctx.rules.where(spec.visible)
    return [(name, case((and_(visible, spec.flags[name](ctx)), 1), else_=0)) for name in names]


def capabilities_by_id(ctx: Context, spec: Capabilities) -> DataLoader[int, dict[str, bool]]:
    """Every flag of `spec` for each id, in one statement per batch; all false for a row the
    caller cannot see (or that does not exist)."""
    table: Any = spec.model
    columns = _columns(ctx, spec)

    async def load(ids: Sequence[int]) -> list[dict[str, bool]]:
        rows = (await ctx.db.execute(select(table.id, *columns).where(table.id.in_(ids)))).all()
        found = {
            row[0]: {name: bool(row[i + 1]) for i, name in enumerate(spec.flags)} for row in rows
        }
        nothing = dict.fromkeys(spec.flags, False)
        return [found.get(pk, nothing) for pk in ids]

    return DataLoader(load_fn=load)


class CapabilityLoaders(LoaderGroup):
    learner = loader(lambda ctx: capabilities_by_id(ctx, LEARNER))
    record = loader(lambda ctx: capabilities_by_id(ctx, RECORD))
    evidence = loader(lambda ctx: capabilities_by_id(ctx, EVIDENCE))
    licence = loader(lambda ctx: capabilities_by_id(ctx, LICENCE))
    course = loader(lambda ctx: capabilities_by_id(ctx, COURSE))
    api_key = loader(lambda ctx: capabilities_by_id(ctx, API_KEY))
    rule = loader(lambda ctx: capabilities_by_id(ctx, RULE))
    user = loader(lambda ctx: capabilities_by_id(ctx, USER))
    allocation = loader(lambda ctx: capabilities_by_id(ctx, ALLOCATION))
    assignment = loader(lambda ctx: capabilities_by_id(ctx, ASSIGNMENT))


LOADERS: dict[type, loader[int, dict[str, bool]]] = {
    Learner: CapabilityLoaders.learner,
    ApprenticeRecord: CapabilityLoaders.record,
    Evidence: CapabilityLoaders.evidence,
    Licence: CapabilityLoaders.licence,
    Course: CapabilityLoaders.course,
    ApiKey: CapabilityLoaders.api_key,
    AutoAllocationRule: CapabilityLoaders.rule,
    User: CapabilityLoaders.user,
    Allocation: CapabilityLoaders.allocation,
    RecordAssignment: CapabilityLoaders.assignment,
}


SPECS: dict[type, Capabilities] = {
    Learner: LEARNER,
    ApprenticeRecord: RECORD,
    Evidence: EVIDENCE,
    Licence: LICENCE,
    Course: COURSE,
    ApiKey: API_KEY,
    AutoAllocationRule: RULE,
    User: USER,
    Allocation: ALLOCATION,
    RecordAssignment: ASSIGNMENT,
}


def page_columns(ctx: Context, model: type) -> list[ColumnElement[Any]]:
    """The flags of `model`'s rows as columns a page's own statement can compute (none for a
    type without flags): a page that shows `viewerCan` then needs no statement of its own for
    them (`prime`)."""
    spec = SPECS.get(model)
    return [] if spec is None else _columns(ctx, spec)


def prime(ctx: Context, model: type, ids: Sequence[int], values: Sequence[Sequence[Any]]) -> None:
    """Hand the flags a page computed (`page_columns`, in order) to the type's loader."""
    spec = SPECS[model]
    found = LOADERS[model].of(ctx)
    for pk, row in zip(ids, values, strict=True):
        found.prime(pk, {name: bool(v) for name, v in zip(spec.flags, row, strict=True)})


async def of(ctx: Context, row: Any) -> dict[str, bool]:
    """What the caller may do with this object: each of its type's flags."""
    return await LOADERS[type(row)].of(ctx).load(row.id)


# Actions without a target: (resource, action) of the mutation's guard. An organisation-scoped
# create needs an organisation to act in; support's `all` names any.
UNTARGETED: dict[str, tuple[Resource, Action]] = {
    "create_organisation": (Resource.ORGANISATION, Action.CREATE),
    "create_location": (Resource.LOCATION, Action.CREATE),
    "create_department": (Resource.DEPARTMENT, Action.CREATE),
    "create_staff_member": (Resource.STAFF, Action.CREATE),
    "create_external_assessor": (Resource.EXTERNAL_ASSESSOR, Action.CREATE),
    "create_learner": (Resource.LEARNER, Action.CREATE),
    "import_learners": (Resource.LEARNER, Action.CREATE),
    "create_apprentice_record": (Resource.RECORD, Action.CREATE),
    "create_course": (Resource.COURSE, Action.CREATE),
    "set_licence_pool": (Resource.LICENCE_POOL, Action.CREATE),
    "create_auto_allocation_rule": (Resource.AUTO_ALLOCATION_RULE, Action.CREATE),
    "create_api_key": (Resource.API_KEY, Action.CREATE),
}


def viewer_can(ctx: Context) -> dict[str, bool]:
    """The untargeted actions the caller may take: from the held scopes, no statement."""
    found = {}
    for name, (resource, action) in UNTARGETED.items():
        scopes = ctx.rules.scopes(resource, action) & ORGANISATION_SCOPES
        found[name] = Scope.ALL in scopes or (
            Scope.ORGANISATION in scopes and ctx.me.organisation_id is not None
        )
    return found
