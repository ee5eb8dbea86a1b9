"""Introspection without credentials: a setting, one `__schema` per document, answers cached.

An anonymous caller could otherwise ask for the whole schema many times in one document
(29 aliased `__schema` selections cost 0.7 s of CPU each). Anonymous documents may select
`__schema` at most once and alias neither `__schema` nor `__type`; their answers are kept
per schema, keyed by the document, so GraphiQL's repeated introspection is not re-executed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

ROOT_INTROSPECTION = ("__schema", "__type")
CacheKey = tuple[str, str | None, str]


def refusal(document: DocumentNode) -> str | None:
    """Why an anonymous introspection document is refused, or None when it may run."""
    schema_fields = 0
    pending: list[SelectionSetNode] = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                if selection.name.value in ROOT_INTROSPECTION and selection.alias is not None:
                    return "Aliases of __schema and __type need credentials."
                if selection.name.value == "__schema":
                    schema_fields += 1
                if selection.selection_set is not None:
                    pending.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
    if schema_fields > 1:
        return "Without credentials, a document may select __schema once."
    return None


class IntrospectionCache:
    """Answers to anonymous introspection documents for one schema, least recently used out."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._answers: OrderedDict[CacheKey, ExecutionResult] = OrderedDict()

    @staticmethod
    def key(
        query: str | None, operation_name: str | None, variables: dict[str, Any] | None
    ) -> CacheKey:
        return query or "", operation_name, json.dumps(variables or {}, sort_keys=True)

    def get(self, key: CacheKey) -> ExecutionResult | None:
        found = self._answers.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
            self._answers.move_to_end(key)
        return found

    def put(self, key: CacheKey, result: ExecutionResult) -> None:
        if result.errors:
            return
        self._answers[key] = ExecutionResult(data=result.data)
        self._answers.move_to_end(key)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)
