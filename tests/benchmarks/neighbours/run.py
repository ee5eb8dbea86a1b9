"""The run: database, people, one server, then the quiet, alone and attack phases."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import subprocess
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from db.engine import normalise_url
from tests.benchmarks.neighbours import load
from tests.benchmarks.neighbours.database import (
    PRESET,
    Cast,
    Watch,
    create_if_missing,
    engine_for,
    find_cast,
    is_seeded,
    using,
)
from tests.benchmarks.neighbours.load import (
    PAGE,
    Credentials,
    Tally,
    admin_documents,
    admin_searches,
    anonymous_bodies,
    anonymous_body,
    body,
    key_bursts,
    send,
    unseen_document,
    unseen_documents,
    victim,
)
from tests.benchmarks.neighbours.process import (
    Server,
    command,
    environment,
    free_port,
    machine_ticks,
)
from tests.benchmarks.neighbours.report import Alone, PhaseCost, Results, checks, table

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/caseload_bench_neighbours"
ALONE_LIMIT_SECONDS = 120.0  # an attack document alone is waited for this long at most
GRACE_SECONDS = 5.0  # after the attack, for answers already on their way
VICTIM_WARM_UP = 5


@dataclass(frozen=True)
class Config:
    database_url: str
    port: int
    out: Path
    quiet_seconds: float
    attack_seconds: float

    @classmethod
    def from_environment(cls) -> Config:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = os.environ.get("CASELOAD_BENCH_OUT")
        return cls(
            database_url=os.environ.get("CASELOAD_BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
            port=int(os.environ.get("CASELOAD_BENCH_PORT") or free_port()),
            out=Path(out) if out else ROOT / "var" / "bench-neighbours" / f"{stamp}.json",
            quiet_seconds=float(os.environ.get("CASELOAD_BENCH_QUIET_SECONDS") or 20),
            attack_seconds=float(os.environ.get("CASELOAD_BENCH_ATTACK_SECONDS") or 30),
        )


def main() -> int:
    config = Config.from_environment()
    results = asyncio.run(run(config))
    print(table(results))
    config.out.write_text(json.dumps(results.summary(), indent=2) + "\n")
    print(f"\nresults in {config.out}; the server's log in {results.server_log}")
    return 0 if all(check.passed for check in checks(results)) else 1


async def prepare_database(url: str, env: dict[str, str], cwd: Path) -> Cast:
    if await create_if_missing(url):
        print(f"created the database {make_url(url).database}")
    # Migrations first: the command line below (seeding, keys) uses the schema as it is now.
    print(command(env, cwd, "db", "upgrade"))
    if not await using(url, is_seeded):
        print(f"seeding the {PRESET} preset (100,000 learners), once for this database")
        print(command(env, cwd, "db", "seed", "--preset", PRESET))
    return await using(url, find_cast)


def mint(env: dict[str, str], cwd: Path, cast: Cast) -> Credentials:
    def token(email: str) -> str:
        return "Bearer " + command(env, cwd, "tokens", "mint", "--email", email)

    key = command(
        env, cwd, "apikeys", "create", "--org", cast.organisation, "--role", "ADMIN",
        "--name", "bench noisy neighbour",
    )  # fmt: skip
    return Credentials(
        victim=token(cast.victim),
        admin=token(cast.admin),
        api_key=f"ApiKey {key}",
        unseen=token(cast.unseen),
    )


def commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


async def run(config: Config) -> Results:
    work = config.out.parent
    work.mkdir(parents=True, exist_ok=True)
    log = config.out.with_suffix(".server.log")
    env = environment(config.database_url, secrets.token_urlsafe(48))
    cast = await prepare_database(config.database_url, env, work)
    credentials = mint(env, work, cast)
    results = Results(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=commit(),
        database=make_url(normalise_url(config.database_url)).render_as_string(hide_password=True),
        server_log=str(log),
        cast=cast,
        settings={
            "quiet_seconds": config.quiet_seconds,
            "attack_seconds": config.attack_seconds,
            "victim_think_seconds": load.THINK_SECONDS,
            "admin_streams": load.ADMIN_STREAMS,
            "burst": load.BURST,
            "burst_pause_seconds": load.BURST_PAUSE_SECONDS,
            "unseen_streams": load.UNSEEN_STREAMS,
            "anonymous_streams": load.ANONYMOUS_STREAMS,
            "body_bytes": load.BODY_BYTES,
        },
    )
    engine = engine_for(config.database_url)
    try:
        with Server(env, work, log, config.port) as server:
            after_attack = await measure(server, Watch(engine), config, credentials, results)
        results.logged_after_attack = server.problems(after_attack, server.log_size())
        await Watch(engine).settle(0)  # what the stopped server's connections left running
    finally:
        await engine.dispose()
        command(env, work, "apikeys", "revoke", "--key", credentials.api_key.split()[1])
    return results


@contextmanager
def phase(server: Server, name: str, results: Results) -> Iterator[None]:
    wall, cpu, offset = time.monotonic(), server.cpu_seconds(), server.log_size()
    waited, load, (busy, ticks) = server.cpu_wait_seconds(), time.process_time(), machine_ticks()
    yield
    busy_after, ticks_after = machine_ticks()
    results.phases[name] = PhaseCost(
        wall_seconds=time.monotonic() - wall,
        cpu_seconds=server.cpu_seconds() - cpu,
        cpu_wait_seconds=server.cpu_wait_seconds() - waited,
        load_cpu_seconds=time.process_time() - load,
        machine_busy=(busy_after - busy) / max(1, ticks_after - ticks),
        problems=server.problems(offset, server.log_size()),
    )


async def measure(
    server: Server, watch: Watch, config: Config, credentials: Credentials, results: Results
) -> int:
    """The three phases, into `results`; returns where the server's log was when they ended."""
    url = server.url
    documents = admin_documents(await first_course(url, credentials.admin))
    numbers = itertools.count()
    await warm_up(url, credentials)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        await loop.run_in_executor(pool, int)  # the victim's process, started before any clock
        results.server_processes = len(server.processes())
        results.rss_mib["before"] = server.rss_mib()

        with phase(server, "quiet", results):
            results.quiet = await loop.run_in_executor(
                pool, victim, url, credentials.victim, config.quiet_seconds
            )

        with phase(server, "alone", results):
            for document, caller, authorization, content in [
                *((name, "admin", credentials.admin, body(d)) for name, d in documents.items()),
                ("page of 50", "API key", credentials.api_key, body(PAGE)),
                (
                    "never-seen 20-page document",
                    "senior",
                    credentials.unseen,
                    body(unseen_document(next(numbers))),
                ),
                ("anonymous 1 MB body", "nobody", None, anonymous_body(next(numbers))),
            ]:
                results.alone.append(
                    await alone(watch, url, document, caller, authorization, content)
                )

        with phase(server, "attack", results):
            sampler = Sampler(server, watch)
            under_attack = loop.run_in_executor(
                pool, victim, url, credentials.victim, config.attack_seconds
            )
            results.neighbours = await attack(
                url, credentials, list(documents.values()), numbers, config.attack_seconds
            )
            results.under_attack = await under_attack
            await sampler.stop(results)
        after_attack = server.log_size()
        results.cancelled_after_attack = await watch.settle(GRACE_SECONDS)
        results.rss_mib["after"] = server.rss_mib()
    return after_attack


