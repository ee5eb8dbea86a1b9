"""Tables. No ORM relationships: data arrives by explicit query or dataloader, never lazily."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    Enum,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, Id, UtcDateTime, utcnow


class UserKind(enum.StrEnum):
    STAFF = "STAFF"
    EXTERNAL_ASSESSOR = "EXTERNAL_ASSESSOR"
    SUPPORT = "SUPPORT"
    SERVICE = "SERVICE"  # the identity an API key acts as


class AssignmentRole(enum.StrEnum):
    ASSESSOR = "ASSESSOR"
    TRAINING_COORDINATOR = "TRAINING_COORDINATOR"


class EvidenceStatus(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    SIGNED_OFF = "SIGNED_OFF"
    REFERRED = "REFERRED"


class RecordStatus(enum.StrEnum):
    LIVE = "LIVE"
    ARCHIVED = "ARCHIVED"


class AuditAction(enum.StrEnum):
    """What an audit event records: one value per kind of change, object then verb."""

    ORGANISATION_CREATED = "ORGANISATION_CREATED"
    LOCATION_CREATED = "LOCATION_CREATED"
    DEPARTMENT_CREATED = "DEPARTMENT_CREATED"
    STAFF_MEMBER_CREATED = "STAFF_MEMBER_CREATED"
    STAFF_MEMBER_UPDATED = "STAFF_MEMBER_UPDATED"
    STAFF_MEMBER_DEACTIVATED = "STAFF_MEMBER_DEACTIVATED"
    EXTERNAL_ASSESSOR_CREATED = "EXTERNAL_ASSESSOR_CREATED"
    LEARNER_CREATED = "LEARNER_CREATED"
    LEARNERS_IMPORTED = "LEARNERS_IMPORTED"
    LEARNER_UPDATED = "LEARNER_UPDATED"
    APPRENTICE_RECORD_CREATED = "APPRENTICE_RECORD_CREATED"
    APPRENTICE_RECORD_ARCHIVED = "APPRENTICE_RECORD_ARCHIVED"
    APPRENTICE_RECORD_RESTORED = "APPRENTICE_RECORD_RESTORED"
    ASSESSOR_ALLOCATED = "ASSESSOR_ALLOCATED"
    ASSESSOR_DEALLOCATED = "ASSESSOR_DEALLOCATED"
    RECORDS_ASSIGNED = "RECORDS_ASSIGNED"
    RECORDS_UNASSIGNED = "RECORDS_UNASSIGNED"
    TRAINING_COORDINATOR_ASSIGNED = "TRAINING_COORDINATOR_ASSIGNED"
    EVIDENCE_SUBMITTED = "EVIDENCE_SUBMITTED"
    EVIDENCE_DECIDED = "EVIDENCE_DECIDED"
    COURSE_CREATED = "COURSE_CREATED"
    LICENCE_POOL_SET = "LICENCE_POOL_SET"
    LICENCES_ALLOCATED = "LICENCES_ALLOCATED"
    LICENCES_RECALLED = "LICENCES_RECALLED"
    LICENCES_WITHHELD = "LICENCES_WITHHELD"
    LICENCE_LAUNCHED = "LICENCE_LAUNCHED"
    AUTO_ALLOCATION_RULE_CREATED = "AUTO_ALLOCATION_RULE_CREATED"
    AUTO_ALLOCATION_RULE_DELETED = "AUTO_ALLOCATION_RULE_DELETED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


ACTIVE = text("ended_at IS NULL")
# A record has at most one active training coordinator.
ONE_COORDINATOR = text("role = 'TRAINING_COORDINATOR' AND ended_at IS NULL")


class Organisation(Base):
    __tablename__ = "organisations"
    __table_args__ = (Index("ix_organisations_name", "name", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))


class Department(Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_kind_name", "kind", "name", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[UserKind] = mapped_column(_enum(UserKind, "user_kind"))
    avatar_url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Membership(Base):
    """A user's place in one organisation."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "organisation_id"),
        Index("ix_memberships_organisation", "organisation_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Deactivated: kept for history; the person no longer signs in to this organisation.
    deactivated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deactivated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class MembershipRole(Base):
    __tablename__ = "membership_roles"
    __table_args__ = (Index("ix_membership_roles_role", "role", "membership_id"),)

    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class Learner(Base):
    __tablename__ = "learners"
    __table_args__ = (
        Index("ix_learners_org_name", "organisation_id", "name", "id"),
        Index("ix_learners_org_unit", "organisation_id", "location_id", "department_id"),
        Index("ix_learners_org_department", "organisation_id", "department_id"),
        Index("uq_learners_user_organisation", "user_id", "organisation_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApprenticeRecord(Base):
    __tablename__ = "apprentice_records"
    __table_args__ = (
        Index("ix_records_org", "organisation_id", "id"),
        Index("ix_records_learner", "learner_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"))
    programme: Mapped[str] = mapped_column(String(300))
    status: Mapped[RecordStatus] = mapped_column(
        _enum(RecordStatus, "record_status"), default=RecordStatus.LIVE
    )
    start_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RecordAssignment(Base):
    """A user assigned to an apprentice record. Ending it keeps the row."""

    __tablename__ = "record_assignments"
    __table_args__ = (
        Index(
            "uq_record_assignments_active",
            "record_id",
            "user_id",
            "role",
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        Index(
            "uq_record_assignments_one_coordinator",
            "record_id",
            unique=True,
            sqlite_where=ONE_COORDINATOR,
            postgresql_where=ONE_COORDINATOR,
        ),
        Index("ix_record_assignments_user_active", "user_id", "ended_at", "record_id"),
        Index("ix_record_assignments_record", "record_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("apprentice_records.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[AssignmentRole] = mapped_column(_enum(AssignmentRole, "assignment_role"))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Allocation(Base):
    """An external assessor allocated to a learner. Ending it keeps the row."""

    __tablename__ = "allocations"
    __table_args__ = (
        Index(
            "uq_allocations_active",
            "learner_id",
            "assessor_id",
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        Index("ix_allocations_assessor_active", "assessor_id", "ended_at", "learner_id"),
        Index("ix_allocations_org", "organisation_id", "ended_at", "assessor_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"))
    assessor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    allocated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    allocated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (
        Index("ix_evidence_record", "record_id", "id"),
        # The work queue: an organisation's evidence by status, oldest first.
        Index("ix_evidence_queue", "organisation_id", "status", "submitted_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("apprentice_records.id"))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[EvidenceStatus] = mapped_column(
        _enum(EvidenceStatus, "evidence_status"), default=EvidenceStatus.SUBMITTED
    )
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    comment: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """A partner system's key: stored as a SHA-256 hash, scoped to one organisation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_org", "organisation_id", "id"),
        Index("ix_audit_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    client: Mapped[str | None] = mapped_column(String(200))  # from the credential
    user_agent: Mapped[str | None] = mapped_column(String(200))  # what the client says it is
    action: Mapped[AuditAction] = mapped_column(
        Enum(AuditAction, name="audit_action", native_enum=False, length=64, validate_strings=True)
    )
    subject_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[int | None] = mapped_column(Id)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
