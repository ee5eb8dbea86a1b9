"""Capabilities: which organisations the signed-in person belongs to, and what they may do."""

from __future__ import annotations

from tests.factories import World
from tests.helpers import Api, gid

MEMBERSHIPS = """{ viewer { memberships {
  organisation { id name slug } roles location { name } department { name }
} } }"""


async def test_a_person_in_two_organisations_sees_both_with_either_token(
    api: Api, world: World
) -> None:
    north = await world.organisation(slug="north", name="North Care")
    south = await world.organisation(slug="south", name="South Training")
    site = await world.location(north, "Leeds")
    team = await world.department(south, "Nursing")
    person = await world.staff(north, "MANAGER", "ASSESSOR", location=site)
    await world.staff(south, "ADMIN", department=team, user=person)
    third = await world.organisation(slug="west")
    await world.staff(third, "ADMIN", user=person)
    await world.deactivate(person, third)  # a deactivated membership is left out

    expected = [
        {
            "organisation": {
                "id": gid("Organisation", north.id),
                "name": "North Care",
                "slug": "north",
            },
            "roles": ["MANAGER", "ASSESSOR"],
            "location": {"name": "Leeds"},
            "department": None,
        },
        {
            "organisation": {
                "id": gid("Organisation", south.id),
                "name": "South Training",
                "slug": "south",
            },
            "roles": ["ADMIN"],
            "location": None,
            "department": {"name": "Nursing"},
        },
    ]
    for org in (north, south):
        found = (await api.as_(person, org)(MEMBERSHIPS)).ok()["viewer"]["memberships"]
        assert found == expected


async def test_support_external_assessors_and_api_keys_belong_to_no_organisation(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    _, key = await world.usable_api_key(org, "ADMIN")
    for call in (
        api.as_(await world.support()),
        api.as_(await world.external_assessor()),
        api.with_key(key),
    ):
        assert (await call(MEMBERSHIPS)).ok()["viewer"]["memberships"] == []
