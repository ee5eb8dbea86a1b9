"""Every mutation writes a change for every object it changes (issue 22): each mutation of
tests/api/test_audit_trail.py's cases (and the cases that change more: a coordinator replaced,
a member with assignments deactivated) is run, every row of every table whose objects a change
can be about is compared before and after, and each object inserted or changed must be the
subject of one of the changes the mutation wrote (a membership stands for its user)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import Table, select

from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AssignmentRole,
    AutoAllocationRule,
    Change,
    Course,
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
)
from tests.api.test_audit_trail import CASES, _admin, _document, _gid, _record
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api

# table → (subject type, the column naming the subject)
SUBJECTS: dict[Any, tuple[str, str]] = {
    Organisation: ("Organisation", "id"),
    Location: ("Location", "id"),
    Department: ("Department", "id"),
    User: ("User", "id"),
    Membership: ("User", "user_id"),
    MembershipRole: ("User", "user_id"),
    Learner: ("Learner", "id"),
    ApprenticeRecord: ("ApprenticeRecord", "id"),
    RecordAssignment: ("Assignment", "id"),
    Allocation: ("Allocation", "id"),
    Evidence: ("Evidence", "id"),
    Course: ("Course", "id"),
    LicencePool: ("LicencePool", "id"),
    Licence: ("Licence", "id"),
    AutoAllocationRule: ("AutoAllocationRule", "id"),
    ApiKey: ("ApiKey", "id"),
}
# Columns that record a read, not a change.
NOT_CHANGES = {"last_used_at", "last_seen_at", "last_sign_in_at"}


async def snapshot(backend: Backend) -> dict[tuple[str, tuple[Any, ...]], tuple[str, int, Any]]:
    """Every row of the subject tables: (table, primary key) → (subject type, id, values)."""
    found = {}
    async with backend.engine.connect() as conn:
        for model, (type_name, column) in SUBJECTS.items():
            table: Table = model.__table__
            keys = [c.name for c in table.primary_key.columns]
            stmt = select(table)
            if model is MembershipRole:  # a role of a membership: its user's
                stmt = select(table, Membership.user_id).join(
                    Membership, Membership.id == MembershipRole.membership_id
                )
            for row in (await conn.execute(stmt)).mappings():
                values = tuple(sorted((k, str(v)) for k, v in row.items() if k not in NOT_CHANGES))
                found[(table.name, tuple(row[k] for k in keys))] = (
                    type_name,
                    row[column],
                    values,
                )
    return found


async def written_since(backend: Backend, last: int) -> set[tuple[str, int]]:
    async with backend.engine.connect() as conn:
        rows = await conn.execute(
            select(Change.subject_type, Change.subject_id).where(Change.id > last)
        )
        return {(t, pk) for t, pk in rows}


async def last_change(backend: Backend) -> int:
    async with backend.engine.connect() as conn:
        return int(await conn.scalar(select(Change.id).order_by(Change.id.desc()).limit(1)) or 0)


Given = Callable[[World, Organisation], Awaitable[tuple[User, dict[str, Any]]]]


async def _replace_coordinator(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record = await _record(world, org)
    await world.assign(
        record, await world.staff(org, "TRAINING_COORDINATOR"), AssignmentRole.TRAINING_COORDINATOR
    )
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    return await _admin(world, org), {"recordId": _gid(record), "coordinatorId": _gid(coordinator)}


async def _deactivate_with_work(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    assessor = await world.staff(org, "ASSESSOR")
    await world.assign(await _record(world, org), assessor)
    return await _admin(world, org), {"userId": _gid(assessor)}


async def _archive_with_work(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record = await _record(world, org)
    await world.assign(record, await world.staff(org, "ASSESSOR"))
    return await _admin(world, org), {"recordId": _gid(record)}


async def _rule_for_everyone(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    await world.pool(org, course, 5)
    await world.learner(org)
    await world.learner(org)
    return await _admin(world, org), {
        "courseId": _gid(course),
        "scope": "ENTIRE_COMPANY",
        "applyToExisting": True,
    }


async def _learner_a_rule_reaches(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    await world.pool(org, course, 5)
    await world.rule(org, course)
    return await _admin(world, org), {"name": "L", "email": "l@example.org"}


RUNS: dict[str, tuple[str, Given]] = {name: (name, case.given) for name, case in CASES.items()}
RUNS |= {
    "assignTrainingCoordinator, replacing one": (
        "assignTrainingCoordinator",
        _replace_coordinator,
    ),
    "deactivateStaffMember, with assignments": ("deactivateStaffMember", _deactivate_with_work),
    "archiveApprenticeRecord, with assignments": ("archiveApprenticeRecord", _archive_with_work),
    "createAutoAllocationRule, applied to existing learners": (
        "createAutoAllocationRule",
        _rule_for_everyone,
    ),
    "createLearner, whom a rule reaches": ("createLearner", _learner_a_rule_reaches),
}


@pytest.mark.parametrize("run", sorted(RUNS))
async def test_every_object_a_mutation_changes_is_the_subject_of_a_change(
    api: Api, world: World, backend: Backend, run: str
) -> None:
    name, given = RUNS[run]
    org = await world.organisation()
    actor, variables = await given(world, org)
    before, last = await snapshot(backend), await last_change(backend)
    answer = (
        await api.as_(actor, None if actor.kind.value == "SUPPORT" else org)(
            _document(name), input=variables
        )
    ).ok()[name]
    assert "code" not in answer, answer
    after = await snapshot(backend)
    changed = {
        (type_name, pk)
        for key, (type_name, pk, values) in after.items()
        if key not in before or before[key][2] != values
    } | {(type_name, pk) for key, (type_name, pk, _) in before.items() if key not in after}
    written = await written_since(backend, last)
    assert changed <= written, f"changed without a change: {sorted(changed - written)}"
