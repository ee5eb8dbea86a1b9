"""Planning the compiled read path: which documents it answers, and from which declarations.

A query is compiled when every field it selects has a declared source: root lists with a
ListSource (`metadata={"list": …}`), roots answering one object by global id
(`metadata={"by_id": ById(…)}`: `learner(id:)`, `node(id:)`, the id's type choosing the
selection at request time), Node fields that are columns or computed fields of their
type's registration, fields whose resolver has an SQL form (`metadata={"expression": …}`,
with `"format"` when its response form is not a column's, reading the expression's value and
`"columns"` of the row), and relation fields
(schema/relations.py); @include/@skip are decided as the plan is made (a plan per combination
of the variables they read), and `viewerCan` (each flag's SQL, resolvers/capabilities.py).
Anything else — mutations, other directives, unions, fields computed by code (`access`) —
leaves the document to the standard executor.
resolvers/compiled.py turns a plan into SQL and a transform.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Union, cast, get_args, get_origin

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    VariableNode,
)
from graphql.execution.values import get_argument_values, get_variable_values
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from policies.enforcer import PolicyStore
from policies.principal import Principal
from policies.vocabulary import Action
from resolvers import capabilities
from resolvers import compiled as sql
from resolvers.context import Limits
from resolvers.errors import InvalidInput
from resolvers.ids import MalformedId, decode_id
from resolvers.loaders import Children
from resolvers.pagination import window
from schema.connections import PAGING, paging
from schema.derive import declared, plain
from schema.nodes import COMPUTED, NODE_TYPES, SCOPES, ById
from schema.permissions import Guard


def _strawberry(field_def: GraphQLField) -> StrawberryField:
    found = field_def.extensions.get("strawberry-definition")
    if not isinstance(found, StrawberryField):
        raise sql.NotCompilable("a field without a Strawberry definition")
    return found


def _object_type(type_: Any) -> GraphQLObjectType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    if not isinstance(type_, GraphQLObjectType):
        raise sql.NotCompilable(f"{type_} is not an object type")
    return type_


def _format(annotation: Any) -> Any:
    """How a column's value is shown, from the field's Python type."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    if annotation is datetime:
        return sql.as_datetime
    if annotation is bool:
        return sql.as_boolean
    if annotation in (str, int, date) or isinstance(annotation, type):
        return None  # text, numbers, dates and enum values arrive as the response shows them
    raise sql.NotCompilable(f"no column form for {annotation}")


@dataclass
class _Collector:
    fragments: dict[str, FragmentDefinitionNode]
    # The values of the variables that @include/@skip read (the plan is made for them).
    conditions: Mapping[str, Any] = field(default_factory=dict)

    def fields(
        self, type_: GraphQLObjectType, selections: Sequence[SelectionNode]
    ) -> dict[str, list[FieldNode]]:
        """The response keys selected on `type_`, in order, with their field nodes."""
        found: dict[str, list[FieldNode]] = {}
        self._collect(type_, selections, found)
        return found

    def _collect(
        self,
        type_: GraphQLObjectType,
        selections: Sequence[SelectionNode],
        found: dict[str, list[FieldNode]],
    ) -> None:
        names = {type_.name, *(i.name for i in type_.interfaces)}
        for selection in selections:
            if selection.directives and not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                found.setdefault(key, []).append(selection)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition, nested = selection.type_condition, selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if fragment.directives:
                    raise sql.NotCompilable("directives")
                condition, nested = fragment.type_condition, fragment.selection_set
            else:
                raise sql.NotCompilable("unknown selection")
            if condition is None or condition.name.value in names:
                self._collect(type_, nested.selections, found)

    def _included(self, selection: SelectionNode) -> bool:
        """Whether @include/@skip keep the selection, as the standard executor decides it
        (graphql-core's should_include_node); any other directive is not compiled."""
        for directive in selection.directives or ():
            name = directive.name.value
            arguments = directive.arguments or ()
            if name not in ("include", "skip") or len(arguments) != 1:
                raise sql.NotCompilable("directives")
            value = arguments[0].value
            if isinstance(value, VariableNode):
                condition = self.conditions.get(value.name.value)
            elif isinstance(value, BooleanValueNode):
                condition = value.value
            else:
                condition = None
            if not isinstance(condition, bool):
                raise sql.NotCompilable("a condition that is not a boolean")
            if condition != (name == "include"):
                return False
        return True


