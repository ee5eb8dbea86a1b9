"""Tables. No ORM relationships: data arrives by explicit query or dataloader, never lazily."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
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


class LicenceStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    RECALLED = "RECALLED"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"


class LicenceSource(enum.StrEnum):
    MANUAL = "MANUAL"
    RULE = "RULE"


class RuleScope(enum.StrEnum):
    LOCATION = "LOCATION"
    DEPARTMENT = "DEPARTMENT"
    ENTIRE_COMPANY = "ENTIRE_COMPANY"
    ADVANCED = "ADVANCED"  # location and department


class AuditAction(enum.StrEnum):
    """What an audit event records: one value per kind of change, object then verb."""

    ORGANISATION_CREATED = "ORGANISATION_CREATED"
    LOCATION_CREATED = "LOCATION_CREATED"
    DEPARTMENT_CREATED = "DEPARTMENT_CREATED"
    STAFF_MEMBER_CREATED = "STAFF_MEMBER_CREATED"
    STAFF_MEMBER_UPDATED = "STAFF_MEMBER_UPDATED"
    STAFF_MEMBER_DEACTIVATED = "STAFF_MEMBER_DEACTIVATED"
    EXTERNAL_ASSESSOR_CREATED = "EXTERNAL_ASSESSOR_CREATED"
    EXTERNAL_ASSESSOR_UPDATED = "EXTERNAL_ASSESSOR_UPDATED"
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
    LICENCE_COMPLETED = "LICENCE_COMPLETED"
    IDENTITY_PROVIDER_SET = "IDENTITY_PROVIDER_SET"
    IDENTITY_PROVIDER_REMOVED = "IDENTITY_PROVIDER_REMOVED"
    AUTO_ALLOCATION_RULE_CREATED = "AUTO_ALLOCATION_RULE_CREATED"
    AUTO_ALLOCATION_RULE_DELETED = "AUTO_ALLOCATION_RULE_DELETED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    WEBHOOK_ENDPOINT_CREATED = "WEBHOOK_ENDPOINT_CREATED"
    WEBHOOK_ENDPOINT_UPDATED = "WEBHOOK_ENDPOINT_UPDATED"
    WEBHOOK_ENDPOINT_DELETED = "WEBHOOK_ENDPOINT_DELETED"
    WEBHOOK_SECRET_ROTATED = "WEBHOOK_SECRET_ROTATED"
    WEBHOOK_ENDPOINT_DISABLED = "WEBHOOK_ENDPOINT_DISABLED"
    WEBHOOK_REDELIVERED = "WEBHOOK_REDELIVERED"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


ACTIVE = text("ended_at IS NULL")
# A learner holds at most one active licence per course.
ACTIVE_LICENCE = text("status = 'ACTIVE'")
# A record has at most one active training coordinator.
ONE_COORDINATOR = text("role = 'TRAINING_COORDINATOR' AND ended_at IS NULL")


class Organisation(Base):
    __tablename__ = "organisations"
    __table_args__ = (Index("ix_organisations_name", "name", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class IdentityProvider(Base):
    """An OpenID Connect issuer support bound to one organisation: its tokens sign people in
    to that organisation's memberships only. One per organisation; an issuer may serve
    several organisations, each with its own audience (its own client of the provider)."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("issuer", "audience"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), unique=True)
    issuer: Mapped[str] = mapped_column(String(500))
    audience: Mapped[str] = mapped_column(String(500))
    email_claim: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


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


