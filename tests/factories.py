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
    Department,
    Evidence,
    Learner,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    RecordStatus,
    User,
    UserKind,
)

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
        self, org: Organisation, *roles: str, name: str = "Partner feed", revoked: bool = False
    ) -> ApiKey:
        """A partner system's key in `org` (stored as the service user it acts as)."""
        n = next(_counter)
        user = await self.user(UserKind.SERVICE, name=name, email=f"apikey-{n}@keys.invalid")
        row = ApiKey(
            organisation_id=org.id,
            user_id=user.id,
            name=name,
            prefix=f"p{n:011d}",
            key_hash="0" * 64,
            roles=",".join(roles),
            created_at=utcnow(),
            revoked_at=utcnow() if revoked else None,
        )
        await self._save(row)
        return row