def condition_variables(document: DocumentNode, operation_name: str | None) -> tuple[str, ...]:
    """The variables that @include/@skip read in the operation or any fragment: its plans are
    made per combination of their values."""
    found: set[str] = set()
    definitions = [
        d
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
        or (
            isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        )
    ]

    def walk(node: Any) -> None:
        if isinstance(node, DirectiveNode) and node.name.value in ("include", "skip"):
            for argument in node.arguments or ():
                if isinstance(argument.value, VariableNode):
                    found.add(argument.value.name.value)
            return
        if isinstance(node, Node):
            for key in node.keys:
                child = getattr(node, key, None)
                for item in child if isinstance(child, tuple | list) else (child,):
                    walk(item)

    for definition in definitions:
        walk(definition)
    return tuple(sorted(found))


# Plans kept per document operation for combinations of condition values: beyond it, the
# standard executor answers the other combinations (2^n of them for n variables).
MAX_CONDITION_PLANS = 8


@dataclass
class Conditional:
    """An operation whose @include/@skip read variables: a plan per combination of their values
    (None: the standard executor answers that combination)."""

    variables: tuple[str, ...]
    plans: dict[tuple[bool, ...], CompiledOperation | None] = field(default_factory=dict)

    def values(
        self, schema: Any, document: DocumentNode, operation_name: str | None, variables: Any
    ) -> tuple[bool, ...] | None:
        """This request's condition values (None when its variables do not coerce, or a
        condition is not a boolean: the standard executor answers the error)."""
        operations = [
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        ]
        if len(operations) != 1 or not isinstance(variables, dict | None):
            return None
        coerced = get_variable_values(
            schema._schema, operations[0].variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return None
        found = tuple(coerced.coerced.get(v) for v in self.variables)
        if not all(isinstance(v, bool) for v in found):
            return None
        return cast(tuple[bool, ...], found)


def _children(nodes: list[FieldNode]) -> list[SelectionNode]:
    return [s for n in nodes if n.selection_set for s in n.selection_set.selections]


@dataclass
class _Planner:
    schema: Any  # strawberry.Schema
    collector: _Collector
    limits: Limits
    budget: sql.Budget | None = None
    connections: list[tuple[GraphQLField, FieldNode, StrawberryField]] = field(default_factory=list)

    def root(self, operation: OperationDefinitionNode) -> sql.RootPlan:
        query = self.schema._schema.query_type
        items: list[sql.Constant | sql.ConnectionPlan | sql.ObjectRootPlan | sql.ItemsPlan] = []
        for key, nodes in self.collector.fields(query, operation.selection_set.selections).items():
            name = nodes[0].name.value
            if name == "__typename":
                items.append(sql.Constant(key, query.name))
                continue
            if name not in query.fields:
                raise sql.NotCompilable(f"Query.{name}")  # introspection
            field_def = query.fields[name]
            strawberry_field = _strawberry(field_def)
            by_id = strawberry_field.metadata.get("by_id")
            listed = "list" in strawberry_field.metadata or "items" in strawberry_field.metadata
            if not listed and not isinstance(by_id, ById):
                raise sql.NotCompilable(f"Query.{name}: no list source, not by id")
            self._guarded(strawberry_field)
            if len({n.arguments for n in nodes}) > 1:
                raise sql.NotCompilable("one key, two argument lists")
            self.connections.append((field_def, nodes[0], strawberry_field))
            if isinstance(by_id, ById):
                items.append(self.object_root(key, by_id, nodes))
            elif "items" in strawberry_field.metadata:
                node = self.object(_object_type(field_def.type), _children(nodes))
                items.append(sql.ItemsPlan(key, strawberry_field.metadata["items"], node))
            else:
                items.append(self.connection(key, field_def, strawberry_field, nodes))
        return sql.RootPlan(tuple(items))

    def object_root(self, key: str, by_id: ById, nodes: list[FieldNode]) -> sql.ObjectRootPlan:
        """Every Node type the id may name, with what the document selects on it (its
        fragments on that type or on Node)."""
        type_map = self.schema._schema.type_map
        candidates = []
        for name in [by_id.type_name] if by_id.type_name else sorted(NODE_TYPES):
            where = SCOPES[name]
            plan: sql.ObjectPlan | None
            reason = None
            try:
                plan = self.object(_object_type(type_map[name]), _children(nodes))
            except sql.OverBudget:
                raise
            except sql.NotCompilable as refused:
                plan = None  # a request naming this type goes to the standard executor
                reason = str(refused)
            candidates.append(sql.ObjectCandidate(name, plan, where, reason))
        return sql.ObjectRootPlan(key, tuple(candidates))

    def _fixed_arguments(
        self, field_def: GraphQLField, strawberry_field: StrawberryField, nodes: list[FieldNode]
    ) -> dict[str, Any]:
        """A nested field's arguments, as Python values; the document must fix them."""
        if not any(n.arguments for n in nodes):
            return {}
        if len({n.arguments for n in nodes}) > 1 or any(
            _uses_variables(a) for a in nodes[0].arguments or ()
        ):
            raise sql.NotCompilable("nested arguments from variables")
        raw = get_argument_values(field_def, nodes[0], None)
        converted = convert_arguments(
            raw,
            strawberry_field.arguments,
            scalar_registry=self.schema.schema_converter.scalar_registry,
            config=self.schema.config,
        )
        # Filters as their declarations (what the relation's narrowing reads), checked now: a
        # refused argument leaves the document to the standard executor, which answers INVALID.
        arguments = {k: declared(v) for k, v in converted.items()}
        relation = strawberry_field.metadata.get("relation")
        if isinstance(relation, Children):
            try:
                relation.check(self.limits, arguments)
            except InvalidInput as refused:
                raise sql.NotCompilable("nested arguments refused") from refused
        return arguments

    @staticmethod
    def _guarded(strawberry_field: StrawberryField) -> None:
        """Only fields that need no more than a signed-in caller (the rows are scoped in SQL)."""
        for extension in strawberry_field.extensions:
            if isinstance(extension, Guard) and extension.action is not Action.READ:
                raise sql.NotCompilable("a field guarded by an action")

    def connection(
        self,
        key: str,
        field_def: GraphQLField,
        strawberry_field: StrawberryField,
        nodes: list[FieldNode],
    ) -> sql.ConnectionPlan:
        if self.budget is not None:
            self.budget.check()
        connection = _object_type(field_def.type)
        total: list[str] = []
        edges: list[tuple[str, tuple[Any, ...]]] = []
        page_info: list[tuple[str, tuple[Any, ...]]] = []
        items: list[tuple[str, str]] = []
        node: sql.ObjectPlan | None = None
        for child_key, child_nodes in self.collector.fields(connection, _children(nodes)).items():
            name = child_nodes[0].name.value
            if name == "__typename":
                items.append((child_key, f"typename:{connection.name}"))
            elif name == "totalCount":
                total.append(child_key)
                items.append((child_key, "totalCount"))
            elif name == "pageInfo":
                info_type = _object_type(connection.fields[name].type)
                found = self.collector.fields(info_type, _children(child_nodes))
                page_info.append(
                    (
                        child_key,
                        tuple(
                            (k, f"typename:{info_type.name}")
                            if n[0].name.value == "__typename"
                            else (k, n[0].name.value)
                            for k, n in found.items()
                        ),
                    )
                )
                items.append((child_key, "pageInfo"))
            elif name == "edges":
                if edges:
                    raise sql.NotCompilable("edges selected twice")
                edge_type = _object_type(connection.fields[name].type)
                edge_items: list[tuple[str, str]] = []
                for edge_key, edge_nodes in self.collector.fields(
                    edge_type, _children(child_nodes)
                ).items():
                    edge_name = edge_nodes[0].name.value
                    if edge_name == "__typename":
                        edge_items.append((edge_key, f"typename:{edge_type.name}"))
                    elif edge_name == "cursor":
                        edge_items.append((edge_key, "cursor"))
                    elif edge_name == "node":
                        if node is not None:
                            raise sql.NotCompilable("node selected twice")
                        node = self.object(
                            _object_type(edge_type.fields["node"].type), _children(edge_nodes)
                        )
                        edge_items.append((edge_key, "node"))
                edges.append((child_key, tuple(edge_items)))
                items.append((child_key, "edges"))
            else:
                raise sql.NotCompilable(f"{connection.name}.{name}")
        return sql.ConnectionPlan(
            key=key,
            source=strawberry_field.metadata["list"],
            total_count=tuple(total),
            edges=tuple(edges),
            page_info=tuple(page_info),
            node=node,
            items=tuple(items),
        )

    def flags(
        self,
        key: str,
        spec: capabilities.Capabilities,
        field_def: GraphQLField,
        nodes: list[FieldNode],
    ) -> sql.Flags:
        return _flags_of(self.collector, key, spec, field_def, nodes)

    def object(
        self, type_: GraphQLObjectType, selections: Sequence[SelectionNode]
    ) -> sql.ObjectPlan:
        if self.budget is not None:
            self.budget.check()
        # A Node type, or a type that shows rows otherwise (a course's pool)
        cls = NODE_TYPES.get(type_.name) or next(
            (t for t in _row_types().values() if t.__name__ == type_.name), None
        )
        if cls is None:
            raise sql.NotCompilable(f"{type_.name} shows no table's rows")
        model = next(m for m, t in _row_types().items() if t is cls)
        computed = COMPUTED.get(cls, {})
        items: list[sql.Item] = []
        for key, nodes in self.collector.fields(type_, selections).items():
            name = nodes[0].name.value
            if name == "__typename":
                items.append(sql.Constant(key, type_.name))
                continue
            field_def = type_.fields[name]
            strawberry_field = _strawberry(field_def)
            self._guarded(strawberry_field)
            arguments = self._fixed_arguments(field_def, strawberry_field, nodes)
            if arguments and "relation" not in strawberry_field.metadata:
                raise sql.NotCompilable(f"{type_.name}.{name} with arguments")
            python_name = strawberry_field.python_name
            if name == "id":
                items.append(sql.NodeId(key, type_.name))
            elif python_name == "viewer_can" and model in capabilities.SPECS:
                items.append(self.flags(key, capabilities.SPECS[model], field_def, nodes))
            elif python_name in computed:
                found = computed[python_name]
                items.append(sql.Computed(key, found.columns, found.compute))
            elif "relation" in strawberry_field.metadata:
                target = self.object(_object_type(field_def.type), _children(nodes))
                relation = strawberry_field.metadata["relation"]
                items.append(sql.Related(key, relation, target, tuple(sorted(arguments.items()))))
            elif strawberry_field.base_resolver is None:
                annotation = strawberry_field.type_annotation
                resolved = annotation.resolve() if annotation is not None else None
                items.append(sql.Column(key, python_name, _format(_python_type(resolved))))
            elif "expression" in strawberry_field.metadata:
                annotation = strawberry_field.type_annotation
                resolved = annotation.resolve() if annotation is not None else None
                build = strawberry_field.metadata["expression"]
                shown = strawberry_field.metadata.get("format") or _format(_python_type(resolved))
                also = tuple(strawberry_field.metadata.get("columns", ()))
                items.append(sql.Expression(key, build, shown, also))
            else:
                raise sql.NotCompilable(f"{type_.name}.{name} runs code")
        return sql.ObjectPlan(model, tuple(items))


def _flags_of(
    collector: _Collector,
    key: str,
    spec: capabilities.Capabilities,
    field_def: GraphQLField,
    nodes: list[FieldNode],
) -> sql.Flags:
    """`viewerCan`'s selection: each flag (or __typename) under its response key."""
    shown = _object_type(field_def.type)
    fields: list[tuple[str, str | None]] = []
    for child_key, child_nodes in collector.fields(shown, _children(nodes)).items():
        name = child_nodes[0].name.value
        if name == "__typename":
            fields.append((child_key, None))
            continue
        flag = _strawberry(shown.fields[name]).python_name
        if flag not in spec.flags:
            raise sql.NotCompilable(f"{shown.name}.{name} is no flag")
        fields.append((child_key, flag))
    return sql.Flags(key, spec, tuple(fields), shown.name)


def _uses_variables(node: Any) -> bool:
    if isinstance(node, VariableNode):
        return True
    if isinstance(node, Node):
        for key in node.keys:
            child = getattr(node, key, None)
            for item in child if isinstance(child, tuple | list) else (child,):
                if _uses_variables(item):
                    return True
    return False


def _row_types() -> dict[type, Any]:
    from schema.nodes import ROW_TYPES

    return ROW_TYPES


def _python_type(resolved: Any) -> Any:
    """The Python type behind a resolved Strawberry annotation (optional, enum or scalar)."""
    inner = getattr(resolved, "of_type", None)
    if inner is not None and type(resolved).__name__ == "StrawberryOptional":
        return _python_type(inner)
    wrapped = getattr(resolved, "wrapped_cls", None)
    return wrapped if wrapped is not None else resolved


@dataclass
class CompiledOperation:
    """A query document the compiled path answers: its plan, transform and statements."""

    plan: sql.RootPlan
    operation: OperationDefinitionNode
    connections: list[tuple[GraphQLField, FieldNode, StrawberryField]]
    transform: sql.Transform
    document: DocumentNode | None = None
    statements: dict[tuple[Any, ...], sql.Statement] = field(default_factory=dict)
    # Shapes whose statement ran past the planning budget: the standard executor answers them.
    over_budget: set[tuple[Any, ...]] = field(default_factory=set)
    fixed_arguments: list[sql.RootArguments] | None = None

    def arguments(
        self, schema: Any, limits: Limits, variables: dict[str, Any] | None
    ) -> list[sql.RootArguments]:
        """Each list's arguments for this request; NotCompilable when any is refused (the
        standard executor then answers the error exactly as it always does)."""
        if self.fixed_arguments is not None:
            return self.fixed_arguments
        values: Any = None
        if self.operation.variable_definitions:
            coerced = get_variable_values(
                schema._schema, self.operation.variable_definitions, variables or {}
            )
            if isinstance(coerced, list):
                raise sql.NotCompilable("variables refused")
            values = coerced
        found: list[sql.RootArguments] = []
        gathered = self.plan.gathered
        for (field_def, node, strawberry_field), item in zip(
            self.connections, gathered, strict=True
        ):
            raw = get_argument_values(field_def, node, values)
            if isinstance(item, sql.ObjectRootPlan):
                found.append(_object_arguments(item, strawberry_field, raw["id"]))
                continue
            kwargs = convert_arguments(
                raw,
                strawberry_field.arguments,
                scalar_registry=schema.schema_converter.scalar_registry,
                config=schema.config,
            )
            found.append(_checked(strawberry_field, kwargs, limits))
        return found

    def statement(
        self,
        store: PolicyStore,
        principal: Principal,
        dialect: Dialect,
        args: list[sql.RootArguments],
        signin: Select[Any] | None = None,
        budget: sql.Budget | None = None,
        fragments: sql.Fragments | None = None,
    ) -> sql.Statement:
        """The statement for this caller's scope shape and these arguments' shape; with
        `signin`, the sign-in statement run in the same statement (sql.compile_statement)."""
        shape = (sql.shape_of(principal), tuple(a.shape() for a in args))
        key = (*shape, signin)
        found = self.statements.get(key)
        if found is None:
            if shape in self.over_budget:
                raise sql.OverBudget("planning this shape ran over its budget", remembered=True)
            ctx = sql.symbolic_context(store, principal)
            try:
                found = sql.compile_statement(
                    self.plan, ctx, dialect, args, signin, budget, fragments, shape[0]
                )
            except sql.OverBudget:
                # Remembered for this shape only: other callers' statements are unaffected.
                self.over_budget.add(shape)
                raise
            if len(self.statements) < MAX_STATEMENTS:
                self.statements[key] = found
        return found


# Statements kept per operation: the shapes multiply (each `node(id:)` root has one per Node
# type its id names), and a caller must not grow them without bound by varying the ids; past
# it a statement is built for its request only (its planning budget still applies).
MAX_STATEMENTS = 64


def _object_arguments(
    plan: sql.ObjectRootPlan, strawberry_field: StrawberryField, id: str
) -> sql.ObjectArguments:
    """The id's type and primary key; none for an id that names no object of the root's
    types (malformed, of another type, of no Node type): null, as the standard path answers.
    A type whose selection does not compile sends the request to the standard executor."""
    by_id: ById = strawberry_field.metadata["by_id"]
    try:
        type_name, pk = decode_id(id)
    except MalformedId:
        return sql.ObjectArguments(None, None)
    candidate = plan.candidate(type_name)
    if candidate is None or (by_id.type_name is not None and type_name != by_id.type_name):
        return sql.ObjectArguments(None, None)
    if candidate.plan is None or candidate.where is None:
        raise sql.NotCompilable(f"{type_name} selected: {candidate.reason}")
    return sql.ObjectArguments(type_name, pk)


def _checked(
    strawberry_field: StrawberryField, kwargs: dict[str, Any], limits: Limits
) -> sql.Arguments:
    from resolvers.errors import InvalidInput

    if "items" in strawberry_field.metadata:  # a plain list: no window, no filter
        try:
            values = strawberry_field.metadata["items"].prepare(limits, None, kwargs)
        except InvalidInput as refused:
            raise sql.NotCompilable("arguments refused") from refused
        return sql.Arguments(window=None, filter=values)
    source = strawberry_field.metadata["list"]
    try:
        w = window(limits, source, **paging(kwargs))
        declaration = strawberry_field.metadata.get("filter")
        wanted = None if declaration is None else plain(kwargs.get("filter"), declaration)
        others = {k: v for k, v in kwargs.items() if k not in PAGING}
        values = source.prepare(limits, wanted, others)
    except InvalidInput as refused:
        raise sql.NotCompilable("arguments refused") from refused
    return sql.Arguments(window=w, filter=values)


def compile_operation(
    schema: Any,
    document: DocumentNode,
    operation_name: str | None,
    limits: Limits,
    budget: sql.Budget | None = None,
    conditions: Mapping[str, bool] | None = None,
) -> CompiledOperation:
    """The compiled form of a valid query document, for these values of the variables its
    @include/@skip read (`condition_variables`); NotCompilable when it has none."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        raise sql.NotCompilable("not one query")
    operation = operations[0]
    if operation.directives:
        raise sql.NotCompilable("directives")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    planner = _Planner(schema, _Collector(fragments, conditions or {}), limits, budget)
    plan = planner.root(operation)
    if not plan.gathered:
        raise sql.NotCompilable("nothing to gather")
    compiled = CompiledOperation(
        plan=plan,
        operation=operation,
        connections=planner.connections,
        transform=sql.transform_of(plan),
        document=document,
    )
    if not operation.variable_definitions:
        compiled.fixed_arguments = compiled.arguments(schema, limits, None)
    return compiled
