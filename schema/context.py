"""The per-request context: the resolvers' Context plus the HTTP request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from resolvers.context import Context


@dataclass
class RequestContext(Context):
    request: Any = None
    response: Any = None
    auth_error: str | None = None
    debug: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Info = strawberry.Info[RequestContext, None]
