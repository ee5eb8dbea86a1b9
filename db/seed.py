"""Seed data: the demo organisation, and larger generated presets for trying scale.

Writes with bulk INSERTs straight through SQLAlchemy; knows nothing of the API above it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.models import (
    Allocation,
    ApprenticeRecord,
    AssignmentRole,
    AutoAllocationRule,
    Course,
    Department,
    Evidence,
    EvidenceStatus,
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
)

SUPPORT_EMAIL = "support@caseload.example"

FIRST = [
    "Amira",
    "Ben",
    "Chloe",
    "Dev",
    "Ella",
    "Finn",
    "Grace",
    "Hamza",
    "Isla",
    "Jack",
    "Kai",
    "Lena",
    "Mo",
    "Nia",
    "Owen",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Usman",
    "Vera",
    "Will",
    "Xena",
    "Yusuf",
    "Zara",
]
LAST = [
    "Khan",
    "Smith",
    "Jones",
    "Patel",
    "Brown",
    "Taylor",
    "Wilson",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "Wright",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Clarke",
    "Begum",
    "Ahmed",
    "Murphy",
]
PROGRAMMES = (
    "Residential Childcare Level 3 diploma",
    "Adult Care Worker Level 2",
    "Lead Adult Care Worker Level 3",
    "Leader in Adult Care Level 5",
    "Team Leader Level 3",
)


# (name, email, roles, location id, department id)
StaffRow = tuple[str, str, list[str], int | None, int | None]


DEMO_COURSES = (
    ("Fire safety awareness", "FIRE-101"),
    ("Safeguarding adults", "SAFE-201"),
    ("Moving and handling", "MOVE-110"),
    ("Food hygiene level 2", "FOOD-102"),
)


@dataclass(frozen=True)
class Preset:
    organisations: int
    learners_per_organisation: int
    staff_per_organisation: int = 12
    courses: int = 10
    licences_per_learner: int = 3
    recalled_share: float = 0.2


PRESETS = {
    "small": Preset(organisations=3, learners_per_organisation=1_000),
    "bench": Preset(
        organisations=1, learners_per_organisation=100_000, staff_per_organisation=60, courses=50
    ),
}


# The demo's people, one per kind of user: (what they are, email, organisation slug).
DEMO_USERS: tuple[tuple[str, str, str | None], ...] = (
    ("support", SUPPORT_EMAIL, None),
    ("super admin", "super.admin@oakwood.example", "oakwood"),
    ("admin", "admin@oakwood.example", "oakwood"),
    ("senior assessor", "senior.assessor@oakwood.example", "oakwood"),
    ("manager", "manager@oakwood.example", "oakwood"),
    ("assessor", "assessor@oakwood.example", "oakwood"),
    ("training coordinator", "coordinator@oakwood.example", "oakwood"),
    ("learner", "amira.khan@oakwood.example", "oakwood"),
    ("external assessor", "jo.external@college.example", None),
)


@dataclass
class DemoPeople:
    """Emails of the demo users, by what they are, for printing tokens."""

    by_role: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def _picture(who: str) -> str:
    """A demo picture's address."""
    return f"https://pictures.caseload.example/demo/{who}.jpg"


def _now() -> datetime:
    return datetime.now(UTC)


