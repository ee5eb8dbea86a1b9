"""The compiled read path: a whole query as one SQL statement, from the same declarations.

A plan (built from a GraphQL document by schema/compiled.py) says, for every response key,
where its value comes from: a column, a computed field, a relation (resolvers/relations.py) or
a list source (ListSource). This module turns a plan into ONE statement that applies the
policy's scope predicates at every level and gathers the nested response as JSON arrays in the
database (json_agg on PostgreSQL, json_group_array on SQLite); a transform generated once per
plan then gives each value its response form with the same Python functions the standard
executor uses (ids, dates, cursors, computed fields), so that both answer byte for byte alike.

The statement is compiled once per (plan, the caller's scope shape, the arguments' shape) with
bound parameters for the caller (user, organisation, units, the time) and for argument values;
a request only binds values and runs it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import Compiled

from db.base import UtcDateTime
from policies.enforcer import Policy, PolicyStore
from policies.principal import Principal
from policies.vocabulary import Resource
from resolvers.capabilities import Capabilities, flag_values
from resolvers.context import Context
from resolvers.ids import encode_id
from resolvers.loaders import Children
from resolvers.pagination import Direction, ListSource, Window, encode_cursor, windowed
from resolvers.relations import ByArgument, Distinct, Path, Ref, Relation, Single


class NotCompilable(Exception):
    """The document asks for something the compiled path does not gather; use the standard one."""


class OverBudget(NotCompilable):
    """Planning the document took longer than its budget (now, or `remembered` from before):
    the standard executor answers it."""

    def __init__(self, message: str, *, remembered: bool = False) -> None:
        super().__init__(message)
        self.remembered = remembered


class Budget:
    """How much CPU planning one request's document may take (None or 0: no limit).

    Counted in the thread's own time, and only while planning runs (`running`): the other
    requests the event loop serves while this one waits for the database, and other processes
    on the machine, do not spend it. Planning checks it as it goes; a statement is compiled
    only when that is expected to fit (compiling takes about twice as long as building it).
    """

    COMPILE_PER_BUILD = 2.0

    def __init__(self, milliseconds: int | None) -> None:
        self.limit = milliseconds / 1000 if milliseconds else math.inf
        self.spent = 0.0  # seconds, of finished planning steps
        self._since: float | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """A planning step (synchronous: nothing else runs on the thread meanwhile)."""
        if self._since is not None:  # nested: the outer step counts
            yield
            return
        self._since = time.thread_time()
        try:
            yield
        finally:
            self.spent += time.thread_time() - self._since
            self._since = None

    def used(self) -> float:
        running = time.thread_time() - self._since if self._since is not None else 0.0
        return self.spent + running

    def check(self, ahead: float = 0.0) -> None:
        """OverBudget when planning, with `ahead` seconds still to come, would overrun."""
        if self.used() + ahead > self.limit:
            raise OverBudget("planning over its budget")

    @property
    def spent_ms(self) -> float:
        return self.used() * 1000


# --- The plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """A value fixed by the document (__typename)."""

    key: str
    value: Any


@dataclass(frozen=True)
class Column:
    """A column of the object's row, shown through `format` (None: as the database gives it)."""

    key: str
    column: str
    format: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Expression:
    """A value the database computes from the object's columns and the request (its time),
    shown through `format`: the compiled form of a field whose resolver reads the request."""

    key: str
    build: Callable[[Context, Any], Any]  # (context, the row's columns) → SQL expression
    format: Callable[..., Any] | None = None
    # Columns of the row `format` also reads, after the expression's value (kept out of the
    # expression itself, so that it stays shallow: SQLite's parser stack is bounded).
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeId:
    """The object's global id."""

    key: str
    type_name: str


@dataclass(frozen=True)
class Computed:
    """A field computed from some of the row's columns (the Node type's registration)."""

    key: str
    columns: tuple[str, ...]
    compute: Callable[..., Any]


@dataclass(frozen=True)
class Related:
    """Rows reached through a relation, each shown as `node` (narrowed by the field's
    arguments, which the document fixes)."""

    key: str
    relation: Relation
    node: ObjectPlan
    arguments: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Flags:
    """`viewerCan`: what the caller may do with the object (resolvers/capabilities.py), each
    selected flag computed in SQL as the standard executor's loader computes it."""

    key: str
    spec: Capabilities
    fields: tuple[tuple[str, str | None], ...]  # (response key, flag; None: __typename)
    type_name: str  # of the capabilities object

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.fields if name is not None]


Item = Constant | Column | Expression | NodeId | Computed | Related | Flags


@dataclass(frozen=True)
class ObjectPlan:
    model: type
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Arguments:
    """A list's arguments for one request: checked, and split into shape and values (a plain
    list has no window)."""

    window: Window | None
    filter: Mapping[str, Any]

    def shape(self) -> tuple[Any, ...]:
        """What changes the statement: the window's order and bounds, booleans of the filter,
        which values are present."""
        return (
            None if self.window is None else self.window.shape(),
            tuple(sorted((k, v if isinstance(v, bool) else None) for k, v in self.filter.items())),
        )


