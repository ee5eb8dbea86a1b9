"""The compiled read path at the HTTP layer: one connection, one statement.

A POST whose document compiles (schema/compiled.py) is answered here without Strawberry:
the sign-in and the data in one statement that builds the response's nested arrays in the
database, and a generated transform. The statement is built for the caller the credentials
named last time and its answer is used only if its own sign-in rows name that caller again;
the first time, or when they name another, the sign-in and the data are two statements in
one read-only transaction. Anything else — a document that
does not compile, an argument or a credential the API refuses — returns None, and the
standard executor answers it exactly as it always does.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from policies.principal import Principal
from resolvers import compiled as sql
from resolvers.context import Limits
from resolvers.errors import Unavailable
from schema.compiled import CompiledOperation, compile_operation
from schema.cost import estimate
from schema.documents import Documents, Prepared
from schema.extensions import document_has_nul, unstorable_variable
from server.auth import AuthFailure, Credentials
from server.http import GraphQLBody
from server.logs import current_record, describe
from server.services import Services

log = logging.getLogger("caseload.compiled")

# The caller each recently seen credential named, so that its next read signs in and reads in
# one statement (the guess is checked against the sign-in's own rows before the answer is used).
CALLERS_KEPT = 10_000


class CompiledReads:
    """Answers the queries whose plan compiles; the rest go to the standard executor."""

    def __init__(self, services: Services, limits: Limits) -> None:
        self.services = services
        self.limits = limits
        self.schema = services.schema
        self.documents: Documents = services.schema.documents
        self.dialect = services.engine.dialect
        self.limits_of_cost = services.query_limits
        self.answered = 0  # requests answered here (tests and benchmarks read it)
        self.replaced = 0  # connections found dead and replaced (tests read it)
        self.failed = 0  # reads the database refused, answered by the standard executor
        self.callers: OrderedDict[Credentials, Principal] = OrderedDict()
        authenticator = services.authenticator
        self.auth = {
            kind: _raw(stmt, self.dialect)
            for kind, stmt in (("person", authenticator.person), ("key", authenticator.key))
        }

    def operation(self, prepared: Prepared, operation_name: str | None) -> CompiledOperation | None:
        """The document's plan, made once per document and kept on it (None: the standard
        executor answers it)."""
        if operation_name in prepared.plans:
            return prepared.plans[operation_name]  # type: ignore[no-any-return]
        found: CompiledOperation | None = None
        if prepared.valid and not document_has_nul(prepared.query, prepared.document):
            assert prepared.document is not None
            try:
                found = compile_operation(
                    self.schema, prepared.document, operation_name, self.limits
                )
            except sql.NotCompilable:
                found = None
        if operation_name in prepared.names():
            prepared.plans[operation_name] = found  # a name the document lacks is not kept
        return found

    async def answer(
        self,
        body: GraphQLBody,
        prepared: Prepared,
        credentials: Credentials,
        now: datetime,
    ) -> bytes | None:
        """The response body, or None: let the standard executor answer."""
        operation = self.operation(prepared, body.operation_name)
        if operation is None or unstorable_variable(body.variables) is not None:
            return None
        cost = self.cost(operation, body)
        if cost > self.limits_of_cost.max_cost:
            return None  # refused, with its code, by the standard executor
        try:
            arguments = operation.arguments(self.schema, self.limits, body.variables)
        except sql.NotCompilable:
            return None
        try:
            data = await self._run(operation, arguments, credentials, prepared, now)
        except sql.NotCompilable:
            # The plan passes a table twice on one path: the standard executor answers it.
            if body.operation_name in prepared.names():
                prepared.plans[body.operation_name] = None
            return None
        except PoolTimeout:
            # No connection came free in time: the standard executor would wait as long again.
            log.warning("no pooled connection for a compiled read")
            return unavailable(cost)
        except DRIVER_ERRORS as exc:
            # Whatever the database refused (a connection lost twice, a statement cancelled,
            # a statement past what SQLite's parser holds), the standard executor answers.
            self.failed += 1
            log.warning("compiled read failed; the standard executor answers", exc_info=exc)
            return None
        if data is None:
            return None
        self.answered += 1
        return orjson.dumps({"data": data, "extensions": {"cost": cost}})

    def cost(self, operation: CompiledOperation, body: GraphQLBody) -> int:
        """The request's node estimate, as the standard executor computes it (schema/cost.py)."""
        if operation.fixed_cost is not None:
            return operation.fixed_cost
        assert operation.document is not None
        limits = self.limits_of_cost
        found = estimate(
            self.schema._schema,
            operation.document,
            body.operation_name,
            body.variables,
            page_size=limits.page_size,
            list_bound=limits.list_bound,
            count_cost=limits.count_cost,
        )
        if not operation.operation.variable_definitions:
            operation.fixed_cost = found
        return found

    async def _run(
        self,
        operation: CompiledOperation,
        arguments: list[sql.Arguments],
        credentials: Credentials,
        prepared: Prepared,
        now: Any,
    ) -> dict[str, Any] | None:
        """Read on a pooled connection; one found dead is replaced and the read run once more
        (it only reads, so running it again changes nothing)."""
        try:
            return await self._read(operation, arguments, credentials, prepared, now)
        except Disconnected:
            log.warning("connection found dead; the compiled read runs on a new one")
            self.replaced += 1
        return await self._read(operation, arguments, credentials, prepared, now)

    async def _read(
        self,
        operation: CompiledOperation,
        arguments: list[sql.Arguments],
        credentials: Credentials,
        prepared: Prepared,
        now: Any,
    ) -> dict[str, Any] | None:
        authenticator = self.services.authenticator
        signin, params = authenticator.statement(credentials)
        expected = self.callers.get(credentials)
        async with self.services.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            postgresql = self.dialect.name == "postgresql"
            try:
                found: Any = None
                if expected is not None:
                    # One statement, in one snapshot: the sign-in's rows, and the answer for the
                    # caller these credentials named last time, kept only if the rows name that
                    # same caller now (any change of role, unit or status names another).
                    statement = operation.statement(
                        self.services.policies, expected, self.dialect, arguments, signin
                    )
                    values = sql.request_values(operation.plan, expected, now, arguments)
                    values.update(params)
                    rows = await _fetch(
                        driver, postgresql, statement.sql, statement.arguments(values)
                    )
                    signed = [row[:-1] for row in rows if row[-1] is None]
                    named = authenticator.principal(credentials, signed, now)
                    if isinstance(named, AuthFailure):
                        self.callers.pop(credentials, None)
                        return None
                    if named == expected:
                        found = next(row[-1] for row in rows if row[-1] is not None)
                        principal, statements = named, 1
                        await authenticator.used(principal, signed, now)
                if found is None:
                    signed_in = await self._signed_in_first(
                        driver, postgresql, operation, arguments, credentials, signin, params, now
                    )
                    if signed_in is None:
                        return None
                    found, principal = signed_in
                    statements = 2
            except Exception as exc:
                # The driver's own error, which SQLAlchemy never sees. On a disconnect, do as
                # SQLAlchemy does for its own statements: drop this connection, and replace
                # every other one made before now at its next checkout. (asyncpg's dialect
                # tells a disconnect by the connection, whatever the error's class.)
                if not self.dialect.is_disconnect(exc, raw.dbapi_connection, None):  # type: ignore[arg-type]
                    raise
                self.services.engine.pool._invalidate(raw, exc, _checkin=False)
                await connection.invalidate(exc)
                raise Disconnected from exc
        # Signed in: the document may be kept for this caller's next requests.
        self.documents.keep(prepared)
        self.callers[credentials] = principal
        self.callers.move_to_end(credentials)
        if len(self.callers) > CALLERS_KEPT:
            self.callers.popitem(last=False)
        record = current_record()
        if record is not None:
            record.principal = describe(principal)
            record.statements += statements
        gathered = orjson.loads(found) if isinstance(found, str | bytes) else found
        return operation.transform(gathered, arguments)

    async def _signed_in_first(
        self,
        driver: Any,
        postgresql: bool,
        operation: CompiledOperation,
        arguments: list[sql.Arguments],
        credentials: Credentials,
        signin: Select[Any],
        params: dict[str, Any],
        now: Any,
    ) -> tuple[Any, Principal] | None:
        """Sign in, then read for the caller found, in one read-only transaction: the answer
        and the caller (None when the credentials name nobody)."""
        authenticator = self.services.authenticator
        auth = self.auth["person" if signin is authenticator.person else "key"]
        await _begin(driver, postgresql)
        try:
            rows = await _fetch(driver, postgresql, auth.sql, auth.arguments(params))
            principal = authenticator.principal(credentials, rows, now)
            if isinstance(principal, AuthFailure):
                self.callers.pop(credentials, None)
                return None
            await authenticator.used(principal, rows, now)
            statement = operation.statement(
                self.services.policies, principal, self.dialect, arguments
            )
            values = sql.request_values(operation.plan, principal, now, arguments)
            found = await _fetch(driver, postgresql, statement.sql, statement.arguments(values))
        finally:
            await _end(driver, postgresql)
        return found[0][0], principal


