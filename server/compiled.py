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

import contextlib
import logging
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from db.engine import DEADLINE, Deadline, is_timeout
from policies.principal import Principal
from resolvers import compiled as sql
from resolvers.context import Limits
from resolvers.errors import OperationError, Timeout, Unavailable
from schema.admission import admission
from schema.caches import BoundedCache
from schema.compiled import (
    MAX_CONDITION_PLANS,
    CompiledOperation,
    Conditional,
    compile_operation,
    condition_variables,
)
from schema.documents import Documents, Prepared
from schema.extensions import TIMED_OUT
from server.auth import AuthFailure, Credentials
from server.http import GraphQLBody
from server.logs import current_record, describe, statement_ran
from server.services import Services

log = logging.getLogger("caseload.compiled")

UNAVAILABLE = "The database could not complete the request. Try again."
# The caller each recently seen credential named, so that its next read signs in and reads in
# one statement (the guess is checked against the sign-in's own rows before the answer is used).
CALLERS_KEPT = 10_000
_UNPLANNED = object()


@dataclass(frozen=True)
class Answer:
    body: bytes
    status: int = 200


@dataclass(frozen=True)
class Planned:
    """A request the compiled path can answer: its operation and its lists' arguments."""

    operation: CompiledOperation
    arguments: list[sql.RootArguments]


