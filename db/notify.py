"""Telling subscribers that changes committed: the channel PostgreSQL notifies on, and, for a
database only one process writes (SQLite), the same news within the process."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("caseload.db")

# PostgreSQL's NOTIFY channel; the payload is the position just committed (resolvers/changes.py).
CHANNEL = "caseload_changes"

_local: dict[str, list[Callable[[], None]]] = {}


def listen(database: str, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` after each commit of changes to `database` (its URL) in this process;
    returns the function that stops it."""
    _local.setdefault(database, []).append(callback)

    def stop() -> None:
        callbacks = _local.get(database, [])
        if callback in callbacks:
            callbacks.remove(callback)

    return stop


def committed(database: str) -> None:
    """Changes to `database` have just committed in this process."""
    for callback in list(_local.get(database, ())):
        try:
            callback()
        except Exception as exc:  # a listener's failure is never the committer's
            log.warning("a commit listener failed", exc_info=exc)
