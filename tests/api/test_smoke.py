from tests.factories import World
from tests.helpers import Api


async def test_viewer_of_an_admin(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN", name="Ada Lovelace")
    result = await api.as_(admin, org)(
        "{ viewer { user { name initials } roles organisation { slug } } }"
    )
    assert result.ok() == {
        "viewer": {
            "user": {"name": "Ada Lovelace", "initials": "AL"},
            "roles": ["ADMIN"],
            "organisation": {"slug": org.slug},
        }
    }
