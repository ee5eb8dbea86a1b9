"""Subscriptions in the proof: every principal of a world subscribed at once, each over its own
websocket to the app (graphql-transport-ws, in process), replaying the outbox from its start.

Each principal must receive exactly the changes the reference model says it sees (DESIGN.md,
Reads, row "changes"), in commit order, each change's subject read under its own scopes at
delivery as `node(id:)` shows it (SUBJECT: its id and some nested lists). All subscribe before the
hub wakes, so one wake reads for all of them together: its groups (one read per principal,
filter and place) must keep every principal's reads apart. Then, live, an admin of each
organisation renames a learner (a mutation through the API, committed and announced as any
other): each subscriber receives exactly the renames whose learner the model lets it see. A
deactivated membership's credentials are refused in `connection_init` (4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
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
from tests.authz.model import ADMINS, Model
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


@dataclass
class Following:
    """Every principal of a world subscribed at once, each over its own websocket."""

    api: Api
    facts: Facts
    subscribed: list[tuple[Check, Socket]] = field(default_factory=list)
    checked: int = 0  # events compared

    async def live(self) -> int:
        """An admin of each organisation renames a learner: each subscriber receives exactly
        the renames the model lets it see. Renames change names: the world's last check."""
        renamed = await rename_learners(self.api, self.facts)
        for check, socket in self.subscribed:
            self.checked += await received_live(check, socket, renamed)
        return self.checked

    async def close(self) -> None:
        for _, socket in self.subscribed:
            await socket.close()


async def following_from_the_start(
    api: Api, app: Any, facts: Facts, model: Model, principals: list[Who], problems: Problems
) -> Following:
    """Every principal subscribed at once from the outbox's start, each having received what
    the model says (close it when done)."""
    start = encode_cursor(changes.TAG, [0, 0, facts.now])  # before the world's first change
    following = Following(api, facts)
    try:
        for who in principals:
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
            following.subscribed.append((check, socket))
        for check, socket in following.subscribed:
            following.checked += await received_as_the_model_says(check, socket)
    except BaseException:
        await following.close()
        raise
    return following


async def check_subscriptions(
    api: Api, app: Any, facts: Facts, model: Model, principals: list[Who], problems: Problems
) -> int:
    """The replay alone (no change made): returns the events compared."""
    following = await following_from_the_start(api, app, facts, model, principals, problems)
    await following.close()
    return following.checked


RENAME = """mutation($id: ID!, $name: String!) {
  updateLearner(input: {learnerId: $id, name: $name}) { __typename }
}"""


async def rename_learners(api: Api, facts: Facts) -> list[int]:
    """Each organisation's first learner without a sign-in renamed by an admin of it who signs
    in (a name alone: one change, to the learner). Each change joins `facts.changes`, last, as
    it committed, so the model's feed includes it."""
    admins: dict[int, Who] = {}
    for who in facts.principals():
        if who.kind == "STAFF" and who.signs_in and who.roles & ADMINS:
            admins.setdefault(who.organisation_id or 0, who)
    renamed: list[int] = []
    done: set[int] = set()
    for learner in facts.learners:
        admin = admins.get(learner.organisation_id)
        if learner.user_id is not None or learner.organisation_id in done or admin is None:
            continue
        answer = await caller_for(api, facts, admin)(
            RENAME, id=gid("Learner", learner.id), name=f"Renamed {learner.id}"
        )
        data = answer.data or {}
        assert (data.get("updateLearner") or {}).get("__typename") == "LearnerUpdated", answer.body
        facts.changes.append(("Learner", learner.id))
        renamed.append(learner.id)
        done.add(learner.organisation_id)
    return renamed


async def received_live(check: Check, socket: Socket, renamed: list[int]) -> int:
    """The renamed learners' changes, in order, that the model lets the principal see."""
    seen = set(check.model.changes(check.who))
    expected = [gid("Learner", pk) for pk in renamed if ("Learner", pk) in seen]
    got: list[str] = []
    while len(got) < len(expected):
        message = await socket.message(PATIENCE_SECONDS)
        if message is None or message.get("type") != "next":
            check.add("subscription: live changes", f"after {got}: {str(message)[:600]}")
            return len(got)
        subject = message["payload"]["data"]["changes"]["subject"]
        got.append("null" if subject is None else subject["id"])
    extra = await socket.message(0.05)
    if extra is not None:
        check.add("subscription: live changes", f"more than the model's: {str(extra)[:600]}")
    if got != expected:
        check.add("subscription: live changes", f"subjects {got}, expected {expected}")
    return len(got)


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