def unavailable(cost: int) -> bytes:
    """UNAVAILABLE for the whole operation, as the standard executor answers it."""
    error = Unavailable("The database could not complete the request. Try again.")
    return orjson.dumps(
        {
            "data": None,
            "errors": [{"message": error.message, "extensions": {"code": error.code}}],
            "extensions": {"cost": cost},
        }
    )


class Disconnected(Exception):
    """The connection was found dead (the driver's error is the cause)."""


# The drivers' own errors (the compiled path runs its statements on the drivers themselves).
DRIVER_ERRORS = (
    DBAPIError,
    ConnectionError,
    Disconnected,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _raw(stmt: Any, dialect: Any) -> sql.Statement:
    compiled = stmt.compile(dialect=dialect)
    return sql.Statement(
        sql=compiled.string,
        names=tuple(compiled.positiontup or ()),
        fixed=dict(compiled.params),
        processors=dict(compiled._bind_processors),
    )


async def _begin(driver: Any, postgresql: bool) -> None:
    await _command(driver, postgresql, "BEGIN READ ONLY" if postgresql else "BEGIN")


async def _end(driver: Any, postgresql: bool) -> None:
    await _command(driver, postgresql, "COMMIT")


async def _command(driver: Any, postgresql: bool, command: str) -> None:
    if postgresql:
        await driver.execute(command)
    else:
        await (await driver.execute(command)).close()


async def _fetch(driver: Any, postgresql: bool, statement: str, args: list[Any]) -> list[Any]:
    if postgresql:
        return list(await driver.fetch(statement, *args))
    cursor = await driver.execute(statement, args)
    try:
        return list(await cursor.fetchall())
    finally:
        await cursor.close()
