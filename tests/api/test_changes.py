"""The change outbox and the `changes` feed (issue 22): one change per audit verb and object,
written with the mutation; nothing for a rollback or a repeat; read oldest first in commit
order, under the reader's scopes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import AuditAction, Change
from tests.cast import cast
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, gid

CREATE = """mutation($input: CreateLearnerInput!) { createLearner(input: $input) { __typename } }"""
IMPORT = """mutation($input: ImportLearnersInput!) {
  importLearners(input: $input) { __typename }
}"""
ARCHIVE = """mutation($id: ID!) {
  archiveApprenticeRecord(input: {recordId: $id}) {
    __typename ... on ApprenticeRecordArchived { unchanged }
  }
}"""
CREATE_THEN_FAIL = """mutation($first: CreateLearnerInput!, $second: UpdateLearnerInput!) {
  first: createLearner(input: $first) { __typename }
  second: updateLearner(input: $second) { __typename }
}"""


async def outbox(backend: Backend) -> list[tuple[Any, ...]]:
    async with backend.engine.connect() as conn:
        rows = await conn.execute(
            select(Change.action, Change.subject_type, Change.subject_id).order_by(
                Change.xid, Change.id
            )
        )
        return [tuple(r) for r in rows]


async def test_each_change_writes_one_row_per_object_and_a_repeat_none(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    (await admin(CREATE, input={"name": "Ada Lovelace"})).ok()
    (await admin(IMPORT, input={"learners": [{"name": "Bo One"}, {"name": "Cy Two"}]})).ok()
    first = (await admin(ARCHIVE, id=gid("ApprenticeRecord", c.record.id))).ok()
    again = (await admin(ARCHIVE, id=gid("ApprenticeRecord", c.record.id))).ok()
    assert (
        first["archiveApprenticeRecord"]["unchanged"],
        again["archiveApprenticeRecord"]["unchanged"],
    ) == (False, True)

    rows = await outbox(backend)
    assert [(a, t) for a, t, _ in rows] == [
        (AuditAction.LEARNER_CREATED, "Learner"),
        (AuditAction.LEARNERS_IMPORTED, "Learner"),  # one per learner imported
        (AuditAction.LEARNERS_IMPORTED, "Learner"),
        (AuditAction.APPRENTICE_RECORD_ARCHIVED, "ApprenticeRecord"),  # the repeat: none
    ]
    assert rows[-1][2] == c.record.id
    assert len({pk for _, _, pk in rows[:3]}) == 3


async def test_a_rolled_back_mutation_writes_no_change(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    # the learner also belongs elsewhere: renaming them is FORBIDDEN, a top-level error
    await world.staff(c.other, "ASSESSOR", user=c.people["LEARNER"])
    result = await admin(
        CREATE_THEN_FAIL,
        first={"name": "Never Committed"},
        second={"learnerId": gid("Learner", c.learner.id), "name": "Renamed"},
    )
    assert result.codes == ["FORBIDDEN"]
    assert await outbox(backend) == []