async def first_course(url: str, authorization: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ courses(first: 1) { edges { node { id } } } }"},
            headers={"Authorization": authorization},
        )
    return str(response.json()["data"]["courses"]["edges"][0]["node"]["id"])


async def warm_up(url: str, credentials: Credentials) -> None:
    """Each credential signs in once, and the victim's page is planned, before any clock."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for authorization in (credentials.admin, credentials.api_key, credentials.unseen):
            await send(client, Tally(), body("{ viewer { roles } }"), authorization)
        for _ in range(VICTIM_WARM_UP):
            await send(client, Tally(), body(PAGE), credentials.victim)


async def alone(
    watch: Watch, url: str, document: str, caller: str, authorization: str | None, content: bytes
) -> Alone:
    async with httpx.AsyncClient(base_url=url, timeout=ALONE_LIMIT_SECONDS) as client:
        answer, statements = await watch.during(send(client, Tally(), content, authorization))
    cancelled = await watch.settle(1.0)
    return Alone(document, caller, answer, statements, cancelled)


class Sampler:
    """Twice a second until stopped: the server's RSS, and its database connections at work."""

    def __init__(self, server: Server, watch: Watch) -> None:
        self.server, self.watch = server, watch
        self.rss_mib = [server.rss_mib()]
        self.connections: list[tuple[int, int]] = []
        self.task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.rss_mib.append(self.server.rss_mib())
            self.connections.append(await self.watch.connections())
            await asyncio.sleep(0.5)

    async def stop(self, results: Results) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        results.rss_mib["peak"] = max([*self.rss_mib, self.server.rss_mib()])
        if self.connections:
            in_use = [n for n, _ in self.connections]
            running = [n for _, n in self.connections]
            results.connections = {"in_use": _spread(in_use), "running": _spread(running)}


def _spread(counts: list[int]) -> dict[str, float]:
    return {"mean": round(sum(counts) / len(counts), 1), "most": max(counts)}


async def attack(
    url: str,
    credentials: Credentials,
    documents: list[str],
    numbers: Iterator[int],
    seconds: float,
) -> dict[str, Tally]:
    """The four neighbours at once for `seconds`; what is unanswered a little later is dropped."""
    deadline = time.monotonic() + seconds
    tallies = {
        "1 admin, 30-alias counts": Tally(),
        "2 API key, bursts of 40": Tally(),
        "3 never-seen documents": Tally(),
        "4 anonymous 1 MB bodies": Tally(),
    }
    admin, key, unseen, anonymous = tallies.values()
    work: list[Coroutine[Any, Any, None]] = [
        admin_searches(url, credentials.admin, documents, deadline, admin),
        key_bursts(url, credentials.api_key, deadline, key),
        unseen_documents(url, credentials.unseen, numbers, deadline, unseen),
        anonymous_bodies(url, numbers, deadline, anonymous),
    ]
    tasks = [asyncio.create_task(w) for w in work]
    _, pending = await asyncio.wait(tasks, timeout=seconds + GRACE_SECONDS)
    for task in pending:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            raise outcome
    return tallies