# A root compiled larger than this is used for its statement and not kept.
FRAGMENT_MAX_BYTES = 1024 * 1024


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
        self.over_budget = 0  # documents whose planning ran past its budget
        self.callers: OrderedDict[Credentials, Principal] = OrderedDict()
        # Compiled roots, shared by every document that asks the same root of the same caller
        # shape (resolvers/compiled.py, Fragment).
        self.fragments: BoundedCache[Any, sql.Fragment] = BoundedCache(
            services.settings.document_cache_bytes // 4, max_entry=FRAGMENT_MAX_BYTES
        )
        authenticator = services.authenticator
        self.auth = {
            kind: _raw(stmt, self.dialect)
            for kind, stmt in (("person", authenticator.person), ("key", authenticator.key))
        }

    def operation(
        self,
        prepared: Prepared,
        operation_name: str | None,
        budget: sql.Budget | None = None,
        variables: Any = None,
    ) -> CompiledOperation | None:
        """The document's plan, made once per document and kept on it (None: the standard
        executor answers it, also when planning ran past its budget); for an operation whose
        @include/@skip read variables, once per combination of their values (`variables`)."""
        kept = prepared.plans.get(operation_name, _UNPLANNED)
        if isinstance(kept, Conditional):
            return self._conditional(kept, prepared, operation_name, budget, variables)
        if kept is not _UNPLANNED:
            return kept  # type: ignore[no-any-return]
        found: CompiledOperation | None = None
        if prepared.document is not None:  # admitted (see plan): a valid document
            read = condition_variables(prepared.document, operation_name)
            if read:
                conditional = Conditional(read)
                if operation_name in prepared.names():
                    prepared.plans[operation_name] = conditional
                return self._conditional(conditional, prepared, operation_name, budget, variables)
            found = self._compile(prepared, operation_name, budget, None)
        if operation_name in prepared.names():
            prepared.plans[operation_name] = found  # a name the document lacks is not kept
        return found

    def _conditional(
        self,
        conditional: Conditional,
        prepared: Prepared,
        operation_name: str | None,
        budget: sql.Budget | None,
        variables: Any,
    ) -> CompiledOperation | None:
        assert prepared.document is not None
        values = conditional.values(self.schema, prepared.document, operation_name, variables)
        if values is None:
            return None
        if values in conditional.plans:
            return conditional.plans[values]
        if len(conditional.plans) >= MAX_CONDITION_PLANS:
            return None  # bounded: the other combinations go to the standard executor
        found = self._compile(
            prepared, operation_name, budget, dict(zip(conditional.variables, values, strict=True))
        )
        conditional.plans[values] = found
        return found

    def _compile(
        self,
        prepared: Prepared,
        operation_name: str | None,
        budget: sql.Budget | None,
        conditions: dict[str, bool] | None,
    ) -> CompiledOperation | None:
        assert prepared.document is not None
        try:
            with budget.running() if budget is not None else contextlib.nullcontext():
                return compile_operation(
                    self.schema, prepared.document, operation_name, self.limits, budget, conditions
                )
        except sql.OverBudget:
            self.over_budget += 1
        except sql.NotCompilable:
            pass
        return None

    def plan(
        self, body: GraphQLBody, prepared: Prepared, cost: int, budget: sql.Budget | None = None
    ) -> Planned | None:
        """The request's plan and arguments, or None: let the standard executor answer, also
        every request it refuses (schema/admission.py), with its code and body. `budget` bounds
        planning (CASELOAD_PLAN_BUDGET_MS)."""
        if admission(prepared, body.variables, cost, self.limits_of_cost) is not None:
            return None  # refused before planning, by the standard executor
        operation = self.operation(prepared, body.operation_name, budget, body.variables)
        if operation is None:
            return None
        try:
            arguments = operation.arguments(self.schema, self.limits, body.variables)
        except sql.NotCompilable:
            return None
        return Planned(operation, arguments)

    async def answer(
        self,
        body: GraphQLBody,
        prepared: Prepared,
        planned: Planned,
        credentials: Credentials,
        now: datetime,
        cost: int,
        budget: sql.Budget | None = None,
    ) -> Answer | None:
        """The response, or None: let the standard executor answer."""
        operation, arguments = planned.operation, planned.arguments
        try:
            data = await self._run(operation, arguments, credentials, prepared, now, budget)
        except sql.OverBudget as exc:
            # Planning this caller's statement ran past its budget (remembered for the shape).
            if not exc.remembered:
                self.over_budget += 1
            return None
        except sql.NotCompilable:
            # The plan passes a table twice on one path: the standard executor answers it.
            if body.operation_name in prepared.names():
                prepared.plans[body.operation_name] = None
            return None
        except PoolTimeout:
            # No connection came free in time: the standard executor would wait as long again.
            log.warning("no pooled connection for a compiled read")
            return Answer(refusal(Unavailable(UNAVAILABLE), cost))
        except DRIVER_ERRORS as exc:
            if is_timeout(exc):
                # Past the statement timeout: running it again on the other path would take
                # as long again.
                return Answer(refusal(Timeout(TIMED_OUT), cost), status=504)
            # Whatever the database refused (a connection lost twice, a statement cancelled,
            # a statement past what SQLite's parser holds), the standard executor answers.
            self.failed += 1
            if too_deep(exc) and body.operation_name in prepared.names():
                # It would refuse this document's statement every time: the standard executor
                # answers it from now on, without trying again.
                prepared.plans[body.operation_name] = None
            log.warning("compiled read failed; the standard executor answers", exc_info=exc)
            return None
        if data is None:
            return None
        self.answered += 1
        return Answer(orjson.dumps({"data": data, "extensions": {"cost": cost}}))

    async def _run(
        self,
        operation: CompiledOperation,
        arguments: list[sql.RootArguments],
        credentials: Credentials,
        prepared: Prepared,
        now: Any,
        budget: sql.Budget | None,
    ) -> dict[str, Any] | None:
        """Read on a pooled connection; one found dead is replaced and the read run once more
        (it only reads, so running it again changes nothing)."""
        try:
            return await self._read(operation, arguments, credentials, prepared, now, budget)
        except Disconnected:
            log.warning("connection found dead; the compiled read runs on a new one")
            self.replaced += 1
        return await self._read(operation, arguments, credentials, prepared, now, budget)

    async def _read(
        self,
        operation: CompiledOperation,
        arguments: list[sql.RootArguments],
        credentials: Credentials,
        prepared: Prepared,
        now: Any,
        budget: sql.Budget | None,
    ) -> dict[str, Any] | None:
        authenticator = self.services.authenticator
        signin, params = authenticator.statement(credentials)
        expected = self.callers.get(credentials)
        guessed: sql.Statement | None = None
        if expected is not None:
            # Built before a connection is taken: no connection waits for a plan.
            guessed = operation.statement(
                self.services.policies,
                expected,
                self.dialect,
                arguments,
                signin,
                budget,
                self.fragments,
            )
        async with self.services.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = Driver(
                raw.driver_connection,
                self.dialect.name == "postgresql",
                raw.info,
                self.services.engine.sync_engine,
            )
            try:
                found: Any = None
                if expected is not None and guessed is not None:
                    # One statement, in one snapshot: the sign-in's rows, and the answer for the
                    # caller these credentials named last time, kept only if the rows name that
                    # same caller now (any change of role, unit or status names another).
                    values = sql.request_values(operation.plan, expected, now, arguments)
                    values.update(params)
                    rows = await driver.fetch(guessed.sql, guessed.arguments(values))
                    signed = [row[:-1] for row in rows if row[-1] is None]
                    named = authenticator.principal(credentials, signed, now)
                    if isinstance(named, AuthFailure):
                        self.callers.pop(credentials, None)
                        return None
                    if named == expected:
                        found = next(row[-1] for row in rows if row[-1] is not None)
                        principal = named
                        await authenticator.used(principal, signed, now)
                if found is None:
                    signed_in = await self._signed_in_first(
                        driver, operation, arguments, credentials, signin, params, now, budget
                    )
                    if signed_in is None:
                        return None
                    found, principal = signed_in
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
        self.remember(credentials, principal)
        record = current_record()
        if record is not None:
            record.principal = describe(principal)
        gathered = orjson.loads(found) if isinstance(found, str | bytes) else found
        return operation.transform(sql.gathered_roots(operation.plan, gathered), arguments)

    def remember(self, credentials: Credentials, principal: Principal) -> None:
        """The caller these credentials named, for their next read (see CALLERS_KEPT)."""
        self.callers[credentials] = principal
        self.callers.move_to_end(credentials)
        if len(self.callers) > CALLERS_KEPT:
            self.callers.popitem(last=False)

    async def _signed_in_first(
        self,
        driver: Driver,
        operation: CompiledOperation,
        arguments: list[sql.RootArguments],
        credentials: Credentials,
        signin: Select[Any],
        params: dict[str, Any],
        now: Any,
        budget: sql.Budget | None,
    ) -> tuple[Any, Principal] | None:
        """Sign in, then read for the caller found, in one read-only transaction: the answer
        and the caller (None when the credentials name nobody)."""
        authenticator = self.services.authenticator
        auth = self.auth["person" if signin is authenticator.person else "key"]
        await driver.command("BEGIN READ ONLY" if driver.postgresql else "BEGIN")
        try:
            rows = await driver.fetch(auth.sql, auth.arguments(params))
            principal = authenticator.principal(credentials, rows, now)
            if isinstance(principal, AuthFailure):
                self.callers.pop(credentials, None)
                return None
            await authenticator.used(principal, rows, now)
            try:
                statement = operation.statement(
                    self.services.policies,
                    principal,
                    self.dialect,
                    arguments,
                    budget=budget,
                    fragments=self.fragments,
                )
            except sql.OverBudget:
                # Known now: the caller's next request finds its statement's fate before
                # taking a connection.
                self.remember(credentials, principal)
                raise
            values = sql.request_values(operation.plan, principal, now, arguments)
            found = await driver.fetch(statement.sql, statement.arguments(values))
        finally:
            await driver.command("COMMIT")
        return found[0][0], principal


