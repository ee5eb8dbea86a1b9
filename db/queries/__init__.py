"""Statements that differ by database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


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
