"""Introspection without credentials: a setting, one `__schema` per document, answers cached.

An anonymous caller could otherwise ask for the whole schema many times in one document
(29 aliased `__schema` selections cost 0.7 s of CPU each). Anonymous documents may select
`__schema` at most once and alias neither `__schema` nor `__type`; their answers are kept
per schema, keyed by the document, so GraphiQL's repeated introspection is not re-executed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from schema.caches import BoundedCache

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


# What a kept answer holds alive per byte of its JSON (Python's dicts, lists and strings).
BYTES_PER_JSON_BYTE = 6


class IntrospectionCache:
    """Answers to anonymous introspection documents for one schema, least recently used out,
    bounded in bytes (the document, its variables and its answer)."""

    def __init__(self, budget: int = 16 * 1024 * 1024) -> None:
        self._answers: BoundedCache[CacheKey, ExecutionResult] = BoundedCache(budget)

    @property
    def hits(self) -> int:
        return self._answers.hits

    @property
    def misses(self) -> int:
        return self._answers.misses

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(
        query: str | None, operation_name: str | None, variables: dict[str, Any] | None
    ) -> CacheKey:
        return query or "", operation_name, json.dumps(variables or {}, sort_keys=True)

    def get(self, key: CacheKey) -> ExecutionResult | None:
        return self._answers.get(key)

    def put(self, key: CacheKey, result: ExecutionResult) -> None:
        if result.errors:
            return
        size = len(key[0]) + len(key[2]) + BYTES_PER_JSON_BYTE * len(orjson.dumps(result.data))
        self._answers.put(key, ExecutionResult(data=result.data), size)
