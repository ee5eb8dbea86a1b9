"""A serving process freezes what it built at start, so full collections never walk it again
(server/collector.py), and undoes that when it ends."""

from __future__ import annotations

import gc

from server.app import create_app
from server.collector import YOUNG_THRESHOLD
from server.services import Services
from tests.conftest import Backend, make_settings


async def test_a_serving_app_freezes_what_it_built_and_undoes_it_when_it_ends(
    sqlite_backend: Backend,
) -> None:
    services = Services.build(make_settings(sqlite_backend.url))
    app = create_app(services=services)
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0

    async with app.router.lifespan_context(app):
        # The schema, the policy and the mappers are frozen with everything else alive now.
        assert gc.get_freeze_count() > 50_000
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *threshold[1:])

    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
