"""A real `caseload serve` process on a free port of 127.0.0.1, for tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def _ports(spec: str) -> range:
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


def _share(ports: range, worker: str | None, workers: int) -> range:
    """A pytest-xdist worker's own slice of the ports (gw0 the first), so that two workers
    never pick the same free port at once; the whole range without xdist."""
    if worker is None or workers <= 1:
        return ports
    index, size = int(worker.removeprefix("gw")), len(ports) // workers
    if size == 0:
        raise RuntimeError(f"{len(ports)} test ports cannot be shared by {workers} workers")
    return range(ports.start + index * size, ports.start + (index + 1) * size)


# This project's ports on a shared machine; CASELOAD_TEST_PORTS=18500-18599 picks others.
PORTS = _share(
    _ports(os.environ.get("CASELOAD_TEST_PORTS", "18200-18299")),
    os.environ.get("PYTEST_XDIST_WORKER"),
    int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
)
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class Server:
    url: str
    port: int
    log: Path  # the process's stderr
    out: Path  # and its stdout
    pid: int = 0  # the server's process (one worker: uvicorn serves in it)
    process: subprocess.Popen[bytes] | None = None  # for tests that kill it

    def log_text(self) -> str:
        return self.log.read_text()


@contextmanager
def serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`python -m server serve ARGS --port P`, its data in `tmp`, until the block ends."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASELOAD_")} | {
        "CASELOAD_DATA_DIR": str(tmp / "data"),
        **(env or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log, out = tmp / "server.err", tmp / "server.out"
    with log.open("w") as err_file, out.open("w") as out_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port), *args],
            cwd=tmp,
            env=environment,
            stdout=out_file,
            stderr=err_file,
        )
    server = Server(f"http://127.0.0.1:{port}", port, log, out, process.pid, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
