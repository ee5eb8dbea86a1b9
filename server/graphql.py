"""The GraphQL endpoint: builds one RequestContext per request."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.asgi import GraphQL

from db.base import utcnow
from db.session import Database
from resolvers.context import Limits
from schema.context import RequestContext
from server.auth import AuthFailure
from server.services import Services


class CaseloadGraphQL(GraphQL[RequestContext, None]):
    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(services.schema, **kwargs)
        self.services = services
        settings = services.settings
        self.limits = Limits(
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_bulk_items=settings.max_bulk_items,
        )

    async def get_context(self, request: Request, response: Response) -> RequestContext:  # type: ignore[override]
        services = self.services
        now = utcnow()
        found = await services.authenticator.authenticate(request.headers.get("authorization"), now)
        principal = None if isinstance(found, AuthFailure) else found
        said = request.headers.get("x-caseload-client") or request.headers.get("user-agent")
        return RequestContext(
            db=Database(services.maker),
            now=now,
            principal=principal,
            policy=None if principal is None else services.policies.for_principal(principal, now),
            limits=self.limits,
            client=None if principal is None else principal.client,
            user_agent=(said or "")[:200] or None,
            request=request,
            response=response,
            auth_error=found.message if isinstance(found, AuthFailure) else None,
            debug=services.settings.debug,
        )
