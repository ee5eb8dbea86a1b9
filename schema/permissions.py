"""Strawberry glue over policies/: every field is guarded or listed as public.

`requires(resource, action)` marks a field with the policy resource it reads or changes.
The guard authenticates the caller and, for changes, refuses with FORBIDDEN when the
caller's roles hold no scope for the action at all. Which rows are reached is decided in
SQL by the resolvers, through the same policy.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.extensions import FieldExtension

from policies.vocabulary import Action, Resource, refusal
from resolvers.errors import Forbidden
from schema.context import Info
from schema.errors import Error


class Guard(FieldExtension):
    def __init__(self, resource: Resource, action: Action) -> None:
        self.resource = resource
        self.action = action

    def _check(self, info: Info) -> None:
        rules = info.context.rules  # raises Unauthenticated without a principal
        if self.action is not Action.READ and not rules.holds(self.resource, self.action):
            raise Forbidden(refusal(self.resource, self.action))

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        self._check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        self._check(info)
        return await next_(source, info, **kwargs)


class Atomic(FieldExtension):
    """A mutation that answers with an Error, or raises, leaves nothing behind."""

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        db = info.context.db
        savepoint = await db.begin_savepoint()
        try:
            result = await next_(source, info, **kwargs)
        except BaseException:
            await db.end_savepoint(savepoint, keep=False)
            raise
        await db.end_savepoint(savepoint, keep=not isinstance(result, Error))
        return result


def requires(resource: Resource, action: Action = Action.READ) -> list[FieldExtension]:
    """For query fields: the resource read (or the action needed to see the field at all)."""
    return [Guard(resource, action)]


def changes(resource: Resource, action: Action) -> list[FieldExtension]:
    """For mutations: the action performed; the mutation is atomic."""
    if action is Action.READ:
        raise ValueError("a mutation changes something")
    return [Guard(resource, action), Atomic()]


class Public(FieldExtension):
    """Marks a field as readable by any authenticated caller (e.g. `viewer`)."""

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        info.context.rules  # noqa: B018 - authenticates
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        info.context.rules  # noqa: B018 - authenticates
        result = next_(source, info, **kwargs)
        # A subscription's resolver gives its stream itself, not an awaitable.
        return await result if inspect.isawaitable(result) else result


def signed_in() -> list[FieldExtension]:
    return [Public()]


__all__ = ["Atomic", "Guard", "Public", "changes", "requires", "signed_in"]