@dataclass(frozen=True)
class ConnectionPlan:
    """A root list field: its source and what the document selects of the connection."""

    key: str
    source: ListSource[Any, Any]
    total_count: tuple[str, ...]  # response keys of totalCount
    edges: tuple[tuple[str, tuple[Any, ...]], ...]  # (key, edge items: cursor/node/typename)
    page_info: tuple[tuple[str, tuple[Any, ...]], ...]  # (key, page info items)
    node: ObjectPlan | None
    items: tuple[tuple[str, str], ...]  # every response key of the connection, in order: kind


@dataclass(frozen=True)
class ObjectCandidate:
    """One Node type an object root's id may name: what the document selects on it (None:
    something the compiled path does not gather — a request naming this type goes to the
    standard executor) and the predicate its lookup applies (resolvers/loaders.py `lookup`)."""

    type_name: str
    plan: ObjectPlan | None
    where: Callable[[Context], ColumnElement[bool]] | None
    reason: str | None = None  # why the selection does not compile


@dataclass(frozen=True)
class ObjectRootPlan:
    """A root field answering one object by global id (`learner(id:)`, `node(id:)`): the id's
    type, known at request time, chooses the candidate; its row is looked up through the same
    scope as the standard executor's loader, so an invisible id answers null like a made-up one."""

    key: str
    candidates: tuple[ObjectCandidate, ...]

    def candidate(self, type_name: str) -> ObjectCandidate | None:
        return next((c for c in self.candidates if c.type_name == type_name), None)


@dataclass(frozen=True)
class ObjectArguments:
    """An object root's id for one request: the Node type it names and its primary key (both
    None when it names no object the root answers: null, without a lookup)."""

    type_name: str | None
    pk: int | None

    def shape(self) -> tuple[Any, ...]:
        return ("object", self.type_name)


@dataclass(frozen=True)
class ItemsPlan:
    """A root plain list field (not paged): its source and what the document selects on each
    item, in the source's own order."""

    key: str
    source: ListSource[Any, Any]
    node: ObjectPlan


Gathered = ConnectionPlan | ObjectRootPlan | ItemsPlan
RootArguments = Arguments | ObjectArguments


@dataclass(frozen=True)
class RootPlan:
    items: tuple[Constant | ConnectionPlan | ObjectRootPlan | ItemsPlan, ...]

    @property
    def connections(self) -> list[ConnectionPlan]:
        return [i for i in self.items if isinstance(i, ConnectionPlan)]

    @property
    def gathered(self) -> list[Gathered]:
        """What the statement gathers, in the order of its answer's array (and arguments)."""
        return [i for i in self.items if not isinstance(i, Constant)]


# --- The caller, as bound parameters ------------------------------------------------------


def shape_of(principal: Principal) -> tuple[Any, ...]:
    """What of the caller changes the statement: their roles and which units they have."""
    return (
        principal.kind,
        principal.roles,
        principal.organisation_id is None,
        principal.location_id is None,
        principal.department_id is None,
    )


def caller_values(principal: Principal, now: datetime) -> dict[str, Any]:
    return {
        "me_user": principal.user_id,
        "me_org": principal.organisation_id,
        "me_location": principal.location_id,
        "me_department": principal.department_id,
        "now": now,
    }


def symbolic_context(store: PolicyStore, principal: Principal) -> Context:
    """A context whose caller and time are bound parameters, for compiling once per shape."""

    def param(name: str, value: int | None) -> Any:
        return None if value is None else bindparam(name, type_=BigInteger())

    symbolic = dataclasses.replace(
        principal,
        user_id=param("me_user", principal.user_id),
        organisation_id=param("me_org", principal.organisation_id),
        location_id=param("me_location", principal.location_id),
        department_id=param("me_department", principal.department_id),
    )
    now = cast(datetime, bindparam("now", type_=UtcDateTime()))
    policy = Policy(store, symbolic, now)
    return Context(db=cast(Any, None), now=now, principal=symbolic, policy=policy)


# --- SQL ----------------------------------------------------------------------------------


class Json:
    """JSON building for one dialect."""

    def __init__(self, dialect: str) -> None:
        self.postgresql = dialect == "postgresql"

    def array(self, items: Sequence[Any]) -> ColumnElement[Any]:
        if self.postgresql:
            return func.json_build_array(*items)
        return func.json_array(*items)

    def nested(self, value: Any) -> Any:
        """A JSON value built by a subquery, kept JSON inside an enclosing array."""
        return value if self.postgresql else func.json(value)

    def aggregate(self, stmt: Select[Any], element: Any, order: Sequence[Any]) -> Any:
        """The JSON array of `element` over `stmt`'s rows in `order` (empty: [])."""
        if self.postgresql:
            aggregated = func.coalesce(
                func.json_agg(aggregate_order_by(element, *order)), literal_column("'[]'::json")
            )
            return stmt.with_only_columns(aggregated).scalar_subquery()
        rows = stmt.with_only_columns(element.label("x")).order_by(*order).subquery()
        return select(func.json_group_array(func.json(rows.c.x))).scalar_subquery()


