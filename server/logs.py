"""One log line per request, request ids, SQL statements counted per request, log formats.

Nothing here ever sees a credential: the access line is built from fields the app fills
in (principal as `kind:id`), never from headers or bodies.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies.principal import Principal
from resolvers.codes import ErrorCode
from server.http import error_response

access_log = logging.getLogger("caseload.access")
error_log = logging.getLogger("caseload.errors")

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass
class AccessRecord:
    """What one request did; filled in by the layers it passes through."""

    request_id: str
    method: str
    path: str
    status: int | None = None
    principal: str | None = None
    operation: str | None = None
    statements: int = 0
    outcome: str | None = None  # set when known early: error, client_disconnected
    codes: list[str] = field(default_factory=list)

    def line(self, duration_ms: float) -> dict[str, Any]:
        outcome = self.outcome
        if outcome is None:
            if self.status is not None and self.status >= 400:
                outcome = "http_error"
            else:
                outcome = "graphql_errors" if self.codes else "ok"
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "principal": self.principal,
            "operation": self.operation,
            "duration_ms": round(duration_ms, 2),
            "sql_statements": self.statements,
            "outcome": outcome,
            "codes": self.codes,
        }


_current: ContextVar[AccessRecord | None] = ContextVar("caseload_access", default=None)


def current_record() -> AccessRecord | None:
    return _current.get()


def _with_request_id(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Every record made while a request runs carries its id, whichever logger made it."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        current = _current.get()
        record.request_id = current.request_id if current is not None else None
        return record

    make.caseload = True  # type: ignore[attr-defined]
    return make


if not getattr(logging.getLogRecordFactory(), "caseload", False):
    logging.setLogRecordFactory(_with_request_id(logging.getLogRecordFactory()))


def request_id_from(header: str | None) -> str:
    """The client's X-Request-Id when it is sane (≤ 128 visible ASCII characters)."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class AccessLog:
    """Outermost middleware: request id in and out, one access line, no stack in any answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        record = AccessRecord(request_id_from(header), scope["method"], scope["path"])
        token = _current.set(record)
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, record.request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unexpected error in %s %s", record.method, record.path)
            record.outcome = "error"
            record.codes = [ErrorCode.INTERNAL_SERVER_ERROR]
            if record.status is None:
                await error_response(500, ErrorCode.INTERNAL_SERVER_ERROR, "Unexpected error.")(
                    scope, receive, send_with_id
                )
        finally:
            if record.status is None and record.outcome is None:
                record.outcome = "client_disconnected"
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s",
                    record.method,
                    record.path,
                    record.status,
                    extra={"access": record.line((time.perf_counter() - started) * 1000)},
                )
            _current.reset(token)


# Who else hears of each statement (the statement budgets' tests count through this).
statement_observers: list[Callable[[str, object], None]] = []


def statement_ran(statement: str, engine: object) -> None:
    """One SQL statement on `engine` (its sync Engine), on either read path, counted against
    the request that ran it."""
    record = _current.get()
    if record is not None:
        record.statements += 1
    for observe in statement_observers:
        observe(statement, engine)


def count_statements(engine: AsyncEngine) -> None:
    """Count every SQL statement SQLAlchemy runs on the engine (the compiled read path counts
    its own, on the driver, through the same `statement_ran`)."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(conn: Any, cursor: object, statement: str, *_: object) -> None:
        statement_ran(statement, conn.engine)


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access lines carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        else:
            line["message"] = record.getMessage()
            request_id = getattr(record, "request_id", None)
            if request_id is not None:
                line["request_id"] = request_id
        if record.exc_info:
            line["stack"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # text orjson cannot encode (a lone surrogate): json escapes it
            return json.dumps(line, default=str)


# A text record is one line, whatever a client puts into a path, a header or a message:
# control characters (C0, DEL, C1, U+2028/U+2029, and the bidirectional controls that reorder
# what a terminal shows) are written as backslash escapes, and a backslash as two, so that
# every value reads back exactly.
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Values with these are quoted, so that `key=value` pairs split one way only.
_NEEDS_QUOTES = re.compile(r"""[\s="']""")
# Stack lines are indented, so that none of them can pass for a record of its own.
_STACK_INDENT = "    "


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"


def _escape(text: str) -> str:
    """`text` with its backslashes and control characters written as backslash escapes."""
    return _UNSAFE.sub(_escape_char, text)


def _text_value(value: object) -> str:
    """One value of a `key=value` pair: escaped, and quoted where it could be misread."""
    text = _escape(",".join(map(str, value)) if isinstance(value, list) else str(value))
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


class TextFormatter(logging.Formatter):
    """`key=value` lines for people; each record is one line, a stack below it indented."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_time(record)} {record.levelname} {_escape(record.name)}"
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            fields = " ".join(
                f"{k}={_text_value(v)}" for k, v in access.items() if v not in (None, [])
            )
            text = f"{head} {fields}"
        else:
            request_id = getattr(record, "request_id", None)
            rid = f" request_id={_text_value(request_id)}" if request_id is not None else ""
            text = f"{head} {_escape(record.getMessage())}{rid}"
        if record.exc_info:
            stack = self.formatException(record.exc_info)
            text += "".join(f"\n{_STACK_INDENT}{_escape(line)}" for line in stack.split("\n"))
        return text


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for the server process and each worker (uvicorn applies it in both)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            # The access line above replaces uvicorn's own.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            # pycasbin prints the whole policy at INFO when it loads.
            "casbin": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }


def describe(principal: Principal) -> str:
    """How a principal appears in logs: `apikey:<id>` or `<kind>:<user id>`, never a credential."""
    if principal.api_key_id is not None:
        return f"apikey:{principal.api_key_id}"
    return f"{principal.kind.value.lower()}:{principal.user_id}"