def trigram_index(name: str, column: str) -> Index:
    """A GIN trigram index (pg_trgm) on a column that substring searches read with
    `ILIKE '%term%'`: PostgreSQL only; SQLite has none and scans."""
    index = Index(name, column, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"})
    return index.ddl_if(dialect="postgresql")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_kind_name", "kind", "name", "id"),
        trigram_index("ix_users_name_trgm", "name"),
        trigram_index("ix_users_email_trgm", "email"),
    )

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
        Index("ix_learners_org_created", "organisation_id", "created_at", "id"),
        Index("ix_learners_org_unit", "organisation_id", "location_id", "department_id"),
        Index("ix_learners_org_department", "organisation_id", "department_id"),
        Index("uq_learners_user_organisation", "user_id", "organisation_id", unique=True),
        trigram_index("ix_learners_name_trgm", "name"),
        trigram_index("ix_learners_email_trgm", "email"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    avatar_url: Mapped[str | None] = mapped_column(String(1000))


class ApprenticeRecord(Base):
    __tablename__ = "apprentice_records"
    __table_args__ = (
        Index("ix_records_org", "organisation_id", "id"),
        Index("ix_records_org_programme", "organisation_id", "programme", "id"),
        Index("ix_records_learner", "learner_id", "id"),
        # Covers "which of the organisation's live records have an assessor" (the unassigned
        # filter and count) as an index-only scan.
        Index("ix_records_org_status_learner", "organisation_id", "status", "learner_id", "id"),
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
        # The caller's active assignments in the organisation they act in (the `assigned`
        # scopes): read from the index alone.
        Index(
            "ix_record_assignments_user_org_active",
            "user_id",
            "organisation_id",
            "record_id",
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        Index("ix_record_assignments_record", "record_id", "ended_at"),
        Index(
            "ix_record_assignments_org_role_active",
            "organisation_id",
            "role",
            "record_id",
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
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
        Index("ix_evidence_org_submitted", "organisation_id", "submitted_at", "id"),
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
    """A partner system's key: stored as a SHA-256 hash, scoped to one organisation.

    The key belongs to the organisation, not to whoever created it; it acts as its own
    service identity (`user_id`).
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_org", "organisation_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Written at most once a minute per key (see server/auth.py), so that reads stay reads.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Its own fair use budget, cost points a minute; None: CASELOAD_RATE_POINTS_PER_MINUTE.
    rate_points_per_minute: Mapped[int | None] = mapped_column(Integer)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # Newest first, per organisation, and by each filter of `auditEvents` (at, id: the keyset).
    __table_args__ = (
        Index("ix_audit_org_at", "organisation_id", "at", "id"),
        Index("ix_audit_org_action_at", "organisation_id", "action", "at", "id"),
        Index("ix_audit_actor_at", "actor_id", "at", "id"),
        Index("ix_audit_api_key_at", "api_key_id", "at", "id"),
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


class Change(Base):
    """One committed change to one object: the outbox the change feed reads (resolvers/changes.py
    explains the position). Written with the audit event, in the mutation's transaction."""

    __tablename__ = "changes"
    __table_args__ = (
        Index("ix_changes_position", "position", "id"),
        # The rows a committing transaction stamps: its own, until it commits.
        Index(
            "ix_changes_unpositioned",
            "id",
            sqlite_where=text("position IS NULL"),
            postgresql_where=text("position IS NULL"),
        ),
        Index("ix_changes_subject", "subject_type", "subject_id"),
        Index("ix_changes_at", "at"),
        Index("ix_changes_audit_event", "audit_event_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The audit event this change comes from, the record of who, how and with which details
    # (a bulk action's one event has a change per object). Null only for changes written
    # before the link, which the migration could not match to one event.
    audit_event_id: Mapped[int | None] = mapped_column(ForeignKey("audit_events.id"))
    # The writing transaction's place in commit order, given just before it commits.
    position: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[AuditAction] = mapped_column(
        Enum(AuditAction, name="audit_action", native_enum=False, length=64, validate_strings=True)
    )
    subject_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[int] = mapped_column(Id)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Course(Base):
    """A course in the catalogue."""

    __tablename__ = "courses"
    __table_args__ = (Index("ix_courses_title", "title", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LicencePool(Base):
    """An organisation's seats for one course. `seats_used` counts the licences issued from it
    that were not recalled; it changes only under a lock on this row."""

    __tablename__ = "licence_pools"
    __table_args__ = (UniqueConstraint("organisation_id", "course_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    seats_total: Mapped[int] = mapped_column(Integer)
    seats_used: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AutoAllocationRule(Base):
    """Issues a licence for its course to each matching learner created after it. Deleting it
    keeps the row, so that the licences it issued still name it."""

    __tablename__ = "auto_allocation_rules"
    __table_args__ = (Index("ix_auto_allocation_rules_org", "organisation_id", "deleted_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    scope: Mapped[RuleScope] = mapped_column(_enum(RuleScope, "rule_scope"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


RULE_IN_FORCE = text("deleted_at IS NULL")
# One rule in force per course, scope and units: an identical rule is AlreadyExists, decided by
# the database. A unit left out counts as 0 (ids start at 1), so that NULLs compare equal.
Index(
    "uq_auto_allocation_rules_in_force",
    AutoAllocationRule.organisation_id,
    AutoAllocationRule.course_id,
    AutoAllocationRule.scope,
    func.coalesce(AutoAllocationRule.location_id, 0),
    func.coalesce(AutoAllocationRule.department_id, 0),
    unique=True,
    sqlite_where=RULE_IN_FORCE,
    postgresql_where=RULE_IN_FORCE,
)


class Licence(Base):
    """One learner's right to take one course, issued from the organisation's pool."""

    __tablename__ = "licences"
    __table_args__ = (
        Index(
            "uq_licences_active",
            "learner_id",
            "course_id",
            unique=True,
            sqlite_where=ACTIVE_LICENCE,
            postgresql_where=ACTIVE_LICENCE,
        ),
        Index("ix_licences_learner", "learner_id", "id"),
        Index("ix_licences_org", "organisation_id", "id"),
        Index("ix_licences_org_course", "organisation_id", "course_id", "id"),
        Index("ix_licences_pool", "pool_id", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("licence_pools.id"))
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    status: Mapped[LicenceStatus] = mapped_column(
        _enum(LicenceStatus, "licence_status"), default=LicenceStatus.ACTIVE
    )
    source: Mapped[LicenceSource] = mapped_column(_enum(LicenceSource, "licence_source"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("auto_allocation_rules.id"))
    allocated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    allocated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    launched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Past it an ACTIVE licence reads as EXPIRED (computed when read; stored as EXPIRED only
    # when a new licence for the same learner and course needs the ACTIVE slot).
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    recalled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    recalled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class IdempotencyKey(Base):
    """A mutation request's `Idempotency-Key`: claimed by the first request in its own
    transaction, with that request's answer kept for the retries (see server/graphql.py)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("uq_idempotency_keys_principal_key", "principal", "key", unique=True),
        Index("ix_idempotency_keys_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    principal: Mapped[str] = mapped_column(String(100))  # who sent it: a user in an org, or a key
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request's body
    answer: Mapped[str | None] = mapped_column(Text)  # the first answer's JSON, as sent
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookEndpoint(Base):
    """Where an organisation's changes are sent, signed with the endpoint's secret.

    `after_position` is how far the outbox has been read for it: every change of its
    organisation and actions up to that commit position has a delivery row.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org", "organisation_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    url: Mapped[str] = mapped_column(String(2000))
    # The actions it subscribes to, comma-separated, in the vocabulary's order.
    events: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    # `whsec_` and base64: kept so that deliveries can be signed; never shown after creation.
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    after_position: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    """One change sent (or to be sent) to one endpoint: the same `webhook-id` on every try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "change_id"),
        # An endpoint's deliveries, newest first (the list), and its queue in commit order.
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index(
            "ix_webhook_deliveries_queue",
            "endpoint_id",
            "change_position",
            "change_id",
            sqlite_where=text("status = 'PENDING'"),
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=text("status = 'PENDING'"),
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"))
    change_position: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        _enum(WebhookDeliveryStatus, "webhook_delivery_status")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The first kilobyte of the receiver's answer, as text.
    response_body: Mapped[str | None] = mapped_column(String(1024))
    # Why the last try failed without an answer (timed out, refused address, …).
    error: Mapped[str | None] = mapped_column(String(500))
