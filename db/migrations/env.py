"""Alembic environment: runs on the connection handed over by db.migrate."""

from __future__ import annotations

from alembic import context

from db import models  # noqa: F401  (registers the tables)
from db.base import Base
from db.migrate import on_dialect

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations with `caseload db upgrade` (db.migrate.upgrade).")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=on_dialect(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
