"""One access line per request with the fields an operator needs, and never a credential."""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import quote

import pytest

from server.logs import JsonFormatter, TextFormatter, log_config
from tests.api.test_auth import _api_key
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api

QUERY = "query Caseload { viewer { roles } learners(first: 5) { totalCount } }"
# A whole access line, as a client would smuggle it into a field of its own request.
FORGED = (
    "2026-11-30T15:21:43.316+00:00 INFO caseload.access request_id=forged method=POST "
    "path=/graphql status=200 principal=support:1 operation=Caseload outcome=ok"
)
_STARTS_A_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 ")
_TEXT_FIELD = re.compile(r' ([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')
_ESCAPE = re.compile(r'\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt"\\])')


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.access for r in caplog.records if r.name == "caseload.access"]  # type: ignore[attr-defined]


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as both formats would write it."""
    json_format, text_format = JsonFormatter(), TextFormatter()
    return "\n".join(f"{json_format.format(r)}\n{text_format.format(r)}" for r in caplog.records)


def _unescape(text: str) -> str:
    named = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    return _ESCAPE.sub(
        lambda m: named.get(m[0][1]) or chr(int(m[0][2:], 16)),
        text[1:-1] if text.startswith('"') else text,
    )


def _text_fields(line: str) -> dict[str, str]:
    """A text access line read back as a key=value reader would, every value unescaped."""
    head = re.match(r"\S+ INFO caseload\.access", line)
    assert head is not None, line
    rest = line[head.end() :]
    pairs = _TEXT_FIELD.findall(rest)
    assert "".join(f" {k}={v}" for k, v in pairs) == rest, f"not key=value throughout: {rest!r}"
    return {key: _unescape(value) for key, value in pairs}


def _one_text_line(record: logging.LogRecord) -> str:
    """The record as the text format writes it, checked to be one line however it is read."""
    text = TextFormatter().format(record)
    assert text.splitlines() == [text], text  # also \r, \v, \f, \x1c-\x1e, \x85, U+2028/9
    assert text.isprintable(), text  # no terminal escapes, no other control characters
    return text


async def test_one_json_line_per_request_with_its_fields(
    api: Api, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    token = api.token(admin, org)
    caplog.set_level(logging.INFO, logger="caseload.access")
    response = await api.client.post(
        "/graphql",
        json={"query": QUERY},
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "trace-1"},
    )
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-1"
    (record,) = [r for r in caplog.records if r.name == "caseload.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line.pop("time").endswith("+00:00")
    duration = line.pop("duration_ms")
    assert isinstance(duration, float) and duration > 0
    statements = line.pop("sql_statements")
    assert 3 <= statements <= 12, statements  # authentication, then the two root fields
    assert line == {
        "level": "INFO",
        "logger": "caseload.access",
        "request_id": "trace-1",
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "principal": f"staff:{admin.id}",
        "operation": "Caseload",
        "outcome": "ok",
        "codes": [],
    }
    assert token not in _everything_logged(caplog)


async def test_outcomes_codes_and_principals(
    api: Api, world: World, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    key = await _api_key(backend, world, "ADMIN")
    caplog.set_level(logging.INFO, logger="caseload.access")
    await api.post("{ viewer { roles } }", headers={"Authorization": f"ApiKey {key}"})
    await api.post(
        'mutation Nope { createOrganisation(input: {name: "x", slug: "x"}) { __typename } }',
        headers={"Authorization": f"ApiKey {key}"},
    )
    await api.post("{ viewer { roles } }", headers={"Authorization": "Bearer forged"})
    await api.client.get("/readyz")
    first, forbidden, unauthenticated, ready = _lines(caplog)
    assert first["principal"].startswith("apikey:") and first["outcome"] == "ok"
    assert (forbidden["operation"], forbidden["outcome"], forbidden["codes"]) == (
        "Nope",
        "graphql_errors",
        ["FORBIDDEN"],
    )
    assert unauthenticated["principal"] is None
    assert unauthenticated["codes"] == ["UNAUTHENTICATED"]
    assert ready["path"] == "/readyz" and ready["sql_statements"] >= 1
    assert key not in _everything_logged(caplog)
    assert key.split("_", 2)[2] not in _everything_logged(caplog)


async def test_unexpected_errors_are_logged_with_their_stack_never_answered(
    api: Api, world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resolvers.people

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    token = api.token(admin, org)

    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(resolvers.people, "viewer", explode)
    caplog.set_level(logging.INFO)
    result = await api.post("{ viewer { roles } }", headers={"Authorization": f"Bearer {token}"})
    assert result.errors[0]["message"] == "Unexpected error."
    assert "Traceback" not in json.dumps(result.body)
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    logged = json.loads(JsonFormatter().format(error))
    assert "resolver exploded" in logged["stack"] and "Traceback" in logged["stack"]
    assert logged["request_id"] == _lines(caplog)[0]["request_id"]
    assert _lines(caplog)[0]["codes"] == ["INTERNAL_SERVER_ERROR"]
    assert token not in _everything_logged(caplog)


async def test_errors_outside_graphql_answer_500_json_and_log_the_stack(
    api: Api, world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    token = api.token(admin, org)
    services = api.client._transport.app.state.services  # type: ignore[attr-defined]

    async def broken(header: str | None, now: object, organisation: object = None) -> None:
        raise RuntimeError("authenticator exploded")

    monkeypatch.setattr(services.authenticator, "read", broken)
    caplog.set_level(logging.INFO)
    response = await api.client.post(
        "/graphql",
        json={"query": "{ viewer { roles } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            {"message": "Unexpected error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        ]
    }
    assert response.headers["X-Request-Id"]
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "authenticator exploded" in JsonFormatter().format(error)
    (line,) = _lines(caplog)
    assert (line["status"], line["outcome"]) == (500, "error")
    assert token not in _everything_logged(caplog)


async def test_text_format_and_levels(api_with: AppFactory) -> None:
    config = log_config("WARNING", "text")
    assert config["root"]["level"] == "WARNING"
    assert config["formatters"]["default"]["()"] == "server.logs.TextFormatter"
    assert log_config("INFO", "json")["formatters"]["default"]["()"] == "server.logs.JsonFormatter"
    api = await api_with(log_level="debug", log_format="text")
    assert (api.settings.log_level, api.settings.log_format) == ("DEBUG", "text")
    with pytest.raises(ValueError, match="log_format"):
        await api_with(log_format="xml")
    record = logging.LogRecord("caseload.access", logging.INFO, "", 0, "x", None, None)
    record.access = {"request_id": "r1", "status": 200, "principal": None, "codes": []}
    assert TextFormatter().format(record).endswith("INFO caseload.access request_id=r1 status=200")


async def test_a_path_cannot_write_a_text_line_of_its_own(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    path = f'/graphql\r\n{FORGED}\n\x00\x1b[2J\t\x7f\x85\u2028\u2029 "quoted" a=b \\n'
    caplog.set_level(logging.INFO, logger="caseload.access")
    response = await api.client.get(quote(path))  # ASGI hands the path on percent-decoded
    assert response.status_code == 404
    (record,) = [r for r in caplog.records if r.name == "caseload.access"]
    assert record.access["path"] == path  # type: ignore[attr-defined]
    fields = _text_fields(_one_text_line(record))
    assert list(fields) == [
        "request_id",
        "method",
        "path",
        "status",
        "duration_ms",
        "sql_statements",
        "outcome",
        "codes",
    ]
    assert (fields["path"], fields["status"], fields["codes"]) == (path, "404", "NOT_FOUND")


async def test_operation_names_request_ids_and_clients_are_escaped_in_text_lines(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    operation = f"Caseload\n{FORGED}\r\t\u2028"
    request_id = 'trace"1=a\\b'
    caplog.set_level(logging.INFO, logger="caseload.access")
    response = await api.client.post(
        "/graphql",
        json={"query": QUERY, "operationName": operation},
        headers={
            "X-Request-Id": request_id,
            "User-Agent": "agent\x1b[31m\x7f",
            "X-Caseload-Client": "client\x1b[2J",
        },
    )
    assert response.headers["X-Request-Id"] == request_id
    (record,) = [r for r in caplog.records if r.name == "caseload.access"]
    line = _one_text_line(record)
    assert 'request_id="trace\\"1=a\\\\b"' in line
    fields = _text_fields(line)
    # The log keeps an operation's first 100 characters.
    assert (fields["request_id"], fields["operation"]) == (request_id, operation[:100])
    assert (fields["path"], fields["status"]) == ("/graphql", "401")  # refused: no credentials


async def test_messages_and_stacks_cannot_forge_text_lines(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = api.client._transport.app.state.services  # type: ignore[attr-defined]

    async def broken(header: str | None, now: object, organisation: object = None) -> None:
        raise RuntimeError(f"could not read it\n{FORGED}\r{FORGED}\u2028{FORGED}")

    monkeypatch.setattr(services.authenticator, "read", broken)
    caplog.set_level(logging.INFO)
    response = await api.client.post(
        "/graphql",
        json={"query": QUERY},
        headers={"Authorization": "Bearer x", "X-Request-Id": "r"},
    )
    assert response.status_code == 500
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    text = TextFormatter().format(error)
    first, *stack = text.split("\n")
    assert text.splitlines() == [first, *stack], text
    assert first.endswith("ERROR caseload.errors unexpected error in POST /graphql request_id=r")
    assert stack and "RuntimeError: could not read it" in text
    for line in stack:  # indented: no stack line reads as a record of its own
        assert line.isprintable() and line[:1].isspace(), line
    assert sum(bool(_STARTS_A_RECORD.match(line)) for line in text.splitlines()) == 1

    said = logging.LogRecord(
        "caseload.server", logging.WARNING, "", 0, "client said %s", (f"hi\n{FORGED}",), None
    )
    said.request_id = 'a b"c'
    line = _one_text_line(said)
    assert line.endswith(f'WARNING caseload.server client said hi\\n{FORGED} request_id="a b\\"c"')
