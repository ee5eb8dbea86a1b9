"""`caseload serve` as an operator runs it: worker processes, JSON logs, clients that vanish."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.servers import serve


def _log_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.alone
def test_two_workers_json_logs_and_a_vanishing_client(tmp_path: Path) -> None:
    env = {"CASELOAD_JWT_SECRET": TEST_SECRET, "CASELOAD_DB_POOL_SIZE": "3"}
    with serve(tmp_path, "--workers", "2", env=env) as server:
        for _ in range(6):
            response = httpx.post(
                f"{server.url}/graphql",
                json={"query": "{ viewer { roles } }"},
                headers={"Authorization": "Bearer not-a-token", "X-Request-Id": "serve-test"},
            )
            assert response.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
            assert response.headers["X-Request-Id"] == "serve-test"
        # A client that sends half a body and hangs up.
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"query": '
            )
            time.sleep(0.3)
        time.sleep(0.5)
        log = server.log_text()

    lines = _log_lines(log)  # every line the server wrote is JSON
    started = {
        line["message"] for line in lines if str(line.get("message")).startswith("Started server")
    }
    assert len(started) == 2, started  # two worker processes
    access = [line for line in lines if line["logger"] == "caseload.access"]
    assert sum(line["request_id"] == "serve-test" for line in access) == 6
    assert any(line["outcome"] == "client_disconnected" for line in access), access[-3:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    assert "not-a-token" not in log
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