async def _insert(conn: AsyncConnection, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows and return their ids in order (one statement per chunk)."""
    ids: list[int] = []
    for start in range(0, len(rows), 2_000):
        chunk = rows[start : start + 2_000]
        result = await conn.execute(
            insert(model).returning(model.id, sort_by_parameter_order=True), chunk
        )
        ids += [row[0] for row in result]
    return ids


async def _insert_plain(conn: AsyncConnection, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 5_000):
        await conn.execute(insert(model), rows[start : start + 5_000])


async def ensure_support(
    conn: AsyncConnection, email: str = SUPPORT_EMAIL, name: str = "Support Desk"
) -> int:
    existing = (await conn.execute(select(User.id).where(User.email == email))).scalar()
    if existing is not None:
        return int(existing)
    (user_id,) = await _insert(
        conn, User, [{"email": email, "name": name, "kind": UserKind.SUPPORT, "created_at": _now()}]
    )
    return user_id


async def _staff(
    conn: AsyncConnection,
    organisation_id: int,
    people: list[StaffRow],
) -> list[int]:
    now = _now()
    user_ids = await _insert(
        conn,
        User,
        [
            {"email": e, "name": n, "kind": UserKind.STAFF, "created_at": now}
            for n, e, _, _, _ in people
        ],
    )
    membership_ids = await _insert(
        conn,
        Membership,
        [
            {
                "user_id": uid,
                "organisation_id": organisation_id,
                "location_id": loc,
                "department_id": dept,
                "created_at": now,
            }
            for uid, (_, _, _, loc, dept) in zip(user_ids, people, strict=True)
        ],
    )
    await _insert_plain(
        conn,
        MembershipRole,
        [
            {"membership_id": mid, "role": role}
            for mid, (_, _, roles, _, _) in zip(membership_ids, people, strict=True)
            for role in roles
        ],
    )
    return user_ids


async def _organisation(
    conn: AsyncConnection, name: str, slug: str, units: tuple[list[str], list[str]]
) -> tuple[int, list[int], list[int]]:
    (org_id,) = await _insert(
        conn, Organisation, [{"name": name, "slug": slug, "created_at": _now()}]
    )
    locations = await _insert(
        conn, Location, [{"organisation_id": org_id, "name": n} for n in units[0]]
    )
    departments = await _insert(
        conn, Department, [{"organisation_id": org_id, "name": n} for n in units[1]]
    )
    return org_id, locations, departments


async def _learners(
    conn: AsyncConnection,
    rng: random.Random,
    organisation_id: int,
    count: int,
    locations: list[int],
    departments: list[int],
    domain: str,
) -> list[int]:
    start = _now() - timedelta(days=365)
    rows = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        rows.append(
            {
                "organisation_id": organisation_id,
                "name": f"{first} {last}",
                "email": f"{first}.{last}.{i}@{domain}".lower(),
                "location_id": rng.choice([*locations, None]) if locations else None,
                "department_id": rng.choice([*departments, None]) if departments else None,
                "created_at": start + timedelta(minutes=i),
            }
        )
    return await _insert(conn, Learner, rows)


async def _records(
    conn: AsyncConnection,
    rng: random.Random,
    organisation_id: int,
    learner_ids: list[int],
    assessors: list[int],
    coordinators: list[int],
    assigned_by: int,
) -> list[int]:
    rows = []
    for learner_id in learner_ids:
        for _ in range(rng.choice((1, 1, 2))):
            rows.append(
                {
                    "organisation_id": organisation_id,
                    "learner_id": learner_id,
                    "programme": rng.choice(PROGRAMMES),
                    "status": RecordStatus.LIVE if rng.random() < 0.9 else RecordStatus.ARCHIVED,
                    "start_date": date(2026, 1, 1) + timedelta(days=rng.randrange(300)),
                    "created_at": _now(),
                }
            )
    record_ids = await _insert(conn, ApprenticeRecord, rows)
    now = _now()
    assignments = []
    for record_id in record_ids:
        if assessors and rng.random() < 0.8:
            assignments.append(
                {
                    "organisation_id": organisation_id,
                    "record_id": record_id,
                    "user_id": rng.choice(assessors),
                    "role": AssignmentRole.ASSESSOR,
                    "assigned_at": now,
                    "assigned_by_id": assigned_by,
                }
            )
        if coordinators and rng.random() < 0.5:
            assignments.append(
                {
                    "organisation_id": organisation_id,
                    "record_id": record_id,
                    "user_id": rng.choice(coordinators),
                    "role": AssignmentRole.TRAINING_COORDINATOR,
                    "assigned_at": now,
                    "assigned_by_id": assigned_by,
                }
            )
    await _insert_plain(conn, RecordAssignment, assignments)
    return record_ids


async def _courses(conn: AsyncConnection, wanted: list[tuple[str, str]]) -> list[int]:
    """The catalogue's courses by code, created where missing (the catalogue is shared)."""
    codes = [code for _, code in wanted]
    found: dict[str, int] = {
        code: pk
        for code, pk in (
            await conn.execute(select(Course.code, Course.id).where(Course.code.in_(codes)))
        ).all()
    }
    missing = [{"title": t, "code": c, "created_at": _now()} for t, c in wanted if c not in found]
    for row, pk in zip(missing, await _insert(conn, Course, missing), strict=True):
        found[str(row["code"])] = pk
    return [found[c] for c in codes]


async def _licences(
    conn: AsyncConnection,
    rng: random.Random,
    organisation_id: int,
    learner_ids: list[int],
    course_ids: list[int],
    *,
    per_learner: int,
    recalled_share: float,
    seats: int,
    allocated_by: int,
) -> None:
    """A pool per course, `per_learner` licences per learner (some recalled), seats counted."""
    pool_ids = await _insert(
        conn,
        LicencePool,
        [
            {
                "organisation_id": organisation_id,
                "course_id": c,
                "seats_total": seats,
                "seats_used": 0,
                "updated_at": _now(),
            }
            for c in course_ids
        ],
    )
    pool_of = dict(zip(course_ids, pool_ids, strict=True))
    used: dict[int, int] = dict.fromkeys(pool_ids, 0)
    now = _now()
    rows = []
    for learner_id in learner_ids:
        for course_id in rng.sample(course_ids, min(per_learner, len(course_ids))):
            recalled = rng.random() < recalled_share
            launched = not recalled and rng.random() < 0.3
            if not recalled:
                used[pool_of[course_id]] += 1
            rows.append(
                {
                    "organisation_id": organisation_id,
                    "pool_id": pool_of[course_id],
                    "learner_id": learner_id,
                    "course_id": course_id,
                    "status": LicenceStatus.RECALLED if recalled else LicenceStatus.ACTIVE,
                    "source": LicenceSource.MANUAL,
                    "allocated_at": now,
                    "allocated_by_id": allocated_by,
                    "launched_at": now if launched else None,
                    "recalled_at": now if recalled else None,
                    "recalled_by_id": allocated_by if recalled else None,
                }
            )
    await _insert_plain(conn, Licence, rows)
    for pool_id, count in used.items():
        await conn.execute(
            update(LicencePool).where(LicencePool.id == pool_id).values(seats_used=count)
        )


async def seed_demo(engine: AsyncEngine) -> DemoPeople:
    """The demo organisation (idempotent): every role, with a little of everything."""
    people = DemoPeople()
    rng = random.Random(7)
    async with engine.begin() as conn:
        await ensure_support(conn)
        exists = (
            await conn.execute(select(Organisation.id).where(Organisation.slug == "oakwood"))
        ).scalar()
        if exists is None:
            await _seed_demo_rows(conn, rng)
    for role, email, org in DEMO_USERS:
        people.by_role[role] = (email, org)
    return people


async def _seed_demo_rows(conn: AsyncConnection, rng: random.Random) -> None:
    org, (leeds, york), (residential, domiciliary) = await _organisation(
        conn, "Oakwood Care", "oakwood", (["Leeds", "York"], ["Residential", "Domiciliary"])
    )
    super_admin, _admin, senior, _manager, assessor, coordinator = await _staff(
        conn,
        org,
        [
            ("Sue Perkins", "super.admin@oakwood.example", ["SUPER_ADMIN"], None, None),
            ("Adam Ince", "admin@oakwood.example", ["ADMIN"], None, None),
            ("Sana Iqbal", "senior.assessor@oakwood.example", ["SENIOR_ASSESSOR"], None, None),
            ("Maya Lowe", "manager@oakwood.example", ["MANAGER"], leeds, residential),
            ("Alex Stone", "assessor@oakwood.example", ["ASSESSOR"], None, None),
            ("Toni Carter", "coordinator@oakwood.example", ["TRAINING_COORDINATOR"], None, None),
        ],
    )
    learner_ids = await _learners(
        conn, rng, org, 24, [leeds, york], [residential, domiciliary], "oakwood.example"
    )
    # One learner who signs in: Amira Khan.
    (amira_user,) = await _staff(
        conn, org, [("Amira Khan", "amira.khan@oakwood.example", ["LEARNER"], leeds, residential)]
    )
    (amira,) = await _insert(
        conn,
        Learner,
        [
            {
                "organisation_id": org,
                "user_id": amira_user,
                "name": "Amira Khan",
                "email": "amira.khan@oakwood.example",
                "location_id": leeds,
                "department_id": residential,
                "created_at": _now(),
            }
        ],
    )
    learner_ids.append(amira)
    # Pictures for a few people and learners (addresses only: nothing fetches them).
    for table, pk, who in (
        (User, senior, "sana-iqbal"),
        (User, assessor, "alex-stone"),
        (User, coordinator, "toni-carter"),
        (User, amira_user, "amira-khan"),
        (Learner, amira, "amira-khan"),
        (Learner, learner_ids[0], "learner-1"),
        (Learner, learner_ids[1], "learner-2"),
    ):
        await conn.execute(update(table).where(table.id == pk).values(avatar_url=_picture(who)))
    records = await _records(
        conn, rng, org, learner_ids, [assessor, senior], [coordinator], super_admin
    )
    await _insert_plain(
        conn,
        Evidence,
        [
            {
                "organisation_id": org,
                "record_id": record_id,
                "title": f"Unit {n + 1} reflective account",
                "status": EvidenceStatus.SUBMITTED,
                "submitted_at": _now(),
            }
            for n, record_id in enumerate(records[:10])
        ],
    )

    # Course licences: a pool per course, some licences, and one rule (Leeds: safeguarding).
    courses = await _courses(conn, list(DEMO_COURSES))
    await _licences(
        conn,
        random.Random(11),  # its own sequence: the rest of the demo stays as it was
        org,
        learner_ids[:12],
        courses[:3],
        per_learner=1,
        recalled_share=0.15,
        seats=20,
        allocated_by=super_admin,
    )
    await _insert_plain(
        conn,
        LicencePool,
        [
            {
                "organisation_id": org,
                "course_id": courses[3],
                "seats_total": 5,
                "seats_used": 0,
                "updated_at": _now(),
            }
        ],
    )
    await _insert_plain(
        conn,
        AutoAllocationRule,
        [
            {
                "organisation_id": org,
                "course_id": courses[1],
                "scope": RuleScope.LOCATION,
                "location_id": leeds,
                "created_at": _now(),
                "created_by_id": super_admin,
            }
        ],
    )

    other, other_locations, other_departments = await _organisation(
        conn, "Riverside Training", "riverside", (["Hull"], ["Apprenticeships"])
    )
    (other_admin,) = await _staff(
        conn, other, [("Rita Moss", "admin@riverside.example", ["SUPER_ADMIN"], None, None)]
    )
    other_learners = await _learners(
        conn, rng, other, 10, other_locations, other_departments, "riverside.example"
    )
    await _records(conn, rng, other, other_learners, [], [], other_admin)

    # An external assessor, allocated in both organisations.
    (external,) = await _insert(
        conn,
        User,
        [
            {
                "email": "jo.external@college.example",
                "name": "Jo Marsh",
                "kind": UserKind.EXTERNAL_ASSESSOR,
                "avatar_url": _picture("jo-marsh"),
                "created_at": _now(),
            }
        ],
    )
    await _insert_plain(
        conn,
        Allocation,
        [
            {
                "organisation_id": org,
                "learner_id": amira,
                "assessor_id": external,
                "allocated_by_id": super_admin,
                "allocated_at": _now(),
            },
            {
                "organisation_id": org,
                "learner_id": learner_ids[0],
                "assessor_id": external,
                "allocated_by_id": super_admin,
                "allocated_at": _now(),
            },
            {
                "organisation_id": other,
                "learner_id": other_learners[0],
                "assessor_id": external,
                "allocated_by_id": other_admin,
                "allocated_at": _now(),
            },
        ],
    )


async def seed_preset(engine: AsyncEngine, name: str, seed: int = 1) -> dict[str, int]:
    """Generated organisations of the preset's size; slugs `<preset>-<n>`."""
    preset = PRESETS[name]
    rng = random.Random(seed)
    async with engine.begin() as conn:
        await ensure_support(conn)
        taken = (
            await conn.execute(select(func.count()).where(Organisation.slug.like(f"{name}-%")))
        ).scalar_one()
        for n in range(taken + 1, taken + 1 + preset.organisations):
            slug = f"{name}-{n}"
            org, locations, departments = await _organisation(
                conn,
                f"{name.title()} Organisation {n}",
                slug,
                ([f"Site {i}" for i in range(1, 9)], [f"Department {i}" for i in range(1, 7)]),
            )
            staff = preset.staff_per_organisation
            roles = ["ASSESSOR"] * (staff // 2) + ["TRAINING_COORDINATOR"] * (staff // 4)
            roles += ["SENIOR_ASSESSOR", "MANAGER"] * (staff - len(roles))
            roles = roles[: staff - 1]
            people: list[StaffRow] = [
                ("Admin Person", f"admin@{slug}.example", ["SUPER_ADMIN"], None, None)
            ]
            people += [
                (
                    f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    f"staff{i}@{slug}.example",
                    [role],
                    rng.choice(locations) if role == "MANAGER" else None,
                    rng.choice(departments) if role == "MANAGER" else None,
                )
                for i, role in enumerate(roles)
            ]
            ids = await _staff(conn, org, people)
            assessors = [
                u
                for u, p in zip(ids, people, strict=True)
                if p[2][0] in ("ASSESSOR", "SENIOR_ASSESSOR")
            ]
            coordinators = [
                u for u, p in zip(ids, people, strict=True) if p[2][0] == "TRAINING_COORDINATOR"
            ]
            learners = await _learners(
                conn,
                rng,
                org,
                preset.learners_per_organisation,
                locations,
                departments,
                f"{slug}.example",
            )
            await _records(conn, rng, org, learners, assessors, coordinators, ids[0])
            courses = await _courses(
                conn,
                [
                    (f"{name.title()} course {c}", f"{name.upper()}-{c:03d}")
                    for c in range(1, 1 + preset.courses)
                ],
            )
            await _licences(
                conn,
                rng,
                org,
                learners,
                courses,
                per_learner=preset.licences_per_learner,
                recalled_share=preset.recalled_share,
                seats=preset.learners_per_organisation,
                allocated_by=ids[0],
            )
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))  # plans for the new sizes, not an empty database
    return {
        "organisations": preset.organisations,
        "learners": preset.organisations * preset.learners_per_organisation,
    }
