"""The per-request context: the resolvers' Context plus the HTTP request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import strawberry

from resolvers.context import Context


class Retries(Protocol):
    """A mutation request's `Idempotency-Key` (server/graphql.py): the operation runs at most
    once per principal and key, its answer kept with its effects in its own transaction."""

    async def claim(self, ctx: RequestContext) -> bool:
        """First statement of a mutation's transaction: True to perform it, False when an
        earlier request's answer is to be sent instead. Raises an OperationError to refuse."""
        ...

    async def keep(self, ctx: RequestContext, answer: dict[str, Any]) -> None:
        """Keep the answer in the transaction about to commit."""
        ...

    def forget(self) -> None:
        """The transaction did not commit: nothing was kept."""
        ...


class Live(Protocol):
    """A websocket operation's access to the change outbox as it grows (server/live.py)."""

    async def follow(
        self, ctx: RequestContext, after: str | None, filter: Any
    ) -> AsyncIterator[Any]:
        """Each change after `after` (else from now) the subscriber may see, as it commits;
        before each, `ctx` is the subscriber's as re-checked for that change. Raises (the
        cursor, the filter, the caps) before the stream begins."""
        ...


@dataclass
class RequestContext(Context):
    request: Any = None
    response: Any = None
    auth_error: str | None = None
    debug: bool = False
    # Finds the principal inside the operation's transaction (set by the server).
    sign_in: Callable[[RequestContext], Awaitable[None]] | None = None
    retries: Retries | None = None
    # Subscriptions: set for an operation sent over the websocket.
    live: Live | None = None


Info = strawberry.Info[RequestContext, None]
