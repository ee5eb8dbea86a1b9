"""Statements that differ by database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.functions import GenericFunction


def insert_skipping_conflicts(
    dialect: str,
    model: Any,
    *,
    index_elements: list[str],
    index_where: ColumnElement[bool] | None = None,
) -> Insert:
    """INSERT that skips rows clashing with a unique index, partial when `index_where` is
    given (ON CONFLICT DO NOTHING): a race between two writers never fails either."""
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(
            index_elements=index_elements, index_where=index_where
        )
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(
            index_elements=index_elements, index_where=index_where
        )
    raise NotImplementedError(dialect)


class comma_joined(GenericFunction[str]):
    """An aggregate: the group's values joined by commas (NULL for no rows), in no particular
    order. The separator is written into the statement, not bound, so that a statement
    compiled once with its parameters left open (the compiled read path) holds it."""

    type = String()
    inherit_cache = True


@compiles(comma_joined, "sqlite")
def _comma_joined_sqlite(element: comma_joined, compiler: SQLCompiler, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(comma_joined, "postgresql")
def _comma_joined_postgresql(element: comma_joined, compiler: SQLCompiler, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"
