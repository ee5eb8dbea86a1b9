"""Relations between rows, declared once and read by both executors.

A field that shows related rows names its relation here: `Ref` (the row a column points at),
`Children` (rows hanging off a parent, see resolvers/loaders.py), `Single` (the one such row),
`Path` (a chain of them, flattened) or `Distinct` (several paths, each person once, in
order). The standard executor walks a relation with batching loaders; the compiled executor
turns the same declaration into correlated SQL. Both apply the same scopes and conditions, so
they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from policies.vocabulary import Resource
from resolvers.context import Context, LoaderGroup
from resolvers.loaders import Children, by_id, children

M = TypeVar("M")


@dataclass(frozen=True)
class Ref(Generic[M]):
    """The row a parent's `column` points at. With `resource`, only if the caller may read it;
    without, the parent's visibility is the grant (a visible learner shows its location). With
    `unless`, none when the parent's `unless` column is set (an event an API key did has no
    person as its actor)."""

    model: type[M]
    column: str
    resource: Resource | None = None
    unless: str | None = None

    def points(self, parent: Any) -> Any:
        """The parent's key of the row, or None when it points at none."""
        if self.unless is not None and getattr(parent, self.unless) is not None:
            return None
        return getattr(parent, self.column)


Step = Children[Any] | Ref[Any]


@dataclass(frozen=True, eq=False)
class Path:
    """Rows reached from a parent through `steps`, flattened in each step's order."""

    steps: tuple[Step, ...]

    def __init__(self, *steps: Step) -> None:
        object.__setattr__(self, "steps", steps)


@dataclass(frozen=True, eq=False)
class Distinct:
    """The rows of several paths, each row once (its first place), in the paths' order."""

    paths: tuple[Path, ...]

    def __init__(self, *paths: Path) -> None:
        object.__setattr__(self, "paths", paths)


@dataclass(frozen=True, eq=False)
class Single:
    """The one row (or none) of `children` hanging off a parent: a course's pool in the
    caller's organisation."""

    children: Children[Any]


@dataclass(frozen=True, eq=False)
class ByArgument:
    """A field whose relation its arguments choose: `choose(**arguments)` names it (e.g. the
    active assignments, or with `includeEnded` the whole history)."""

    choose: Callable[..., Ref[Any] | Children[Any] | Path | Distinct | Single]


Relation = Ref[Any] | Children[Any] | Path | Distinct | Single | ByArgument


class RelationLoaders(LoaderGroup):
    """One batching loader per relation step, built on first use in a request."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._refs: dict[tuple[type, Resource | None], DataLoader[int, Any]] = {}
        self._children: dict[tuple[Any, ...], DataLoader[int, list[Any]]] = {}

    def ref(self, ref: Ref[M]) -> DataLoader[int, M | None]:
        key = (ref.model, ref.resource)
        if key not in self._refs:
            where = None if ref.resource is None else self.ctx.rules.where(ref.resource)
            self._refs[key] = by_id(self.ctx, ref.model, where)
        return self._refs[key]

    def children(
        self, spec: Children[M], arguments: Mapping[str, Any] | None = None
    ) -> DataLoader[int, list[M]]:
        key = (spec, *sorted((arguments or {}).items()))
        if key not in self._children:
            self._children[key] = children(self.ctx, spec, arguments)
        return self._children[key]


async def _step(ctx: Context, step: Step, rows: Sequence[Any]) -> list[Any]:
    loaders = ctx.loaders(RelationLoaders)
    if isinstance(step, Children):
        groups = await loaders.children(step).load_many([r.id for r in rows])
        return [child for group in groups for child in group]
    keys = [step.points(r) for r in rows]
    found = await loaders.ref(step).load_many([k for k in keys if k is not None])
    return [row for row in found if row is not None]


async def related(ctx: Context, relation: Relation, parent: Any, **arguments: Any) -> Any:
    """What `relation` reaches from `parent`: a row (or None) for a Ref, else a list of rows.

    `arguments` are the field's: they choose the relation (ByArgument) or narrow Children."""
    if isinstance(relation, ByArgument):
        return await related(ctx, relation.choose(**arguments), parent)
    if isinstance(relation, Ref):
        key = relation.points(parent)
        if key is None:
            return None
        return await ctx.loaders(RelationLoaders).ref(relation).load(key)
    if isinstance(relation, Children):
        return await ctx.loaders(RelationLoaders).children(relation, arguments).load(parent.id)
    if isinstance(relation, Single):
        rows = await ctx.loaders(RelationLoaders).children(relation.children).load(parent.id)
        return rows[0] if rows else None
    if isinstance(relation, Path):
        rows = [parent]
        for step in relation.steps:
            rows = await _step(ctx, step, rows)
        return rows
    seen: dict[int, Any] = {}
    for path in relation.paths:
        for row in await related(ctx, path, parent):
            seen.setdefault(row.id, row)
    return list(seen.values())