class Driver:
    """A pooled connection's own driver (asyncpg or aiosqlite), as the compiled path runs its
    statements on it; on SQLite each statement runs under the connection's Deadline."""

    def __init__(
        self, connection: Any, postgresql: bool, info: dict[str, Any], engine: object
    ) -> None:
        self.connection = connection
        self.engine = engine  # whose statements these are, for the count
        self.postgresql = postgresql
        self.deadline: Deadline | None = info.get(DEADLINE)

    async def command(self, command: str) -> None:
        if self.postgresql:
            await self.connection.execute(command)
        else:
            await (await self.connection.execute(command)).close()

    async def fetch(self, statement: str, args: list[Any]) -> list[Any]:
        statement_ran(statement, self.engine)
        if self.postgresql:
            return list(await self.connection.fetch(statement, *args))
        if self.deadline is not None:
            self.deadline.start()
        try:
            cursor = await self.connection.execute(statement, args)
            try:
                return list(await cursor.fetchall())
            finally:
                await cursor.close()
        finally:
            if self.deadline is not None:
                self.deadline.stop()


# What SQLite answers for a statement deeper or wider than it parses: the same every time.
TOO_DEEP = ("parser stack overflow", "too many arguments on function", "expression tree is too")


def too_deep(exc: BaseException) -> bool:
    message = str(exc).lower()  # "Expression tree is too large …"
    return isinstance(exc, sqlite3.OperationalError) and any(m in message for m in TOO_DEEP)


def refusal(error: OperationError, cost: int) -> bytes:
    """One top-level error for the whole operation, as the standard executor answers it."""
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
