"""One organisation with a person in every role around one learner, and the outsiders.

Authorisation tests of a mutation ask, for every kind of caller, what it answers: granted to
the organisation's admins, refused to everyone else (a manager inside and outside the team,
assessors, a learner, another organisation's admin, support, an external assessor).
"""

from __future__ import annotations

from dataclasses import dataclass

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    Learner,
    Location,
    Organisation,
    User,
)
from tests.factories import World
from tests.helpers import Api, Caller

ADMINS = ["SUPER_ADMIN", "ADMIN"]
# Everyone else, inside the organisation and out.
OTHERS = [
    "SENIOR_ASSESSOR",
    "MANAGER_IN_TEAM",
    "MANAGER_OUTSIDE_TEAM",
    "ASSESSOR",
    "TRAINING_COORDINATOR",
    "LEARNER",
    "OTHER_ADMIN",
    "SUPPORT",
    "EXTERNAL_ASSESSOR",
]


@dataclass
class Cast:
    org: Organisation
    other: Organisation
    here: Location  # the learner's location: the team of one manager
    there: Location
    learner: Learner
    record: ApprenticeRecord  # assigned to the assessor and the coordinator
    people: dict[str, User]

    def as_(self, api: Api, who: str) -> Caller:
        org = self.other if who == "OTHER_ADMIN" else self.org
        if who in ("SUPPORT", "EXTERNAL_ASSESSOR"):
            return api.as_(self.people[who])
        return api.as_(self.people[who], org)


async def cast(world: World) -> Cast:
    org, other = await world.organisation(), await world.organisation()
    here, there = await world.location(org), await world.location(org)
    sign_in = await world.staff(org, "LEARNER", name="Lee Learner")
    learner = await world.learner(org, name="Lee Learner", location=here, user=sign_in)
    record = await world.record(learner)
    people = {
        "SUPER_ADMIN": await world.staff(org, "SUPER_ADMIN"),
        "ADMIN": await world.staff(org, "ADMIN"),
        "SENIOR_ASSESSOR": await world.staff(org, "SENIOR_ASSESSOR"),
        "MANAGER_IN_TEAM": await world.staff(org, "MANAGER", location=here),
        "MANAGER_OUTSIDE_TEAM": await world.staff(org, "MANAGER", location=there),
        "ASSESSOR": await world.staff(org, "ASSESSOR"),
        "TRAINING_COORDINATOR": await world.staff(org, "TRAINING_COORDINATOR"),
        "LEARNER": sign_in,
        "OTHER_ADMIN": await world.staff(other, "ADMIN"),
        "SUPPORT": await world.support(),
        "EXTERNAL_ASSESSOR": await world.external_assessor(),
    }
    await world.assign(record, people["ASSESSOR"])
    await world.assign(record, people["TRAINING_COORDINATOR"], AssignmentRole.TRAINING_COORDINATOR)
    await world.allocate(learner, people["EXTERNAL_ASSESSOR"])
    return Cast(org, other, here, there, learner, record, people)
