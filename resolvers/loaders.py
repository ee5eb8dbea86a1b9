"""Dataloader builders: one SQL statement per batch, scoped by the policy.

Each domain module declares its own `LoaderGroup` (see `Context.loaders`) from these builders.
Loaders named `*_ref` fetch rows that a visible parent points at (the organisation, unit or
person shown on a visible learner, record, assignment or allocation): the parent's
visibility is the grant. Every loader of learner data applies the policy's predicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, overload

from sqlalchemy import ColumnElement, select
from strawberry.dataloader import DataLoader

from policies.vocabulary import Resource
from resolvers.context import Context, Limits, LoaderGroup

M = TypeVar("M")
K = TypeVar("K")
V = TypeVar("V")


class loader(Generic[K, V]):
    """A loader of a `LoaderGroup`, built from the request's context on first use."""

    def __init__(
        self,
        build: Callable[[Context], DataLoader[K, V]],
        *,
        where: Callable[[Context], ColumnElement[bool]] | None = None,
    ) -> None:
        self.build = build
        # For a lookup by primary key: the predicate its rows pass, which the compiled read
        # path (resolvers/compiled.py) applies in SQL where this loader would run.
        self.where = where
        self.name = ""
        self.owner: type[LoaderGroup] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if issubclass(owner, LoaderGroup):
            self.owner = owner

    def of(self, ctx: Context) -> DataLoader[K, V]:
        """The request's instance of this loader."""
        assert self.owner is not None, "a loader outside a LoaderGroup"
        found: DataLoader[K, V] = getattr(ctx.loaders(self.owner), self.name)
        return found

    @overload
    def __get__(self, group: None, owner: type) -> Self: ...
    @overload
    def __get__(self, group: LoaderGroup, owner: type) -> DataLoader[K, V]: ...
    def __get__(self, group: LoaderGroup | None, owner: type) -> Self | DataLoader[K, V]:
        if group is None:
            return self
        built: DataLoader[K, V] = self.build(group.ctx)
        group.__dict__[self.name] = built  # later reads find the instance attribute
        return built


def ref(model: type[M]) -> loader[int, M | None]:
    """Rows a visible parent points at, by primary key: the parent's visibility is the grant."""
    return loader(lambda ctx: by_id(ctx, model))


def scoped(model: type[M], resource: Resource) -> loader[int, M | None]:
    """Rows by primary key that the caller may read as `resource`."""
    return lookup(model, lambda ctx: ctx.rules.where(resource))


def lookup(
    model: type[M], where: Callable[[Context], ColumnElement[bool]]
) -> loader[int, M | None]:
    """Rows by primary key that pass `where` (declared, so the compiled path applies it too)."""
    return loader(lambda ctx: by_id(ctx, model, where(ctx)), where=where)


def by_id(
    ctx: Context, model: type[M], where: ColumnElement[bool] | None = None
) -> DataLoader[int, M | None]:
    """Rows by primary key; None for ids that do not exist or fail `where`."""
    table: Any = model

    async def load(ids: Sequence[int]) -> list[M | None]:
        stmt = select(table).where(table.id.in_(ids))
        if where is not None:
            stmt = stmt.where(where)
        found = {row.id: row for row in await ctx.db.scalars(stmt)}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def scoped_by_id(ctx: Context, model: type[M], resource: Resource) -> DataLoader[int, M | None]:
    """Rows by primary key that the caller may read as `resource`."""
    return by_id(ctx, model, ctx.rules.where(resource))


@dataclass(frozen=True, eq=False)  # identity: each declaration is one relation
class Children(Generic[M]):
    """Rows of `model` hanging off a parent through `key`, as far as the caller may read them.

    One declaration serves every way of reading the relation (dataloaders batch it by parent).
    """

    model: type[M]
    key: Any  # the child's column holding the parent's id
    resource: Resource
    order: tuple[Any, ...]
    only: Callable[[Context], Sequence[ColumnElement[bool]]] | None = None
    # The field's arguments narrow the children: `prepare` checks them (raising InvalidInput)
    # and gives their values, `conditions` turns the values into SQL, as a ListSource does.
    prepare: Callable[[Limits, Mapping[str, Any]], dict[str, Any]] | None = None
    conditions: Callable[[Context, Mapping[str, Any]], list[ColumnElement[bool]]] | None = None

    def check(self, limits: Limits, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments' checked values; InvalidInput when they are refused."""
        return {} if self.prepare is None else self.prepare(limits, arguments)

    def narrowing(self, ctx: Context, arguments: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        values = self.check(ctx.limits, arguments)
        if not values or self.conditions is None:
            return []
        return self.conditions(ctx, values)


def children(
    ctx: Context, spec: Children[M], arguments: Mapping[str, Any] | None = None
) -> DataLoader[int, list[M]]:
    """Each parent's visible children, in `spec.order` (narrowed by the field's arguments)."""
    conditions = [ctx.rules.where(spec.resource), *(spec.only(ctx) if spec.only else ())]
    conditions += spec.narrowing(ctx, arguments or {})

    async def load(keys: Sequence[int]) -> list[list[M]]:
        stmt = select(spec.model).where(spec.key.in_(keys), *conditions).order_by(*spec.order)
        groups: defaultdict[int, list[M]] = defaultdict(list)
        for row in await ctx.db.scalars(stmt):
            groups[getattr(row, spec.key.key)].append(row)
        return [groups.get(k, []) for k in keys]

    return DataLoader(load_fn=load)
