"""The Starlette application factory (also `server.app:create_app` for uvicorn's --factory)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from db.migrate import current_revision, head_revision, upgrade
from db.seed import DEMO_USERS
from resolvers import changes
from resolvers.codes import ErrorCode
from server.collector import set_for_serving
from server.graphql import CaseloadGraphQL
from server.http import HTTP_CODES, ClientGone, Refused, error_response, read_capped
from server.logs import REQUEST_ID_HEADER, AccessLog, current_record
from server.services import Services
from server.settings import Settings
from server.tokens import mint_token

log = logging.getLogger("caseload.server")

GRAPHIQL = Path(__file__).resolve().parent / "static" / "graphiql"
STATIC_URL = "/graphiql/static"
DEMO_TOKEN_URL = "/graphiql/demo-token"
DEFAULT_QUERY = """# Queries need a token in Headers:
# {"Authorization": "Bearer <token>"}
{
  viewer {
    user {
      name
    }
    roles
  }
}
"""
# Every file the page uses comes from this server; the browser is told to load nothing else.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
READY_TIMEOUT_SECONDS = 5.0
CORS_ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",  # a GET's answer revalidated by its ETag
    REQUEST_ID_HEADER,
    "X-Caseload-Client",  # what the client says it is, kept with its audit events
    "X-Caseload-Organisation",  # which membership a sign-in acts in
]
CORS_EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    "ETag",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "WWW-Authenticate",  # how to authenticate, on a 401
]


async def prune_changes(services: Services) -> None:
    """Every CASELOAD_CHANGES_PRUNE_SECONDS (from start), delete the changes older than the
    feed keeps, a bounded number a run (`resolvers.changes.delete_expired`)."""
    settings = services.settings
    while True:
        try:
            deleted = await changes.delete_expired(
                services.maker, datetime.now(UTC), settings.changes_retention_days
            )
        except Exception:
            log.exception("deleting expired changes failed; trying again at the next run")
        else:
            if deleted:
                log.info("deleted %d expired changes", deleted)
        await asyncio.sleep(settings.changes_prune_seconds)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    services = services or Services.build(settings or Settings())
    settings = services.settings
    page = _graphiql_page(settings) if settings.graphiql_enabled else None
    graphql = CaseloadGraphQL(services, render_page=page)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await upgrade(services.engine)
        pruning = asyncio.create_task(prune_changes(services), name="prune-changes")
        if settings.webhook_sender:
            services.start_webhooks()
        try:
            with set_for_serving():
                yield
        finally:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
            await graphql.hub.aclose()
            await services.aclose()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready when the database answers and its migrations are at head."""
        head = head_revision()
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                current = await current_revision(services.engine)
        except Exception as exc:
            log.warning("not ready: database unreachable", exc_info=exc)
            return JSONResponse(
                {"status": "unavailable", "reason": "database unreachable"}, status_code=503
            )
        if current != head:
            reason = (
                f"database at revision {current or '(empty)'}, migrations at {head}: "
                "run `caseload db upgrade`"
            )
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "revision": current})

    async def home(request: Request) -> Response:
        return RedirectResponse("/graphql")

    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),  # subscriptions (server/live.py)
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", home, methods=["GET"]),
    ]
    if page is not None:
        routes.append(Mount(STATIC_URL, StaticFiles(directory=GRAPHIQL)))
    if settings.demo:
        routes.append(Route(DEMO_TOKEN_URL, _demo_token(settings), methods=["POST"]))

    app = Starlette(
        debug=False,  # tracebacks go to the log, never into an answer
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[
            Middleware(AccessLog),
            Middleware(
                CORS,
                allow_origins=settings.origins,
                allow_methods=["GET", "POST"],
                allow_headers=CORS_ALLOWED_HEADERS,
                expose_headers=CORS_EXPOSED_HEADERS,
                max_age=600,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.compiled_reads = graphql.compiled
    app.state.hub = graphql.hub
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    record = current_record()
    if record is not None:
        record.codes = [code]
    return error_response(exc.status_code, code, exc.detail, dict(exc.headers or {}))


# What Starlette names in a refused preflight ("Disallowed CORS origin, headers"), in words.
_CORS_REFUSALS = {
    "origin": "this origin is not allowed",
    "method": "this method is not allowed (see Access-Control-Allow-Methods)",
    "headers": "a requested header is not allowed (see Access-Control-Allow-Headers)",
    "private-network": "private network access is not allowed",
}


class CORS(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the GraphQL error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        record = current_record()
        if record is not None:
            record.codes = [ErrorCode.CORS_REFUSED]
        failures = bytes(response.body).decode().removeprefix("Disallowed CORS ").split(", ")
        reasons = "; ".join(_CORS_REFUSALS.get(failure, failure) for failure in failures)
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return error_response(
            400, ErrorCode.CORS_REFUSED, f"Cross-origin request refused: {reasons}.", headers
        )


def _graphiql_page(settings: Settings) -> Callable[[Request], Response]:
    config: dict[str, object] = {
        "endpoint": "/graphql",
        "defaultQuery": DEFAULT_QUERY,
        "demoTokenUrl": DEMO_TOKEN_URL,
        "demoUsers": (
            [
                {"key": key.replace(" ", "-"), "label": key, "email": email}
                for key, email, _ in DEMO_USERS
            ]
            if settings.demo
            else None
        ),
    }
    # Safe inside <script>: no "</" or "<!--" can close or confuse the element.
    embedded = json.dumps(config).replace("<", "\\u003c")
    html = (
        (GRAPHIQL / "index.html")
        .read_text()
        .replace("{static}", STATIC_URL)
        .replace("{config}", embedded)
    )

    def render(request: Request) -> Response:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    return render


def _demo_token(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """Demo mode only: a fresh token for one of the demo users, for the GraphiQL page."""
    users = {key.replace(" ", "-"): (email, org) for key, email, org in DEMO_USERS}

    async def demo_token(request: Request) -> Response:
        try:
            body = await read_capped(request.receive, request.headers.get("content-length"), 1024)
            wanted = json.loads(body).get("user")
        except Refused as refused:
            return refused.response()
        except ClientGone:
            return Response(status_code=400)
        except (ValueError, AttributeError):
            wanted = None
        if wanted not in users:
            return error_response(400, ErrorCode.BAD_REQUEST, f"Pick one of: {', '.join(users)}.")
        email, org = users[wanted]
        token = mint_token(settings, email=email, org=org)
        return JSONResponse(
            {"authorization": f"Bearer {token}"}, headers={"Cache-Control": "no-store"}
        )

    return demo_token
