"""One `caseload serve` process with default settings, and what it costs the machine."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Self

import httpx

# The virtual environment's command, next to the interpreter running the benchmark.
CASELOAD = str(Path(sys.executable).parent / "caseload")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERIOUS = ("WARNING", "ERROR", "CRITICAL")
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*: ")  # "module.Error: message" in a stack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(database_url: str, jwt_secret: str) -> dict[str, str]:
    """Default settings: nothing of the caller's CASELOAD_ variables but these two."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CASELOAD_")} | {
        "CASELOAD_DATABASE_URL": database_url,
        "CASELOAD_JWT_SECRET": jwt_secret,
    }


def command(env: dict[str, str], cwd: Path, *args: str) -> str:
    """`caseload ARGS`; its stdout. A failure stops the benchmark with its stderr."""
    done = subprocess.run(
        [CASELOAD, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"caseload {args[0]} {args[1]}: {done.stderr.strip()}")
    return done.stdout.strip()


def machine_ticks() -> tuple[int, int]:
    """Clock ticks of all cores since boot from /proc/stat: (busy, all)."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(n) for n in Path("/proc/stat").read_text().split()[1:9]
    )
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


class Server:
    """`caseload serve --port P`, its stderr in `log`; RSS and CPU summed over its workers."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [CASELOAD, "serve", "--port", str(port)],
                env=env,
                cwd=cwd,
                stdout=stderr,
                stderr=stderr,
            )

    def __enter__(self) -> Self:
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server was not ready in 60 s: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def processes(self) -> list[int]:
        return _descendants(self.process.pid)

    def rss_mib(self) -> float:
        kib = 0
        for pid in self.processes():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kib += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
                0,
            )
        return kib / 1024

    def cpu_seconds(self) -> float:
        """User and system time of the server's processes so far."""
        ticks = 0
        for pid in self.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICKS

    def cpu_wait_seconds(self) -> float:
        """Time the server's threads were ready to run but waited for a core so far."""
        waited = 0
        for pid in self.processes():
            for schedstat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
                try:
                    waited += int(schedstat.read_text().split()[1])  # nanoseconds
                except (OSError, IndexError, ValueError):
                    continue  # a thread that has just ended
        return waited / 1e9

    def log_size(self) -> int:
        return self.log.stat().st_size

    def problems(self, start: int, end: int) -> Counter[str]:
        """Warnings and errors logged between two offsets: level, logger, message, exception."""
        seen: Counter[str] = Counter()
        with self.log.open("rb") as log:
            log.seek(start)
            for raw in log.read(end - start).splitlines():
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # a stack's lines, or what uvicorn wrote before logging was set up
                if isinstance(record, dict) and record.get("level") in SERIOUS:
                    message = str(record.get("message", "")).splitlines()[0][:120]
                    raised = [
                        line
                        for line in str(record.get("stack", "")).splitlines()
                        if EXCEPTION_LINE.match(line)
                    ]
                    cause = f" ({raised[-1][:160]})" if raised else ""
                    seen[f"{record['level']} {record.get('logger')}: {message}{cause}"] += 1
        return seen
