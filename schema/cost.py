"""The node estimate of a request: how many objects it may fetch, known before it runs.

Every field that returns objects counts the product of the list sizes on its path: a
connection's `edges` count its `first` (the page size when not given), every other list its
declared bound (`bounded(n)` in the field's metadata), `DEFAULT_LIST_BOUND` when it declares
none. Fields that return scalars or enums, and introspection, cost nothing — except a count
(`counted()` in the field's metadata: a connection's `totalCount`), which reads every row of
its list, however small the page: it costs `count_cost` times the product on its path. A
connection that searches (a `search` argument, or `filter.search`, not blank) costs twice its
whole subtree, its count included: every row it reads is matched against the term. Variables
are part of the estimate, so it runs with each request, after the cached validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    is_composite_type,
    value_from_ast_untyped,
)

DEFAULT_LIST_BOUND = 10
DEFAULT_COUNT_COST = 2_000
LIST_BOUND = "caseload_list_bound"
COUNTED = "caseload_counted"


def bounded(size: int) -> dict[str, int]:
    """Field metadata declaring how many items a (non-connection) list field holds at most."""
    return {LIST_BOUND: size}


def counted() -> dict[str, bool]:
    """Field metadata declaring that the field counts the rows of a whole list."""
    return {COUNTED: True}


def estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    page_size: int,
    list_bound: int = DEFAULT_LIST_BOUND,
    count_cost: int = DEFAULT_COUNT_COST,
) -> int:
    """The node estimate of the operation the request runs (0 when there is none to run)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return 0
    operation = operations[0]
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]
    if root is None:
        return 0
    walk = _Walk(schema, document, operation, variables or {}, page_size, list_bound, count_cost)
    return walk.selections(operation.selection_set, root, 1, None)


def _named(type_: Any) -> tuple[Any, bool]:
    """The named type under lists and non-nulls, and whether a list wraps it."""
    is_list = False
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        is_list = is_list or isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return type_, is_list


def _metadata(field: GraphQLField) -> Mapping[str, Any]:
    definition = field.extensions.get("strawberry-definition")
    return getattr(definition, "metadata", None) or {}


def _declared_bound(field: GraphQLField) -> int | None:
    bound = _metadata(field).get(LIST_BOUND)
    return bound if isinstance(bound, int) else None


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
        page_size: int,
        list_bound: int,
        count_cost: int,
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        defaults = {
            v.variable.name.value: value_from_ast_untyped(v.default_value)
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        self.variables = {**defaults, **variables}
        self.page_size = page_size
        self.list_bound = list_bound
        self.count_cost = count_cost

    def selections(
        self, selection_set: SelectionSetNode | None, parent: Any, multiplier: int, page: int | None
    ) -> int:
        """The estimate of a selection set on `parent`, reached `multiplier` times; `page` is
        the `first` of the connection `parent` is, if it is one."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, multiplier, page)
            elif isinstance(selection, InlineFragmentNode):
                on = self.condition(selection.type_condition, parent)
                total += self.selections(selection.selection_set, on, multiplier, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    on = self.condition(fragment.type_condition, parent)
                    total += self.selections(fragment.selection_set, on, multiplier, page)
        return total

    def condition(self, type_condition: NamedTypeNode | None, parent: Any) -> Any:
        """The type a fragment's fields are read on."""
        if type_condition is None:
            return parent
        return self.schema.get_type(type_condition.name.value) or parent

    def field(self, node: FieldNode, parent: Any, multiplier: int, page: int | None) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(
            parent, GraphQLObjectType | GraphQLInterfaceType
        ):
            return 0  # introspection costs nothing; a union selects fields only in fragments
        field = parent.fields.get(name)
        if field is None:
            return 0
        named, is_list = _named(field.type)
        if not is_composite_type(named):
            return multiplier * self.count_cost if _metadata(field).get(COUNTED) else 0
        if is_list:
            if name == "edges" and page is not None:
                bound = page
            else:
                declared = _declared_bound(field)
                bound = self.list_bound if declared is None else declared
            multiplier *= max(bound, 0)
        connection = named.name.endswith("Connection")
        first = self.first(node) if connection else None
        cost = multiplier + self.selections(node.selection_set, named, multiplier, first)
        return 2 * cost if connection and self.searches(node) else cost

    def searches(self, node: FieldNode) -> bool:
        """Whether the connection is asked for a search: a `search` argument, or a `filter`
        holding one, not blank, from the document or its variables."""
        for argument in node.arguments or ():
            name = argument.name.value
            if name not in ("search", "filter"):
                continue
            value = value_from_ast_untyped(argument.value, self.variables)
            if name == "filter":
                value = value.get("search") if isinstance(value, dict) else None
            if isinstance(value, str) and value.strip():
                return True
        return False

    def first(self, node: FieldNode) -> int:
        """The connection's page size: `first` or `last`, from the document or its variables
        (both given: the larger; the request is refused anyway)."""
        sizes = [self._size(node, name) for name in ("first", "last")]
        given = [s for s in sizes if s is not None]
        return max(given) if given else self.page_size

    def _size(self, node: FieldNode, name: str) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value != name:
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                given = self.variables.get(value.name.value)
            elif isinstance(value, IntValueNode):
                given = int(value.value)
            else:
                given = None
            return given if isinstance(given, int) else None
        return None
