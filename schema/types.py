"""The object types: explicit projections of rows, each with `from_row`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Self

import strawberry
from strawberry.scalars import JSON

from db import models
from policies.vocabulary import Action, Resource, Scope
from policies.vocabulary import Role as RoleValue
from resolvers import access, organisations, people
from resolvers.ids import encode_id
from schema.context import Info
from schema.permissions import requires

Role = strawberry.enum(RoleValue, name="Role", description="A role held in an organisation.")
AssignmentRole = strawberry.enum(
    models.AssignmentRole, name="AssignmentRole", description="What an assignee does on a record."
)
EvidenceStatus = strawberry.enum(
    models.EvidenceStatus, name="EvidenceStatus", description="Where a piece of evidence stands."
)


@strawberry.interface(description="An object with a global id; `node(id:)` fetches any of them.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(encode_id(type_name, pk))


def initials_of(name: str) -> str:
    parts = [p for p in name.replace("-", " ").split() if p[:1].isalpha()]
    if not parts:
        return name[:1].upper()
    if len(parts) == 1:
        return parts[0][:1].upper()
    return (parts[0][:1] + parts[-1][:1]).upper()


@strawberry.type(description="A customer account.")
class Organisation(Node):
    name: str = strawberry.field(description="Display name.")
    slug: str = strawberry.field(description="Short unique name, used in tokens.")
    row: strawberry.Private[models.Organisation]

    @classmethod
    def from_row(cls, row: models.Organisation) -> Self:
        return cls(id=gid("Organisation", row.id), name=row.name, slug=row.slug, row=row)

    @strawberry.field(
        description="The organisation's locations.", extensions=requires(Resource.LOCATION)
    )
    async def locations(self, info: Info) -> list[Location]:
        rows = await organisations.units_of(info.context, models.Location, self.row.id)
        return [Location.from_row(r) for r in rows]  # type: ignore[arg-type]

    @strawberry.field(
        description="The organisation's departments.", extensions=requires(Resource.DEPARTMENT)
    )
    async def departments(self, info: Info) -> list[Department]:
        rows = await organisations.units_of(info.context, models.Department, self.row.id)
        return [Department.from_row(r) for r in rows]  # type: ignore[arg-type]


@strawberry.type(description="A site of an organisation.")
class Location(Node):
    name: str = strawberry.field(description="Display name.")

    @classmethod
    def from_row(cls, row: models.Location) -> Self:
        return cls(id=gid("Location", row.id), name=row.name)


@strawberry.type(description="A department of an organisation.")
class Department(Node):
    name: str = strawberry.field(description="Display name.")

    @classmethod
    def from_row(cls, row: models.Department) -> Self:
        return cls(id=gid("Department", row.id), name=row.name)


@strawberry.type(description="A person who signs in.")
class User(Node):
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")
    initials: str = strawberry.field(description="One or two letters for an avatar.")
    avatar_url: str | None = strawberry.field(description="Picture, if the person has one.")
    is_external_assessor: bool = strawberry.field(
        description="True for assessors outside every customer organisation."
    )
    row: strawberry.Private[models.User]

    @classmethod
    def from_row(cls, row: models.User) -> Self:
        return cls(
            id=gid("User", row.id),
            name=row.name,
            email=row.email,
            initials=initials_of(row.name),
            avatar_url=row.avatar_url,
            is_external_assessor=row.kind == models.UserKind.EXTERNAL_ASSESSOR,
            row=row,
        )

    @strawberry.field(
        description="Active record assignments this person holds, as far as the caller can see.",
        extensions=requires(Resource.ASSIGNMENT),
    )
    async def caseload_count(self, info: Info) -> int:
        return await info.context.loaders.caseload_by_user.load(self.row.id)

    @strawberry.field(
        description="The person's roles in the caller's organisation.",
        extensions=requires(Resource.STAFF),
    )
    async def roles(self, info: Info) -> list[Role]:  # type: ignore[valid-type]
        return await people.user_roles(info.context, self.row)


async def _user(info: Info, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    row = await info.context.loaders.user_ref.load(user_id)
    return None if row is None else User.from_row(row)


@strawberry.type(description="A person in an organisation who learns.")
class Learner(Node):
    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(description="Email address, if known.")
    initials: str = strawberry.field(description="One or two letters for an avatar.")
    created_at: datetime = strawberry.field(description="When the learner was added.")
    row: strawberry.Private[models.Learner]

    @classmethod
    def from_row(cls, row: models.Learner) -> Self:
        return cls(
            id=gid("Learner", row.id),
            name=row.name,
            email=row.email,
            initials=initials_of(row.name),
            created_at=row.created_at,
            row=row,
        )

    @strawberry.field(description="The learner's location.", extensions=requires(Resource.LEARNER))
    async def location(self, info: Info) -> Location | None:
        if self.row.location_id is None:
            return None
        row = await info.context.loaders.location_ref.load(self.row.location_id)
        return None if row is None else Location.from_row(row)

    @strawberry.field(
        description="The learner's department.", extensions=requires(Resource.LEARNER)
    )
    async def department(self, info: Info) -> Department | None:
        if self.row.department_id is None:
            return None
        row = await info.context.loaders.department_ref.load(self.row.department_id)
        return None if row is None else Department.from_row(row)

    @strawberry.field(
        description="The learner's apprentice records that the caller can see.",
        extensions=requires(Resource.RECORD),
    )
    async def records(self, info: Info) -> list[ApprenticeRecord]:
        rows = await info.context.loaders.records_by_learner.load(self.row.id)
        return [ApprenticeRecord.from_row(r) for r in rows]

    @strawberry.field(
        description="Active external assessor allocations the caller can see.",
        extensions=requires(Resource.ALLOCATION),
    )
    async def allocations(self, info: Info) -> list[Allocation]:
        rows = await info.context.loaders.allocations_by_learner.load(self.row.id)
        return [Allocation.from_row(r) for r in rows]

    @strawberry.field(
        description="Everyone assigned to or allocated to this learner, as visible to the caller.",
        extensions=requires(Resource.ASSIGNMENT),
    )
    async def assessors(self, info: Info) -> list[User]:
        loaders = info.context.loaders
        records = await loaders.records_by_learner.load(self.row.id)
        ids = [
            a.user_id
            for assignments in await loaders.assignments_by_record.load_many(
                [r.id for r in records]
            )
            for a in assignments
        ]
        ids += [a.assessor_id for a in await loaders.allocations_by_learner.load(self.row.id)]
        unique = list(dict.fromkeys(ids))
        return [User.from_row(u) for u in await loaders.user_ref.load_many(unique) if u is not None]

    @strawberry.field(
        description="Who can currently see this learner, and why (admins and the learner).",
        extensions=requires(Resource.LEARNER, Action.VIEW_ACCESS),
    )
    async def access(self, info: Info) -> list[LearnerAccess] | None:
        grants = await access.learner_access(info.context, self.row)
        return [
            LearnerAccess(
                user=User.from_row(g.user), role=g.role, reason=g.scope, expires_at=g.expires_at
            )
            for g in grants
        ]

    @strawberry.field(
        description="Evidence on the learner's records that the caller can see.",
        extensions=requires(Resource.EVIDENCE),
    )
    async def evidence(self, info: Info) -> list[Evidence]:
        loaders = info.context.loaders
        records = await loaders.records_by_learner.load(self.row.id)
        groups = await loaders.evidence_by_record.load_many([r.id for r in records])
        return [Evidence.from_row(e) for group in groups for e in group]


AccessReason = strawberry.enum(
    Scope,
    name="AccessReason",
    description="Why a person can see a learner: the policy scope that grants it.",
)


@strawberry.type(description="One reason one person can currently see a learner.")
class LearnerAccess:
    user: User = strawberry.field(description="Who can see the learner.")
    role: Role = strawberry.field(description="The role that holds the scope.")  # type: ignore[valid-type]
    reason: AccessReason = strawberry.field(  # type: ignore[valid-type]
        description="ORGANISATION (their role covers the organisation), TEAM, ASSIGNED "
        "(a record assignment), ALLOCATED (an external assessor allocation) or SELF."
    )
    expires_at: datetime | None = strawberry.field(
        description="For an allocation: when it stops granting access."
    )


@strawberry.type(description="A learner's programme, e.g. a Level 3 diploma.")
class ApprenticeRecord(Node):
    programme: str = strawberry.field(description="The programme followed.")
    status: str = strawberry.field(description="LIVE or ARCHIVED.")
    start_date: date | None = strawberry.field(description="When the programme started.")
    row: strawberry.Private[models.ApprenticeRecord]

    @classmethod
    def from_row(cls, row: models.ApprenticeRecord) -> Self:
        return cls(
            id=gid("ApprenticeRecord", row.id),
            programme=row.programme,
            status=row.status.value,
            start_date=row.start_date,
            row=row,
        )

    @strawberry.field(description="Whose record this is.", extensions=requires(Resource.LEARNER))
    async def learner(self, info: Info) -> Learner:
        row = await info.context.loaders.learner.load(self.row.learner_id)
        if row is None:  # a visible record's learner is visible under every scope
            raise LookupError("learner of a visible record is not visible")
        return Learner.from_row(row)

    @strawberry.field(
        description="Active assignments on this record.", extensions=requires(Resource.ASSIGNMENT)
    )
    async def assignments(self, info: Info) -> list[Assignment]:
        rows = await info.context.loaders.assignments_by_record.load(self.row.id)
        return [Assignment.from_row(r) for r in rows]

    @strawberry.field(
        description="Evidence on this record.", extensions=requires(Resource.EVIDENCE)
    )
    async def evidence(self, info: Info) -> list[Evidence]:
        rows = await info.context.loaders.evidence_by_record.load(self.row.id)
        return [Evidence.from_row(r) for r in rows]


async def _record(info: Info, record_id: int) -> ApprenticeRecord:
    row = await info.context.loaders.record.load(record_id)
    if row is None:
        raise LookupError("record of a visible row is not visible")
    return ApprenticeRecord.from_row(row)


@strawberry.type(description="A user assigned to an apprentice record.")
class Assignment(Node):
    role: AssignmentRole = strawberry.field(description="What the assignee does.")  # type: ignore[valid-type]
    assigned_at: datetime = strawberry.field(description="When the assignment began.")
    ended_at: datetime | None = strawberry.field(description="When it ended, if it has.")
    row: strawberry.Private[models.RecordAssignment]

    @classmethod
    def from_row(cls, row: models.RecordAssignment) -> Self:
        return cls(
            id=gid("Assignment", row.id),
            role=row.role,
            assigned_at=row.assigned_at,
            ended_at=row.ended_at,
            row=row,
        )

    @strawberry.field(description="The record.", extensions=requires(Resource.RECORD))
    async def record(self, info: Info) -> ApprenticeRecord:
        return await _record(info, self.row.record_id)

    @strawberry.field(description="The assignee.", extensions=requires(Resource.ASSIGNMENT))
    async def user(self, info: Info) -> User:
        user = await _user(info, self.row.user_id)
        assert user is not None
        return user

    @strawberry.field(
        description="Who made the assignment.", extensions=requires(Resource.ASSIGNMENT)
    )
    async def assigned_by(self, info: Info) -> User | None:
        return await _user(info, self.row.assigned_by_id)


@strawberry.type(description="An external assessor allocated to a learner.")
class Allocation(Node):
    allocated_at: datetime = strawberry.field(description="When the allocation began.")
    expires_at: datetime | None = strawberry.field(description="When it stops granting access.")
    ended_at: datetime | None = strawberry.field(description="When it was ended, if it was.")
    row: strawberry.Private[models.Allocation]

    @classmethod
    def from_row(cls, row: models.Allocation) -> Self:
        return cls(
            id=gid("Allocation", row.id),
            allocated_at=row.allocated_at,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            row=row,
        )

    @strawberry.field(description="The learner.", extensions=requires(Resource.LEARNER))
    async def learner(self, info: Info) -> Learner:
        row = await info.context.loaders.learner.load(self.row.learner_id)
        if row is None:
            raise LookupError("learner of a visible allocation is not visible")
        return Learner.from_row(row)

    @strawberry.field(
        description="The external assessor.", extensions=requires(Resource.ALLOCATION)
    )
    async def assessor(self, info: Info) -> User:
        user = await _user(info, self.row.assessor_id)
        assert user is not None
        return user

    @strawberry.field(description="Who allocated them.", extensions=requires(Resource.ALLOCATION))
    async def allocated_by(self, info: Info) -> User | None:
        return await _user(info, self.row.allocated_by_id)


@strawberry.type(description="Coursework a learner submitted on a record.")
class Evidence(Node):
    title: str = strawberry.field(description="What the evidence is.")
    status: EvidenceStatus = strawberry.field(description="Submitted, signed off or referred.")  # type: ignore[valid-type]
    submitted_at: datetime = strawberry.field(description="When it was submitted.")
    decided_at: datetime | None = strawberry.field(description="When it was decided.")
    comment: str | None = strawberry.field(description="The assessor's comment.")
    row: strawberry.Private[models.Evidence]

    @classmethod
    def from_row(cls, row: models.Evidence) -> Self:
        return cls(
            id=gid("Evidence", row.id),
            title=row.title,
            status=row.status,
            submitted_at=row.submitted_at,
            decided_at=row.decided_at,
            comment=row.comment,
            row=row,
        )

    @strawberry.field(description="The record.", extensions=requires(Resource.RECORD))
    async def record(self, info: Info) -> ApprenticeRecord:
        return await _record(info, self.row.record_id)

    @strawberry.field(description="Who decided it.", extensions=requires(Resource.EVIDENCE))
    async def decided_by(self, info: Info) -> User | None:
        return await _user(info, self.row.decided_by_id)


@strawberry.type(description="Who did what to which object, when.")
class AuditEvent(Node):
    at: datetime = strawberry.field(description="When it happened.")
    action: str = strawberry.field(description="What was done, e.g. learner.create.")
    subject_type: str = strawberry.field(description="The kind of object acted on.")
    subject_id: strawberry.ID | None = strawberry.field(description="The object acted on.")
    details: JSON | None = strawberry.field(description="What changed.")
    row: strawberry.Private[models.AuditEvent]

    @classmethod
    def from_row(cls, row: models.AuditEvent) -> Self:
        return cls(
            id=gid("AuditEvent", row.id),
            at=row.at,
            action=row.action,
            subject_type=row.subject_type,
            subject_id=None if row.subject_id is None else gid(row.subject_type, row.subject_id),
            details=JSON(row.details),
            row=row,
        )

    @strawberry.field(description="Who did it.", extensions=requires(Resource.AUDIT_EVENT))
    async def actor(self, info: Info) -> User | None:
        return await _user(info, self.row.actor_id)


NODE_TYPES: dict[str, Any] = {
    "Organisation": Organisation,
    "Location": Location,
    "Department": Department,
    "User": User,
    "Learner": Learner,
    "ApprenticeRecord": ApprenticeRecord,
    "Assignment": Assignment,
    "Allocation": Allocation,
    "Evidence": Evidence,
    "AuditEvent": AuditEvent,
}


def node_from_row(type_name: str, row: Any) -> Node:
    return NODE_TYPES[type_name].from_row(row)
