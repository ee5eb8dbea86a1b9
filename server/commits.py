"""News of committed changes, for the parts of a process that follow the outbox: the
subscription hub (server/live.py) and the webhook sender (server/webhooks.py).

PostgreSQL: the committing transaction sends NOTIFY with its position (resolvers/changes.py),
delivered only if it commits; one connection per process LISTENs and tells every listener. Lost,
the connection is made again, and every listener is told (position unknown), so that what was
announced meanwhile is read. SQLite (one process writes): the committed transaction tells this
process itself (`db.notify.committed`).

The news only wakes a reader early: each reader still reads the outbox on its own schedule
(the hub's sweep, the sender's poll), so a notification lost costs latency, never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

from db import notify

log = logging.getLogger("caseload.live")

# Told the position just committed, or None when it is not known (read the outbox anyway).
Listener = Callable[[int | None], None]


class Commits:
    """This process's news of commits to one database."""

    def __init__(self, database_url: str, *, postgres: bool, local_key: str) -> None:
        """`local_key`: the engine URL's text, which SQLite's in-process news is keyed by."""
        self.database_url = database_url
        self.postgres = postgres
        self.local_key = local_key
        self.listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._stop_local: Callable[[], None] | None = None
        self.ready = asyncio.Event()  # set once commits are heard (PostgreSQL: LISTEN is on)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Tell `listener` of each commit from now on (in the running loop); returns the
        function that stops it."""
        self.listeners.append(listener)
        if self.postgres:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._listen())
        elif self._stop_local is None:
            self._stop_local = notify.listen(self.local_key, lambda: self._tell(None))
            self.ready.set()

        def stop() -> None:
            if listener in self.listeners:
                self.listeners.remove(listener)

        return stop

    async def aclose(self) -> None:
        self.listeners.clear()
        if self._stop_local is not None:
            self._stop_local()
            self._stop_local = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _tell(self, position: int | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(position)
            except Exception as exc:  # one listener's failure is never another's
                log.warning("a commit listener failed", exc_info=exc)

    def _announced(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            position: int | None = int(payload)
        except ValueError:
            position = None
        self._tell(position)

    async def _listen(self) -> None:
        url = make_url(self.database_url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(notify.CHANNEL, self._announced)
                self.ready.set()
                self._tell(None)
                await lost.wait()
                self.ready.clear()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("listening for commits failed; trying again", exc_info=exc)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            await asyncio.sleep(1)
