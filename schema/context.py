"""The per-request context: the resolvers' Context plus the HTTP request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import strawberry

from resolvers.context import Context


@dataclass
class RequestContext(Context):
    request: Any = None
    response: Any = None
    auth_error: str | None = None
    debug: bool = False
    # Finds the principal inside the operation's transaction (set by the server).
    sign_in: Callable[[RequestContext], Awaitable[None]] | None = None


Info = strawberry.Info[RequestContext, None]
