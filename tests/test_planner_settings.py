"""Caseload's PostgreSQL sessions carry its planner settings (random_page_cost,
plan_cache_mode); empty leaves the server's own."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from server.services import Services
from server.settings import Settings
from tests.conftest import Backend, make_settings


async def _show(backend: Backend, name: str, **overrides: object) -> str:
    services = Services.build(make_settings(backend.url, **overrides))
    try:
        async with services.engine.connect() as connection:
            return str((await connection.execute(text(f"SHOW {name}"))).scalar_one())
    finally:
        await services.aclose()


async def _random_page_cost(backend: Backend, **overrides: object) -> str:
    return await _show(backend, "random_page_cost", **overrides)


async def test_every_session_plans_each_statement_once(postgresql_backend: Backend) -> None:
    """Prepared statements get one generic plan (planning q1n's statement anew each time cost
    more than running it)."""
    server = await _show(postgresql_backend, "plan_cache_mode", db_plan_cache_mode=None)
    assert await _show(postgresql_backend, "plan_cache_mode") == "force_generic_plan" != server
    chosen = await _show(postgresql_backend, "plan_cache_mode", db_plan_cache_mode="auto")
    assert chosen == "auto"


async def test_every_session_plans_with_caseloads_random_page_cost(
    postgresql_backend: Backend,
) -> None:
    server = await _random_page_cost(postgresql_backend, db_random_page_cost=None)
    assert await _random_page_cost(postgresql_backend) == "1.1" != server
    assert await _random_page_cost(postgresql_backend, db_random_page_cost=2.5) == "2.5"


@pytest.mark.parametrize(("given", "expected"), [("", None), ("  ", None), ("1.5", 1.5)])
def test_an_empty_random_page_cost_means_the_servers(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: float | None
) -> None:
    monkeypatch.setenv("CASELOAD_DB_RANDOM_PAGE_COST", given)
    assert Settings(_env_file=None).db_random_page_cost == expected
