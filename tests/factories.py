"""Builders: rows written straight to the database, so tests state only what matters."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.base import utcnow
from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    AuditEvent,
    AutoAllocationRule,
    Change,
    Course,
    Department,
    Evidence,
    EvidenceStatus,
    IdentityProvider,
    Learner,
    Licence,
    LicencePool,
    LicenceSource,
    LicenceStatus,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    RecordStatus,
    RuleScope,
    User,
    UserKind,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from resolvers.api_keys import new_api_key
from resolvers.ids import type_name_of

_counter = itertools.count(1)


class World:
    def __init__(self, engine: AsyncEngine) -> None:
        self.maker = async_sessionmaker(engine, expire_on_commit=False)

    async def _save(self, *rows: Any) -> None:
        session: AsyncSession
        async with self.maker() as session, session.begin():
            session.add_all(rows)

    async def organisation(self, slug: str | None = None, name: str | None = None) -> Organisation:
        n = next(_counter)
        row = Organisation(
            slug=slug or f"org-{n}", name=name or f"Organisation {n}", created_at=utcnow()
        )
        await self._save(row)
        return row

    async def location(self, org: Organisation, name: str | None = None) -> Location:
        row = Location(organisation_id=org.id, name=name or f"Location {next(_counter)}")
        await self._save(row)
        return row

    async def department(self, org: Organisation, name: str | None = None) -> Department:
        row = Department(organisation_id=org.id, name=name or f"Department {next(_counter)}")
        await self._save(row)
        return row

    async def user(self, kind: UserKind, name: str | None = None, email: str | None = None) -> User:
        n = next(_counter)
        row = User(
            email=email or f"person{n}@example.org",
            name=name or f"Person {n}",
            kind=kind,
            created_at=utcnow(),
        )
        await self._save(row)
        return row

    async def support(self) -> User:
        return await self.user(UserKind.SUPPORT)

    async def external_assessor(self, name: str | None = None) -> User:
        return await self.user(UserKind.EXTERNAL_ASSESSOR, name=name)

    async def staff(
        self,
        org: Organisation,
        *roles: str,
        location: Location | None = None,
        department: Department | None = None,
        user: User | None = None,
        name: str | None = None,
    ) -> User:
        """A staff member (or an existing user joining `org`) holding `roles` there."""
        user = user or await self.user(UserKind.STAFF, name=name)
        membership = Membership(
            user_id=user.id,
            organisation_id=org.id,
            location_id=location.id if location else None,
            department_id=department.id if department else None,
            created_at=utcnow(),
        )
        await self._save(membership)
        await self._save(*(MembershipRole(membership_id=membership.id, role=r) for r in roles))
        return user

    async def deactivate(self, user: User, org: Organisation) -> None:
        """The person's membership of `org` deactivated (their assignments are left as they are)."""
        async with self.maker() as session, session.begin():
            await session.execute(
                update(Membership)
                .where(Membership.user_id == user.id, Membership.organisation_id == org.id)
                .values(deactivated_at=utcnow())
            )

    async def learner(
        self,
        org: Organisation,
        *,
        name: str | None = None,
        location: Location | None = None,
        department: Department | None = None,
        user: User | None = None,
    ) -> Learner:
        n = next(_counter)
        row = Learner(
            organisation_id=org.id,
            name=name or f"Learner {n}",
            email=user.email if user else None,
            user_id=user.id if user else None,
            location_id=location.id if location else None,
            department_id=department.id if department else None,
            created_at=utcnow(),
        )
        await self._save(row)
        return row

    async def record(
        self,
        learner: Learner,
        programme: str = "Adult Care Level 2",
        status: RecordStatus = RecordStatus.LIVE,
    ) -> ApprenticeRecord:
        row = ApprenticeRecord(
            organisation_id=learner.organisation_id,
            learner_id=learner.id,
            programme=programme,
            status=status,
            created_at=utcnow(),
        )
        await self._save(row)
        return row

    async def assign(
        self,
        record: ApprenticeRecord,
        user: User,
        role: AssignmentRole = AssignmentRole.ASSESSOR,
        *,
        ended: bool = False,
    ) -> RecordAssignment:
        row = RecordAssignment(
            organisation_id=record.organisation_id,
            record_id=record.id,
            user_id=user.id,
            role=role,
            assigned_at=utcnow(),
            ended_at=utcnow() if ended else None,
        )
        await self._save(row)
        return row

    async def allocate(
        self,
        learner: Learner,
        assessor: User,
        *,
        expires_at: datetime | None = None,
        ended: bool = False,
    ) -> Allocation:
        row = Allocation(
            organisation_id=learner.organisation_id,
            learner_id=learner.id,
            assessor_id=assessor.id,
            allocated_at=utcnow(),
            expires_at=expires_at,
            ended_at=utcnow() if ended else None,
        )
        await self._save(row)
        return row

    async def decide(self, evidence: Evidence, status: EvidenceStatus, by: User) -> Evidence:
        async with self.maker() as session, session.begin():
            stored = await session.get(Evidence, evidence.id)
            assert stored is not None
            stored.status, stored.decided_by_id, stored.decided_at = status, by.id, utcnow()
            stored.comment = "Decided."
        return evidence

    async def evidence(
        self, record: ApprenticeRecord, title: str = "Reflective account"
    ) -> Evidence:
        row = Evidence(
            organisation_id=record.organisation_id,
            record_id=record.id,
            title=title,
            submitted_at=utcnow(),
        )
        await self._save(row)
        return row

    async def api_key(
        self,
        org: Organisation,
        *roles: str,
        name: str = "Partner feed",
        revoked: bool = False,
        created_by: User | None = None,
    ) -> ApiKey:
        """A partner system's key in `org` (stored as the service user it acts as)."""
        row, _ = await self.usable_api_key(
            org, *roles, name=name, revoked=revoked, created_by=created_by
        )
        return row

    async def usable_api_key(
        self,
        org: Organisation,
        *roles: str,
        name: str = "Partner feed",
        revoked: bool = False,
        created_by: User | None = None,
    ) -> tuple[ApiKey, str]:
        """A key in `org` and the key itself, for `Authorization: ApiKey <key>`."""
        key, prefix, digest = new_api_key()
        user = await self.user(UserKind.SERVICE, name=name, email=f"apikey-{prefix}@keys.invalid")
        row = ApiKey(
            organisation_id=org.id,
            user_id=user.id,
            name=name,
            prefix=prefix,
            key_hash=digest,
            roles=",".join(roles),
            created_at=utcnow(),
            revoked_at=utcnow() if revoked else None,
            created_by_id=created_by.id if created_by else None,
        )
        await self._save(row)
        return row, key

    async def audit_event(
        self,
        org: Organisation | None,
        action: AuditAction,
        subject: Any,
        *,
        actor: User | None = None,
        api_key: ApiKey | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        """An event as a mutation would have written it (`subject` a row, or its table)."""
        is_table = isinstance(subject, type)
        row = AuditEvent(
            organisation_id=org.id if org else None,
            at=at or utcnow(),
            actor_id=api_key.user_id if api_key else actor.id if actor else None,
            api_key_id=api_key.id if api_key else None,
            client=f"api-key:{api_key.prefix}" if api_key else "jwt",
            action=action,
            subject_type=type_name_of(subject if is_table else type(subject)),
            subject_id=None if is_table else subject.id,
        )
        await self._save(row)
        return row

    async def course(self, title: str | None = None, code: str | None = None) -> Course:
        n = next(_counter)
        row = Course(title=title or f"Course {n}", code=code or f"C{n:05d}", created_at=utcnow())
        await self._save(row)
        return row

    async def pool(
        self, org: Organisation, course: Course, seats: int, used: int = 0
    ) -> LicencePool:
        """An organisation's seats for a course; `used` must match the licences built after."""
        row = LicencePool(
            organisation_id=org.id,
            course_id=course.id,
            seats_total=seats,
            seats_used=used,
            updated_at=utcnow(),
        )
        await self._save(row)
        return row

    async def identity_provider(
        self,
        org: Organisation,
        issuer: str = "https://login.example.org/tenant",
        audience: str = "caseload",
        email_claim: str = "email",
    ) -> IdentityProvider:
        """An OpenID Connect issuer bound to `org`."""
        row = IdentityProvider(
            organisation_id=org.id,
            issuer=issuer,
            audience=audience,
            email_claim=email_claim,
            updated_at=utcnow(),
        )
        await self._save(row)
        return row

    async def licence(
        self,
        pool: LicencePool,
        learner: Learner,
        *,
        status: LicenceStatus = LicenceStatus.ACTIVE,
        launched: bool = False,
        rule: AutoAllocationRule | None = None,
        takes_seat: bool = True,
        expires_at: datetime | None = None,
    ) -> Licence:
        """A licence from `pool`; unless recalled (or `takes_seat` is false) it takes a seat."""
        row = Licence(
            organisation_id=pool.organisation_id,
            pool_id=pool.id,
            learner_id=learner.id,
            course_id=pool.course_id,
            status=status,
            source=LicenceSource.RULE if rule else LicenceSource.MANUAL,
            rule_id=rule.id if rule else None,
            allocated_at=utcnow(),
            launched_at=utcnow() if launched else None,
            recalled_at=utcnow() if status == LicenceStatus.RECALLED else None,
            completed_at=utcnow() if status == LicenceStatus.COMPLETED else None,
            expires_at=expires_at,
        )
        await self._save(row)
        if takes_seat and status != LicenceStatus.RECALLED:
            async with self.maker() as session, session.begin():
                stored = await session.get(LicencePool, pool.id)
                assert stored is not None
                stored.seats_used += 1
            pool.seats_used += 1
        return row

    async def rule(
        self,
        org: Organisation,
        course: Course,
        scope: RuleScope = RuleScope.ENTIRE_COMPANY,
        *,
        location: Location | None = None,
        department: Department | None = None,
        deleted: bool = False,
    ) -> AutoAllocationRule:
        row = AutoAllocationRule(
            organisation_id=org.id,
            course_id=course.id,
            scope=scope,
            location_id=location.id if location else None,
            department_id=department.id if department else None,
            created_at=utcnow(),
            deleted_at=utcnow() if deleted else None,
        )
        await self._save(row)
        return row

    async def webhook(
        self, org: Organisation, *, url: str = "https://hooks.example.org/caseload"
    ) -> tuple[WebhookEndpoint, WebhookDelivery]:
        """A webhook endpoint in `org` and one delivered delivery to it (of a change of its own)."""
        now = utcnow()
        change = Change(
            position=None,
            at=now,
            organisation_id=org.id,
            action=AuditAction.LEARNER_CREATED,
            subject_type="Organisation",
            subject_id=org.id,
        )
        endpoint = WebhookEndpoint(
            organisation_id=org.id,
            url=url,
            events=AuditAction.LEARNER_CREATED.value,
            secret="whsec_" + "A" * 44,
            created_at=now,
            updated_at=now,
            after_position=0,
        )
        await self._save(change, endpoint)
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id,
            organisation_id=org.id,
            change_id=change.id,
            change_position=0,
            status=WebhookDeliveryStatus.DELIVERED,
            attempts=1,
            created_at=now,
            next_attempt_at=now,
            delivered_at=now,
            response_status=200,
        )
        await self._save(delivery)
        return endpoint, delivery