def outer_join(table: Any, joins: Sequence[tuple[Any, Any]]) -> Any:
    for alias, on in joins:
        table = table.outerjoin(alias, on)
    return table


@dataclass
class Builder:
    """Builds the statement of one plan for one shape."""

    ctx: Context
    json: Json
    chain: set[Any] = field(default_factory=set)  # tables of the enclosing levels
    # Left joins the level being built needs: a row's unscoped references (a learner's
    # location), joined once per statement level instead of one lookup per row, which
    # PostgreSQL runs as a scan of the whole (small) table for every row.
    joins: list[tuple[Any, Any]] = field(default_factory=list)
    aliases: int = 0
    budget: Budget | None = None
    # Row sets of the statement whose rows passed a resource's scope: (resource, model).
    scoped: dict[Any, tuple[Resource, type]] = field(default_factory=dict)

    def object_items(self, plan: ObjectPlan, row: Any) -> list[Any]:
        """The SQL values of one object, in the order the transform reads them."""
        values: list[Any] = []
        columns = row.c
        for item in plan.items:
            if isinstance(item, Column):
                values.append(self.column(columns[item.column]))
            elif isinstance(item, Expression):
                values.append(item.build(self.ctx, columns))
                values += [self.column(columns[c]) for c in item.columns]
            elif isinstance(item, NodeId):
                values.append(columns["id"])
            elif isinstance(item, Computed):
                values += [self.column(columns[c]) for c in item.columns]
            elif isinstance(item, Related):
                values.append(self.json.nested(self.related(item, row)))
            elif isinstance(item, Flags):
                values.append(self.json.nested(self.flags(item, row)))
        return values

    def flags(self, item: Flags, row: Any) -> Any:
        """The flags' array over the row: computed by the row set's own statement where it read
        the type's table (`flag_columns`: a page, an object root), over the table where the
        level reads it, else looked up by the row's id (one level deeper)."""
        table: Any = getattr(item.spec.model, "__table__")  # noqa: B009 - a mapped class
        names = item.names
        if names and all(f"flag_{item.key}_{i}" in row.c for i in range(len(names))):
            return self.json.array([row.c[f"flag_{item.key}_{i}"] for i in range(len(names))])
        array = self.json.array([v for _, v in flag_values(self.ctx, item.spec, names)])
        if row is table:
            return array
        return (
            select(array)
            .select_from(table)
            .where(table.c.id == row.c.id)
            .correlate_except(table)
            .scalar_subquery()
        )

    def column(self, value: Any) -> Any:
        """A column's value in the gathered arrays: JSON columns as JSON, not as their text."""
        return self.json.nested(value) if isinstance(value.type, JSON) else value

    def enter(self, table: Any) -> None:
        if table in self.chain:
            raise NotCompilable(f"{table.name} twice on one path")
        self.chain.add(table)

    def related(self, item: Related, parent: Any) -> Any:
        if self.budget is not None:
            self.budget.check()
        relation = item.relation
        if isinstance(relation, ByArgument):  # the document's arguments choose the relation
            relation = relation.choose(**dict(item.arguments))
            item = dataclasses.replace(item, relation=relation, arguments=())
        if isinstance(relation, Ref):
            if relation.resource is None:
                return self.joined(relation, item.node, parent)
            return self.ref(relation, item.node, parent)
        if isinstance(relation, Children):
            narrowing = relation.narrowing(self.ctx, dict(item.arguments))
            return self.path(Path(relation), item.node, parent, with_id=False, more=narrowing)
        if isinstance(relation, Single):
            return self.single(relation.children, item.node, parent)
        if isinstance(relation, Path):
            return self.path(relation, item.node, parent, with_id=False)
        return self.json.array(
            [
                self.json.nested(self.path(p, item.node, parent, with_id=True))
                for p in relation.paths
            ]
        )

    def joined(self, ref: Ref[Any], plan: ObjectPlan, parent: Any) -> Any:
        """An unscoped reference as a left join of the level being built (see `joins`)."""
        table: Any = getattr(ref.model, "__table__")  # noqa: B009 - a mapped class
        saved = set(self.chain)
        self.enter(table)
        self.aliases += 1
        alias = table.alias(f"ref_{self.aliases}")
        on = alias.c.id == parent.c[ref.column]
        if ref.unless is not None:
            on = and_(on, parent.c[ref.unless].is_(None))
        self.joins.append((alias, on))
        value = self.json.array(self.object_items(plan, alias))
        self.chain = saved
        return case((alias.c.id.is_(None), None), else_=value)

    def single(self, spec: Children[Any], plan: ObjectPlan, parent: Any) -> Any:
        """The one child of the parent (or NULL), through the children's scope."""
        table: Any = getattr(spec.model, "__table__")  # noqa: B009 - a mapped class
        saved = set(self.chain)
        self.enter(table)
        conditions = [
            spec.key == parent.c.id,
            self.ctx.rules.where(spec.resource),
            *(spec.only(self.ctx) if spec.only else ()),
        ]
        values, joins = self.level(plan, table)
        stmt = select(self.json.array(values)).select_from(outer_join(table, joins))
        stmt = stmt.where(*conditions).order_by(*spec.order).limit(1)
        self.chain = saved
        return stmt.correlate(parent).scalar_subquery()

    def level(self, plan: ObjectPlan, row: Any) -> tuple[list[Any], list[tuple[Any, Any]]]:
        """The values of one object and the left joins they need, for a statement level."""
        outer, self.joins = self.joins, []
        try:
            return self.object_items(plan, row), self.joins
        finally:
            self.joins = outer

    def ref(self, ref: Ref[Any], plan: ObjectPlan, parent: Any) -> Any:
        table: Any = getattr(ref.model, "__table__")  # noqa: B009 - a mapped class
        saved = set(self.chain)
        self.enter(table)
        conditions = [table.c.id == parent.c[ref.column]]
        if ref.unless is not None:
            conditions.append(parent.c[ref.unless].is_(None))
        if ref.resource is not None:
            conditions.append(self.ctx.rules.where(ref.resource))
        values, joins = self.level(plan, table)
        stmt = select(self.json.array(values)).select_from(outer_join(table, joins))
        stmt = stmt.where(*conditions)
        self.chain = saved
        return stmt.correlate(parent).scalar_subquery()

    def path(
        self,
        path: Path,
        plan: ObjectPlan,
        parent: Any,
        *,
        with_id: bool,
        more: Sequence[ColumnElement[bool]] = (),
    ) -> Any:
        saved = set(self.chain)
        stmt: Select[Any] | None = None
        order: list[Any] = []
        previous = parent
        # The resource whose scope `previous`'s rows passed, and their model.
        scoped, scoped_model = self.scoped.get(parent, (None, None))
        for step in path.steps:
            table: Any = getattr(step.model, "__table__")  # noqa: B009 - a mapped class
            self.enter(table)
            if isinstance(step, Children):
                on = step.key == previous.c.id
                # A child reached from a row of a scoped parent through the column its scope
                # reads the parent by is visible exactly when that parent is: no second test.
                implied = (
                    scoped is not None
                    and scoped_model is not None
                    and self.ctx.rules.implied_by_parent(
                        step.resource, scoped, scoped_model, step.key.key
                    )
                )
                conditions = [
                    *(() if implied else (self.ctx.rules.where(step.resource),)),
                    *(step.only(self.ctx) if step.only else ()),
                ]
                order += list(step.order)
                scoped, scoped_model = step.resource, step.model
            else:
                on = table.c.id == previous.c[step.column]
                if step.unless is not None:
                    on = and_(on, previous.c[step.unless].is_(None))
                conditions = [] if step.resource is None else [self.ctx.rules.where(step.resource)]
                scoped, scoped_model = step.resource, step.model
            if stmt is None:
                stmt = select(literal(1)).select_from(table).where(on, *conditions)
            else:
                stmt = stmt.join(table, on).where(*conditions)
            previous = table
        assert stmt is not None
        stmt = stmt.where(*more)
        values, joins = self.level(plan, previous)
        for alias, on in joins:
            stmt = stmt.outerjoin(alias, on)
        element = self.json.array(values)
        if with_id:
            element = self.json.array([previous.c.id, element])
        aggregated = self.json.aggregate(stmt.correlate(parent), element, order)
        self.chain = saved
        return aggregated

    def flag_columns(self, plan: ObjectPlan | None) -> list[Any]:
        """The `viewerCan` flags of an object's own level, as columns of the statement that reads
        its table's rows (its page, its lookup): no subquery per row, and one level less for
        SQLite's parser, whose depth is bounded."""
        if plan is None:
            return []
        return [
            value.label(f"flag_{item.key}_{i}")
            for item in plan.items
            if isinstance(item, Flags)
            for i, (_, value) in enumerate(flag_values(self.ctx, item.spec, item.names))
        ]

    def symbolic(self, index: int, args: Arguments) -> dict[str, Any]:
        """A list's filter values as bound parameters (booleans shape the statement)."""
        return {
            name: value if isinstance(value, bool) else bindparam(f"c{index}_{name}")
            for name, value in args.filter.items()
        }

    def items(self, plan: ItemsPlan, index: int, args: Arguments) -> Any:
        """A plain list: every row of the source for the caller, in its own order."""
        source = plan.source
        rows = (
            source.statement(self.ctx, self.symbolic(index, args))
            .add_columns(*self.flag_columns(plan.node))
            .subquery("items")
        )
        keys = [rows.c[c.key] for c in source.keys(source.sorts[0])]
        values, joins = self.level(plan.node, rows)
        order = [k.desc() for k in keys] if source.direction is Direction.DESC else keys
        stmt = select(literal(1)).select_from(outer_join(rows, joins))
        return self.json.aggregate(stmt, self.json.array(values), order)

    def connection(self, plan: ConnectionPlan, index: int, args: Arguments) -> Any:
        source = plan.source
        base = source.statement(self.ctx, self.symbolic(index, args))
        count: Any = None
        if plan.total_count:
            count = select(func.count()).select_from(base.subquery()).scalar_subquery()
        edges: Any = literal_column("'[]'") if not self.json.postgresql else None
        w = args.window
        assert w is not None
        if (plan.edges or plan.page_info) and w.size > 0:
            keys = source.keys(w.sort)
            # Bound with each column's type, so that times compare as the column stores them.
            bounds = [
                None
                if values is None
                else [bindparam(f"c{index}_{side}{k}", type_=c.type) for k, c in enumerate(keys)]
                for side, values in (("after", w.after), ("before", w.before))
            ]
            page = (
                windowed(base, keys, w, *bounds)
                .add_columns(*self.flag_columns(plan.node))
                .limit(bindparam(f"c{index}_limit", type_=Integer()))
                .subquery("page")
            )
            page_keys = [page.c[c.key] for c in keys]
            self.scoped[page] = (source.resource, source.model)
            node, joins = ([], []) if plan.node is None else self.level(plan.node, page)
            element = self.json.array([self.json.array(node), *page_keys])
            rows = select(literal(1)).select_from(outer_join(page, joins))
            order = [k.desc() for k in page_keys] if w.reads_descending else page_keys
            edges = self.json.aggregate(rows, element, order)
        elif self.json.postgresql:
            edges = literal_column("'[]'::json")
        return self.json.array([count, self.json.nested(edges)])

    def object_root(self, plan: ObjectRootPlan, index: int, args: ObjectArguments) -> Any:
        """One object by primary key, through its lookup's scope: its array, or NULL."""
        candidate = None if args.type_name is None else plan.candidate(args.type_name)
        if candidate is None or candidate.plan is None or candidate.where is None:
            return null()
        table: Any = getattr(candidate.plan.model, "__table__")  # noqa: B009 - a mapped class
        found = (
            select(table, *self.flag_columns(candidate.plan))
            .where(table.c.id == bindparam(f"o{index}_id", type_=BigInteger()))
            .where(candidate.where(self.ctx))
            .subquery(f"object_{index}")
        )
        values, joins = self.level(candidate.plan, found)
        stmt = select(self.json.array(values)).select_from(outer_join(found, joins))
        return stmt.scalar_subquery()

    def gathered(self, item: Gathered, index: int, args: RootArguments) -> Any:
        if isinstance(item, ObjectRootPlan):
            assert isinstance(args, ObjectArguments)
            return self.object_root(item, index, args)
        assert isinstance(args, Arguments)
        if isinstance(item, ItemsPlan):
            return self.items(item, index, args)
        return self.connection(item, index, args)


