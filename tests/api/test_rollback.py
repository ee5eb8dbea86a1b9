"""What "rolled back" means when one operation holds several mutations (README, Errors).

Each mutation runs in its own savepoint: a typed error (a member of its result union) rolls
back that mutation only, and the others are committed; a top-level error (FORBIDDEN,
UNAUTHENTICATED, INVALID, an unexpected failure) rolls back the whole operation.
"""

from __future__ import annotations

from sqlalchemy import select

from db.models import Learner
from tests.cast import cast
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, database_state, gid

SEVERAL = """mutation($first: CreateLearnerInput!, $second: UpdateLearnerInput!,
                     $third: CreateLearnerInput!) {
  first: createLearner(input: $first) { __typename }
  second: updateLearner(input: $second) { __typename ... on Error { code } }
  third: createLearner(input: $third) { __typename }
}"""


async def names(world: World) -> set[str]:
    async with world.maker() as session:
        return set((await session.execute(select(Learner.name))).scalars())


TYPED = """mutation($first: CreateLearnerInput!, $second: UpdateStaffMemberInput!,
                    $third: CreateLearnerInput!) {
  first: createLearner(input: $first) { __typename }
  second: updateStaffMember(input: $second) { __typename ... on Error { code } }
  third: createLearner(input: $third) { __typename }
}"""


async def test_a_typed_error_rolls_back_its_own_mutation_only(api: Api, world: World) -> None:
    c = await cast(world)
    assessor = c.people["ASSESSOR"]
    roles = "query($id: ID!) { node(id: $id) { ... on User { roles } } }"
    admin = c.as_(api, "ADMIN")
    result = await admin(
        TYPED,
        first={"name": "First Person"},
        # updateStaffMember writes the new roles, then finds the department does not exist:
        # its whole savepoint is undone, the roles it had written included
        second={
            "userId": gid("User", assessor.id),
            "roles": ["ASSESSOR", "MANAGER"],
            "departmentId": gid("Department", 10**9),
        },
        third={"name": "Third Person"},
    )
    assert result.ok() == {
        "first": {"__typename": "LearnerCreated"},
        "second": {"__typename": "NotFoundError", "code": "NOT_FOUND"},
        "third": {"__typename": "LearnerCreated"},
    }
    assert {"First Person", "Third Person"} <= await names(world)
    shown = (await admin(roles, id=gid("User", assessor.id))).ok()
    assert shown == {"node": {"roles": ["ASSESSOR"]}}


async def test_a_top_level_error_rolls_back_the_whole_operation(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    # the learner also belongs elsewhere: renaming them is FORBIDDEN, a top-level error
    await world.staff(c.other, "ASSESSOR", user=c.people["LEARNER"])
    before = await database_state(backend.engine)
    result = await c.as_(api, "ADMIN")(
        SEVERAL,
        first={"name": "First Person"},
        second={"learnerId": gid("Learner", c.learner.id), "name": "Renamed"},
        third={"name": "Third Person"},
    )
    assert [e["extensions"]["code"] for e in result.errors] == ["FORBIDDEN"]
    # the answer is the error alone (the result is non-null, so data is null), and nothing of
    # the operation was kept: not even the first mutation, which had succeeded
    assert result.data is None and result.errors[0]["path"] == ["second"]
    assert await database_state(backend.engine) == before
