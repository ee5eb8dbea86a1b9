"""Subscriptions in the proof: every principal of a world subscribed at once, each over its own
websocket to the app (graphql-transport-ws, in process), replaying the outbox from its start.

Each principal must receive exactly the changes the reference model says it sees (DESIGN.md,
Reads, row "changes"), in commit order, each change's subject read under its own scopes at
delivery as `node(id:)` shows it (SUBJECT: its id and some nested lists). All subscribe before the
hub wakes, so one wake reads for all of them together: its groups (one read per principal,
filter and place) must keep every principal's reads apart. A deactivated membership's
credentials are refused in `connection_init` (4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from resolvers import changes
from resolvers.pagination import encode_cursor
from tests.authz.checks import (
    Check,
    Problems,
    caller_for,
    describe,
    expected_node,
    shape_of,
)
from tests.authz.model import Model
from tests.authz.world import Facts, Who
from tests.helpers import Api, gid

PROTOCOL = "graphql-transport-ws"
# Each subject's id, and on the kinds with lists of their own one or two of them, read under
# the subscriber's scopes at delivery (node(id:)'s whole fragment costs more than the check
# gains: the nested paths are node(id:)'s, checked for every principal by check_nodes).
SUBJECT = """
fragment S on Node {
  __typename id
  ... on Learner { records { id } allocations { id } }
  ... on ApprenticeRecord { assignments { id } evidence { id } }
  ... on Course { pool { seatsTotal } }
}"""
SUBJECT_KEYS = {
    "Learner": {"records", "allocations"},
    "ApprenticeRecord": {"assignments", "evidence"},
    "Course": {"pool"},
}
SUBSCRIPTION = (
    "subscription Follow($after: String) { changes(after: $after) { cursor subject { ...S } } }"
    + SUBJECT
)
FORBIDDEN_CLOSE = 4403
# Longest wait for one message of a subscriber that has not received all it should.
PATIENCE_SECONDS = 10.0

Message = MutableMapping[str, Any]
Asgi = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Coroutine[Any, Any, None],
]


class Socket:
    """One websocket to an ASGI app, in process: what a client sends goes to the app's
    `receive`, what the app sends comes back as text frames or a close."""

    def __init__(self, app: Asgi) -> None:
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        scope: Message = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"caseload.test"),
                (b"sec-websocket-protocol", PROTOCOL.encode()),
            ],
            "subprotocols": [PROTOCOL],
            "client": ("127.0.0.1", 40000),
            "server": ("caseload.test", 80),
            "state": {},
        }
        self.to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self.to_app.get, self.from_app.put))
        self.closed: int | None = None

    async def open(self, payload: dict[str, str]) -> Message:
        """Accepted, then `connection_init`: the server's answer (ack, or the close)."""
        accepted = await self.next(PATIENCE_SECONDS)
        if accepted is None or accepted.get("type") != "websocket.accept":
            return {"type": "refused", "message": accepted}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.message(PATIENCE_SECONDS) or {"type": "silent"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def next(self, seconds: float) -> Message | None:
        try:
            return await asyncio.wait_for(self.from_app.get(), seconds)
        except TimeoutError:
            return None

    async def message(self, seconds: float) -> Message | None:
        """The next protocol message (or {"type": "close", "code": …}); None after `seconds`."""
        sent = await self.next(seconds)
        if sent is None:
            return None
        if sent["type"] == "websocket.close":
            self.closed = int(sent.get("code", 1000))
            return {"type": "close", "code": self.closed}
        text = sent.get("text") or (sent.get("bytes") or b"").decode()
        parsed: Message = json.loads(text)
        return parsed

    async def close(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(self.task, PATIENCE_SECONDS)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def check_subscriptions(
    api: Api, app: Any, facts: Facts, model: Model, principals: list[Who], problems: Problems
) -> int:
    """Every principal subscribed at once from the outbox's start; returns the events checked."""
    start = encode_cursor(changes.TAG, [0, 0, facts.now])  # before the world's first change
    subscribed: dict[int, tuple[Check, Socket]] = {}
    checked = 0
    try:
        for n, who in enumerate(principals):
            check = Check(api, facts, model, who, problems)
            socket = Socket(app)
            payload = dict(caller_for(api, facts, who).headers)
            answer = await socket.open(payload)
            if not who.signs_in:
                if answer != {"type": "close", "code": FORBIDDEN_CLOSE}:
                    check.add("subscription of a deactivated membership", f"answered {answer}")
                await socket.close()
                continue
            if answer.get("type") != "connection_ack":
                check.add("subscription: connection_init", f"answered {answer}")
                await socket.close()
                continue
            await socket.send(
                {
                    "id": "changes",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"after": start}},
                }
            )
            subscribed[n] = (check, socket)
        for check, socket in subscribed.values():
            checked += await received_as_the_model_says(check, socket)
    finally:
        for _, socket in subscribed.values():
            await socket.close()
    return checked


async def received_as_the_model_says(check: Check, socket: Socket) -> int:
    expected = [(t, pk) for t, pk in check.model.changes(check.who)]
    got: list[dict[str, Any]] = []
    while len(got) < len(expected):
        message = await socket.message(PATIENCE_SECONDS)
        if message is None or message.get("type") != "next":
            check.add(
                "subscription: changes",
                f"after {len(got)} of {len(expected)} changes: {str(message)[:600]}",
            )
            return len(got)
        payload = message["payload"]
        if payload.get("errors"):
            check.add("subscription: changes", f"errors {payload['errors']}")
        got.append(payload["data"]["changes"]["subject"])
    # Whatever else comes once the replay is through is a change the principal may not see.
    extra = await socket.message(0.05)
    if extra is not None:
        check.add("subscription: changes", f"more than the model's changes: {str(extra)[:600]}")
    subjects = ["null" if x is None else x["id"] for x in got]
    ids = [gid(t, pk) for t, pk in expected]
    if subjects != ids:
        check.add(
            "subscription: changes",
            f"subjects {describe(subjects, 8)}, expected {describe(ids, 8)}; unexpected "
            f"{describe(sorted(set(subjects) - set(ids)))}, missing "
            f"{describe(sorted(set(ids) - set(subjects)))}",
        )
        return len(got)
    for (type_name, pk), subject in zip(expected, got, strict=True):
        assert subject is not None  # its id was compared
        node = expected_node(check, type_name, pk)
        keys = {"__typename", "id", *SUBJECT_KEYS.get(type_name, ())}
        want, answered = {k: v for k, v in node.items() if k in keys}, shape_of(subject)
        wrong = sorted(k for k in want.keys() | answered.keys() if want.get(k) != answered.get(k))
        if wrong:
            details = "; ".join(f"{k} {answered.get(k)!r}, expected {want.get(k)!r}" for k in wrong)
            check.add(f"subscription: subject {type_name}:{pk}", details)
    return len(got)
