"""Learner.access: who can see a learner and why, from the same scopes as every list."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from db.models import AssignmentRole, Organisation, User
from server.services import Services
from tests.factories import World
from tests.helpers import Api, Caller, counting, gid

ACCESS = """query($id: ID!) {
  learner(id: $id) { access { user { id } role reason expiresAt } }
}"""
VISIBLE = """query($after: String) {
  learners(first: 500, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
}"""


async def _visible(caller: Caller) -> set[str]:
    found: set[str] = set()
    after = None
    while True:
        page = (await caller(VISIBLE, after=after)).ok()["learners"]
        found |= {e["node"]["id"] for e in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def test_access_matches_what_every_principal_sees(api: Api, world: World) -> None:
    rng = random.Random(11)
    orgs = [await world.organisation() for _ in range(2)]
    principals: list[tuple[User, Organisation | None]] = []
    admins: dict[int, User] = {}
    learners_by_org: dict[int, list[str]] = {}
    externals = [await world.external_assessor() for _ in range(3)]
    principals += [(e, None) for e in externals]
    for org in orgs:
        locations = [await world.location(org) for _ in range(2)]
        departments = [await world.department(org) for _ in range(2)]
        admins[org.id] = await world.staff(org, "ADMIN")
        staff = [
            admins[org.id],
            await world.staff(org, "SUPER_ADMIN"),
            await world.staff(org, "SENIOR_ASSESSOR"),
        ]
        staff += [
            await world.staff(org, "MANAGER", location=locations[0]),
            await world.staff(org, "MANAGER", department=departments[1]),
            await world.staff(org, "MANAGER", location=locations[1], department=departments[0]),
            await world.staff(org, "MANAGER"),
        ]
        assessors = [await world.staff(org, "ASSESSOR") for _ in range(3)]
        coordinators = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
        staff += assessors + coordinators
        principals += [(s, org) for s in staff]
        learners_by_org[org.id] = []
        for n in range(16):
            user = await world.staff(org, "LEARNER") if n % 4 == 0 else None
            learner = await world.learner(
                org,
                location=rng.choice([*locations, None]),
                department=rng.choice([*departments, None]),
                user=user,
            )
            if user is not None:
                principals.append((user, org))
            learners_by_org[org.id].append(gid("Learner", learner.id))
            for _ in range(rng.choice([1, 2])):
                record = await world.record(learner)
                if rng.random() < 0.6:
                    await world.assign(record, rng.choice(assessors), ended=rng.random() < 0.2)
                if rng.random() < 0.3:
                    await world.assign(
                        record, rng.choice(coordinators), AssignmentRole.TRAINING_COORDINATOR
                    )
            if rng.random() < 0.4:
                expires = rng.choice([None, timedelta(days=2), timedelta(days=-2)])
                await world.allocate(
                    learner,
                    rng.choice(externals),
                    expires_at=None if expires is None else datetime.now(UTC) + expires,
                    ended=rng.random() < 0.15,
                )
    # A person in both organisations, with different roles.
    both = await world.staff(orgs[0], "ASSESSOR")
    await world.staff(orgs[1], "SENIOR_ASSESSOR", user=both)
    principals += [(both, orgs[0]), (both, orgs[1])]

    # when every principal lists what they see
    seen_by: dict[str, set[str]] = {}
    for user, acting_in in principals:
        for learner_id in await _visible(api.as_(user, acting_in)):
            seen_by.setdefault(learner_id, set()).add(gid("User", user.id))

    # then each learner's access list names exactly those people
    for org in orgs:
        admin = api.as_(admins[org.id], org)
        for learner_id in learners_by_org[org.id]:
            access = (await admin(ACCESS, id=learner_id)).ok()["learner"]["access"]
            assert {a["user"]["id"] for a in access} == seen_by.get(learner_id, set()), learner_id
            for grant in access:
                assert (grant["expiresAt"] is not None) <= (grant["reason"] == "ALLOCATED")


async def test_reasons_and_expiry(api: Api, world: World) -> None:
    org = await world.organisation()
    leeds = await world.location(org)
    admin = await world.staff(org, "ADMIN")
    manager = await world.staff(org, "MANAGER", location=leeds)
    assessor = await world.staff(org, "ASSESSOR")
    user = await world.staff(org, "LEARNER")
    learner = await world.learner(org, location=leeds, user=user)
    await world.assign(await world.record(learner), assessor)
    external = await world.external_assessor()
    expires = datetime.now(UTC) + timedelta(days=3)
    await world.allocate(learner, external, expires_at=expires)

    access = (await api.as_(admin, org)(ACCESS, id=gid("Learner", learner.id))).ok()["learner"][
        "access"
    ]
    got = {(a["user"]["id"], a["role"], a["reason"]) for a in access}
    assert got == {
        (gid("User", admin.id), "ADMIN", "ORGANISATION"),
        (gid("User", manager.id), "MANAGER", "TEAM"),
        (gid("User", assessor.id), "ASSESSOR", "ASSIGNED"),
        (gid("User", user.id), "LEARNER", "SELF"),
        (gid("User", external.id), "EXTERNAL_ASSESSOR", "ALLOCATED"),
    }
    (allocated,) = [a for a in access if a["reason"] == "ALLOCATED"]
    assert abs(datetime.fromisoformat(allocated["expiresAt"]) - expires) < timedelta(seconds=1)

    # The learner may read their own access list; a manager or an assessor may not.
    own = (await api.as_(user, org)(ACCESS, id=gid("Learner", learner.id))).ok()["learner"][
        "access"
    ]
    assert len(own) == 5
    for caller in (api.as_(manager, org), api.as_(assessor, org), api.as_(external)):
        result = await caller(ACCESS, id=gid("Learner", learner.id))
        assert result.codes == ["FORBIDDEN"]
        assert result.data == {"learner": {"access": None}}


async def test_api_keys_that_can_read_the_learner_are_listed(api: Api, world: World) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    reader = await world.api_key(org, "ADMIN", name="MIS feed")
    await world.api_key(org, "ASSESSOR", name="Sees nobody")
    await world.api_key(org, "ADMIN", name="Revoked", revoked=True)
    await world.api_key(other, "ADMIN", name="Elsewhere")

    access = (await api.as_(admin, org)(ACCESS, id=gid("Learner", learner.id))).ok()["learner"][
        "access"
    ]
    keys = [a for a in access if a["user"]["id"] == gid("User", reader.user_id)]
    assert [(a["role"], a["reason"]) for a in keys] == [("ADMIN", "ORGANISATION")]
    assert {a["user"]["id"] for a in access} == {
        gid("User", admin.id),
        gid("User", reader.user_id),
    }


async def test_access_on_a_page_costs_the_same_for_5_and_50_learners(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessors = [await world.staff(org, "ASSESSOR") for _ in range(4)]
    place = await world.location(org)
    await world.staff(org, "MANAGER", location=place)
    external = await world.external_assessor()
    for n in range(50):
        user = await world.staff(org, "LEARNER") if n % 5 == 0 else None
        learner = await world.learner(org, location=place if n % 2 else None, user=user)
        await world.assign(await world.record(learner), assessors[n % 4])
        if n % 7 == 0:
            await world.allocate(learner, external)
    query = "query($n: Int!) { learners(first: $n) { edges { node { access { role } } } } }"
    counts = {}
    for size in (5, 50):
        with counting(services.engine) as statements:
            (await api.as_(admin, org)(query, n=size)).ok()
        counts[size] = len(statements)
    assert counts[5] == counts[50] <= 12, counts