@dataclass(frozen=True)
class Statement:
    """A compiled statement and how to bind a request's values to it."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        found = []
        for name in self.names:
            value = values[name] if name in values else self.fixed[name]
            processor = self.processors.get(name)
            found.append(value if processor is None or value is None else processor(value))
        return found


class Fragments(Protocol):
    """Where compiled roots are kept across documents (a cache bounded in bytes)."""

    def get(self, key: Hashable) -> Fragment | None: ...

    def put(self, key: Hashable, value: Fragment, size: int) -> bool: ...


@dataclass(frozen=True)
class Fragment:
    """One root of a statement, compiled for a scope shape and an argument shape: SQL in the
    pyformat style, its bind names as built for the first root (`placed` renames them for the
    root's place in a statement). Kept across documents: every document asking the same root
    of the same caller shape (the thirty `node(id:)` aliases of one document, the same screen
    sent by other clients) compiles it once."""

    sql: str
    fixed: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    @property
    def size(self) -> int:
        """Bytes kept alive, roughly: the text, its values, and the plan in its key (measured
        at 13.8 KB each over 100 selections of a learner once their documents were gone;
        tests/api/test_compiled.py keeps the estimate above what is measured)."""
        return 4 * len(self.sql) + 256 * len(self.fixed) + 8192


# The request's values for the caller (caller_values): the same name in every root.
CALLER_NAMES = frozenset({"me_user", "me_org", "me_location", "me_department", "now"})
# A bind parameter in the pyformat style, or an escaped percent sign.
BIND = re.compile(r"%\((\w+)\)s|%%")


def placed(name: str, index: int) -> str:
    """A fragment's bind name at root `index`: its arguments' values (`o0_id`, `c0_limit`, …)
    as request_values names them, the caller's as they are, its own fixed values apart from
    every other root's."""
    if name.startswith(("o0_", "c0_")):
        return f"{name[0]}{index}_{name[3:]}"
    if name in CALLER_NAMES:
        return name
    return f"r{index}_{name}"


def compile_statement(
    plan: RootPlan,
    ctx: Context,
    dialect: Dialect,
    arguments: Sequence[RootArguments],
    signin: Select[Any] | None = None,
    budget: Budget | None = None,
    fragments: Fragments | None = None,
    caller: Hashable = None,
) -> Statement:
    """The plan's one statement. With `signin` (the sign-in statement whose caller `ctx` is
    expected to be), also that statement's rows, each with a NULL answer column, beside the
    answer's row (its sign-in columns NULL): one round trip, one snapshot. Each root is
    compiled once per (`caller`'s scope shape, its plan, its arguments' shape) and kept in
    `fragments`."""
    with budget.running() if budget is not None else contextlib.nullcontext():
        style = pyformat(dialect)
        json = Json(dialect.name)
        roots = [
            root_fragment(item, args, ctx, json, style, budget, fragments, caller)
            for item, args in zip(plan.gathered, arguments, strict=True)
        ]
        answer = roots_array(json, [literal_column(f"__root_{i}__") for i in range(len(roots))])
        stmt: Any = select(answer)
        if signin is not None:
            width = len(signin.selected_columns)
            # The answer's branch first: SQLite's parser then holds no more than for the
            # answer alone (its stack is bounded, and deep documents come near the bound).
            stmt = union_all(
                select(*(null() for _ in range(width)), answer.label("answer")),
                signin.add_columns(null()),
            )
        skeleton: Compiled = stmt.compile(
            dialect=style, compile_kwargs={"render_postcompile": True}
        )
        text = skeleton.string
        fixed = dict(skeleton.params)
        processors = dict(skeleton._bind_processors)  # type: ignore[attr-defined]
        for index, root in enumerate(roots):

            def rename(match: re.Match[str], index: int = index) -> str:
                name = match.group(1)
                return "%%" if name is None else f"%({placed(name, index)})s"

            # In an argument of the JSON array: no parentheses (SQLite parses to a bounded depth).
            text = text.replace(f"__root_{index}__", BIND.sub(rename, root.sql), 1)
            fixed.update({placed(k, index): v for k, v in root.fixed.items()})
            processors.update({placed(k, index): v for k, v in root.processors.items()})
        return positional(text, dialect, fixed, processors)


# Arguments one SQL function takes at most (PostgreSQL: 100; SQLite's json_array: 127): more
# roots than this are gathered as an array of arrays of this many (`gathered_roots` flattens).
ROOTS_PER_ARRAY = 100


def roots_array(json: Json, roots: Sequence[Any]) -> Any:
    """The statement's answer: each root's value, in document order."""
    if len(roots) <= ROOTS_PER_ARRAY:
        return json.array([json.nested(r) for r in roots])
    if len(roots) > ROOTS_PER_ARRAY**2:
        raise NotCompilable(f"more than {ROOTS_PER_ARRAY**2} roots")
    chunks = [roots[k : k + ROOTS_PER_ARRAY] for k in range(0, len(roots), ROOTS_PER_ARRAY)]
    return json.array([json.nested(json.array([json.nested(r) for r in c])) for c in chunks])


def gathered_roots(plan: RootPlan, answer: list[Any]) -> list[Any]:
    """The answer's roots in document order (see `roots_array`)."""
    if len(plan.gathered) <= ROOTS_PER_ARRAY:
        return answer
    return [root for chunk in answer for root in chunk]


def root_fragment(
    item: Gathered,
    args: RootArguments,
    ctx: Context,
    json: Json,
    style: Dialect,
    budget: Budget | None,
    fragments: Fragments | None,
    caller: Hashable,
) -> Fragment:
    key: Hashable = None
    if fragments is not None:
        try:
            key = (caller, built_from(item, args), args.shape())
            hash(key)
        except TypeError:  # a plan holding an argument value that is a list or a mapping
            key = None
    found = fragments.get(key) if fragments is not None and key is not None else None
    if found is not None:
        return found
    building = time.thread_time()
    value = Builder(ctx, json, budget=budget).gathered(item, 0, args)
    if budget is not None:
        budget.check(ahead=(time.thread_time() - building) * Budget.COMPILE_PER_BUILD)
    compiled: Compiled = value.compile(dialect=style, compile_kwargs={"render_postcompile": True})
    fragment = Fragment(
        sql=compiled.string,
        fixed=dict(compiled.params),
        processors=dict(compiled._bind_processors),  # type: ignore[attr-defined]
    )
    if fragments is not None and key is not None:
        fragments.put(key, fragment, fragment.size)
    return fragment


def built_from(item: Gathered, args: RootArguments) -> Hashable:
    """What of a root its SQL is built from (not its response keys: the thirty aliases of
    one `node(id:)` selection are one fragment)."""
    if isinstance(item, ObjectRootPlan):
        assert isinstance(args, ObjectArguments)
        return (ObjectRootPlan, None if args.type_name is None else item.candidate(args.type_name))
    if isinstance(item, ItemsPlan):
        return (ItemsPlan, item.source, item.node)
    return (
        ConnectionPlan,
        item.source,
        bool(item.total_count),
        bool(item.edges or item.page_info),
        item.node,
    )


def pyformat(dialect: Dialect) -> Dialect:
    """The dialect, rendering bind parameters by name (`%(name)s`): fragments compiled apart
    are put together by renaming them, then numbered once for the driver (`positional`)."""
    style = copy.copy(dialect)
    style.paramstyle = "pyformat"
    style.positional = False
    style.identifier_preparer = style.preparer(style)  # it escapes % for the paramstyle
    return style


def positional(
    text: str,
    dialect: Dialect,
    fixed: Mapping[str, Any],
    processors: Mapping[str, Callable[[Any], Any]],
) -> Statement:
    """A pyformat statement in the driver's own style: `$n` once per name (asyncpg), or `?`
    per occurrence (SQLite)."""
    names: list[str] = []
    numbers: dict[str, int] = {}
    dollar = dialect.paramstyle == "numeric_dollar"
    if not dollar and dialect.paramstyle != "qmark":
        raise NotCompilable(f"the {dialect.paramstyle} parameter style")

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if not dollar:
            names.append(name)
            return "?"
        if name not in numbers:
            names.append(name)
            numbers[name] = len(names)
        return f"${numbers[name]}"

    sql = BIND.sub(number, text)
    return Statement(
        sql=sql,
        names=tuple(names),
        fixed={name: fixed[name] for name in names if name in fixed},
        processors={name: processors[name] for name in names if name in processors},
    )


def request_values(
    plan: RootPlan, principal: Principal, now: datetime, arguments: Sequence[RootArguments]
) -> dict[str, Any]:
    values = caller_values(principal, now)
    for index, args in enumerate(arguments):
        if isinstance(args, ObjectArguments):
            if args.type_name is not None:
                values[f"o{index}_id"] = args.pk
            continue
        w = args.window
        if w is not None:
            values[f"c{index}_limit"] = w.size + 1
            for side, bound in (("after", w.after), ("before", w.before)):
                for k, value in enumerate(bound or ()):
                    values[f"c{index}_{side}{k}"] = value
        for name, value in args.filter.items():
            if not isinstance(value, bool):
                values[f"c{index}_{name}"] = value
    return values


# --- The transform ------------------------------------------------------------------------


def as_datetime(value: Any) -> str | None:
    """A timestamp as the database gives it, in the form the standard executor answers."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def as_boolean(value: Any) -> bool | None:
    return None if value is None else bool(value)


def cursor_values(w: Window, row: Sequence[Any]) -> list[Any]:
    """A gathered row's key values as the standard executor's cursors hold them (times as the
    response shows them)."""
    return [as_datetime(v) if t is datetime else v for v, t in zip(row[1:], w.types, strict=True)]


def distinct(lists: Sequence[Sequence[Any]], show: Callable[[Any], Any]) -> list[Any]:
    seen: set[int] = set()
    found = []
    for rows in lists:
        for pk, row in rows:
            if pk not in seen:
                seen.add(pk)
                found.append(show(row))
    return found


Transform = Callable[[list[Any], Sequence[RootArguments]], dict[str, Any]]


class TransformWriter:
    """Writes, once per plan, the Python that gives the gathered arrays their response form."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "encode_id": encode_id,
            "encode_cursor": encode_cursor,
            "cursor_values": cursor_values,
            "distinct": distinct,
        }
        self.count = 0

    def name(self, prefix: str, value: Any = None) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        if value is not None:
            self.env[name] = value
        return name

    def object(self, plan: ObjectPlan) -> str:
        """A function from the object's array to its response dict; returns its name."""
        function = self.name("object_")
        fields: list[str] = []
        position = 0
        for item in plan.items:
            if isinstance(item, Constant):
                fields.append(f"{item.key!r}: {item.value!r}")
                continue
            if isinstance(item, Expression) and item.columns:
                assert item.format is not None
                args = ", ".join(f"a[{position + k}]" for k in range(1 + len(item.columns)))
                value = f"{self.name('format_', item.format)}({args})"
                position += 1 + len(item.columns)
            elif isinstance(item, Column | Expression):
                value = f"a[{position}]"
                if item.format is not None:
                    value = f"{self.name('format_', item.format)}({value})"
                position += 1
            elif isinstance(item, NodeId):
                value = f"encode_id({item.type_name!r}, a[{position}])"
                position += 1
            elif isinstance(item, Computed):
                args = ", ".join(f"a[{position + k}]" for k in range(len(item.columns)))
                value = f"{self.name('compute_', item.compute)}({args})"
                position += len(item.columns)
            elif isinstance(item, Flags):
                shown: list[str] = []
                index = 0  # in the flags' array, which holds the flags only
                for key, flag in item.fields:
                    if flag is None:
                        shown.append(f"{key!r}: {item.type_name!r}")
                        continue
                    shown.append(f"{key!r}: bool(a[{position}][{index}])")
                    index += 1
                value = "{" + ", ".join(shown) + "}"
                position += 1
            else:
                nested = self.object(item.node)
                relation = item.relation
                if isinstance(relation, ByArgument):
                    relation = relation.choose(**dict(item.arguments))
                if isinstance(relation, Ref | Single):
                    value = f"(None if a[{position}] is None else {nested}(a[{position}]))"
                elif isinstance(relation, Distinct):
                    value = f"distinct(a[{position}], {nested})"
                else:
                    value = f"[{nested}(x) for x in a[{position}]]"
                position += 1
            fields.append(f"{item.key!r}: {value}")
        self.lines.append(f"def {function}(a):\n    return {{{', '.join(fields)}}}\n")
        return function

    def connection(self, plan: ConnectionPlan) -> str:
        """A function (gathered array, the request's window) → the connection's dict."""
        function = self.name("connection_")
        node = None if plan.node is None else self.object(plan.node)
        body = [
            f"def {function}(c, w):",
            "    rows = c[1]",
            "    more = len(rows) > w.size",
            "    rows = rows[:w.size]",
            "    if not w.forward:",
            "        rows.reverse()",
            "    has_next = w.has_next(more)",
            "    has_previous = w.has_previous(more)",
        ]
        # Cursors cost a JSON and base64 encoding each: only those the document selects.
        edge_cursors = any(kind == "cursor" for _, items in plan.edges for _, kind in items)
        end_cursors = any(
            kind in ("startCursor", "endCursor") for _, items in plan.page_info for _, kind in items
        )
        if edge_cursors:
            body.append("    cursors = [encode_cursor(w.tag, cursor_values(w, r)) for r in rows]")
        elif end_cursors:
            body.append(
                "    cursors = [encode_cursor(w.tag, cursor_values(w, rows[0])),"
                " encode_cursor(w.tag, cursor_values(w, rows[-1]))] if rows else []"
            )
        body.append("    out = {}")
        for key, kind in plan.items:
            if kind == "totalCount":
                body.append(f"    out[{key!r}] = c[0]")
            elif kind.startswith("typename:"):
                body.append(f"    out[{key!r}] = {kind.split(':', 1)[1]!r}")
            elif kind == "edges":
                items = dict(plan.edges)[key]
                parts = []
                for edge_key, edge_kind in items:
                    if edge_kind == "cursor":
                        parts.append(f"{edge_key!r}: cur")
                    elif edge_kind == "node":
                        parts.append(f"{edge_key!r}: {node}(r[0])")
                    else:
                        parts.append(f"{edge_key!r}: {edge_kind.split(':', 1)[1]!r}")
                pairs = "r, cur in zip(rows, cursors)" if edge_cursors else "r in rows"
                body.append(f"    out[{key!r}] = [{{{', '.join(parts)}}} for {pairs}]")
            elif kind == "pageInfo":
                parts = []
                for info_key, info_kind in dict(plan.page_info)[key]:
                    parts.append(
                        {
                            "hasNextPage": f"{info_key!r}: has_next",
                            "hasPreviousPage": f"{info_key!r}: has_previous",
                            "startCursor": f"{info_key!r}: cursors[0] if cursors else None",
                            "endCursor": f"{info_key!r}: cursors[-1] if cursors else None",
                        }.get(info_kind)
                        or f"{info_key!r}: {info_kind.split(':', 1)[1]!r}"
                    )
                body.append(f"    out[{key!r}] = {{{', '.join(parts)}}}")
        body.append("    return out\n")
        self.lines.append("\n".join(body))
        return function

    def object_root(self, plan: ObjectRootPlan) -> str:
        """A function (gathered array or None, the id's type) → the object's dict or None."""
        function = self.name("object_root_")
        chosen = {c.type_name: self.object(c.plan) for c in plan.candidates if c.plan is not None}
        table = self.name("objects_")
        body = [
            f"{table} = {{{', '.join(f'{k!r}: {v}' for k, v in chosen.items())}}}",
            f"def {function}(a, type_name):",
            f"    return None if a is None else {table}[type_name](a)\n",
        ]
        self.lines.append("\n".join(body))
        return function

    def root(self, plan: RootPlan) -> Transform:
        functions = [
            self.object_root(g)
            if isinstance(g, ObjectRootPlan)
            else f"(lambda a, _: [{self.object(g.node)}(x) for x in a])"
            if isinstance(g, ItemsPlan)
            else self.connection(g)
            for g in plan.gathered
        ]
        body = ["def transform(data, arguments):", "    out = {}"]
        index = 0
        for item in plan.items:
            if isinstance(item, Constant):
                body.append(f"    out[{item.key!r}] = {item.value!r}")
            elif isinstance(item, ObjectRootPlan):
                body.append(
                    f"    out[{item.key!r}] = {functions[index]}(data[{index}], "
                    f"arguments[{index}].type_name)"
                )
                index += 1
            else:
                body.append(
                    f"    out[{item.key!r}] = {functions[index]}(data[{index}], "
                    f"arguments[{index}].window)"
                )
                index += 1
        body.append("    return out\n")
        self.lines.append("\n".join(body))
        namespace = dict(self.env)
        exec("\n".join(self.lines), namespace)
        return cast(Transform, namespace["transform"])


def transform_of(plan: RootPlan) -> Transform:
    return TransformWriter().root(plan)
