"""The Starlette application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from db.migrate import upgrade
from server.graphql import CaseloadGraphQL
from server.services import Services
from server.settings import Settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    services = services or Services.build(settings or Settings())
    graphql = CaseloadGraphQL(services, graphql_ide="graphiql")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services.settings.migrate_on_start:
            await upgrade(services.engine)
        try:
            yield
        finally:
            await services.aclose()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/graphql")

    app = Starlette(
        debug=services.settings.debug,
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", health),
            Route("/", home),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
