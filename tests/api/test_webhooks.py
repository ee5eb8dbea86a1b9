"""Webhooks: super admins manage endpoints; every committed change of the chosen actions reaches
a real receiver on 127.0.0.1, signed (Standard Webhooks), at least once, in commit order, with
retries, disabling, redelivery and address checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from db.models import AuditAction, AuditEvent, Change, WebhookEndpoint
from resolvers.webhooks import webhook_id
from server.tokens import mint_token
from server.webhooks import Sender
from tests.conftest import TEST_SECRET, AppFactory, Backend, make_settings
from tests.factories import World
from tests.helpers import Caller, assert_denied, assert_granted, gid
from tests.servers import Server, free_port, serve

OPEN = {"webhook_allow_http": True, "webhook_allow_private": True}

CREATE = """mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on WebhookEndpointCreated { secret endpoint { id url events description disabled
                                                     createdBy { id } } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
UPDATE = """mutation($input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(input: $input) {
    __typename
    ... on WebhookEndpointUpdated { unchanged endpoint { id url events description disabled
                                                        disabledAt disabledReason } }
    ... on Error { code message }
  }
}"""
DELETE = """mutation($id: ID!) {
  deleteWebhookEndpoint(input: {webhookEndpointId: $id}) {
    __typename
    ... on WebhookEndpointDeleted { webhookEndpointId }
    ... on Error { code message }
  }
}"""
ROTATE = """mutation($id: ID!) {
  rotateWebhookSecret(input: {webhookEndpointId: $id}) {
    __typename
    ... on WebhookSecretRotated { secret endpoint { id } }
    ... on Error { code message }
  }
}"""
REDELIVER = """mutation($id: ID!) {
  redeliverWebhook(input: {deliveryId: $id}) {
    __typename
    ... on WebhookRedelivered { unchanged delivery { id status attempts } }
    ... on Error { code message }
  }
}"""
ENDPOINTS = "{ webhookEndpoints { id url events disabled disabledReason } }"
DELIVERIES = """query($endpoint: ID, $status: WebhookDeliveryStatus) {
  webhookDeliveries(endpointId: $endpoint, status: $status) {
    edges { node { id webhookId status attempts responseStatus responseBody error
                   nextAttemptAt deliveredAt endpoint { id } } }
  }
}"""
LEARNER = """mutation($name: String!) {
  createLearner(input: {name: $name}) { ... on LearnerCreated { learner { id } } }
}"""
EVENTS = """{ auditEvents { edges { node { action subjectType subjectId details } } } }"""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP receiver on 127.0.0.1: records each request and answers `answers` in turn
    (then `status`); `hold` keeps every answer back until it is set."""

    port: int = 0
    status: int = 200
    answers: deque[int] = field(default_factory=deque)
    got: list[Received] = field(default_factory=list)
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection, one after the other, until the sender closes it."""
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (h.partition(":") for h in head[1:] if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.got.append(Received(headers, body, time.monotonic()))
                self.arrived.set()
                status = self.answers.popleft() if self.answers else self.status
                if self.hold is not None:
                    await self.hold.wait()
                answer = b"x" * 3000 if status >= 500 else b"thanks"
                writer.write(
                    f"HTTP/1.1 {status} S\r\ncontent-length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(port=free_port())
    server = await asyncio.start_server(found.handle, "127.0.0.1", found.port)
    try:
        yield found
    finally:
        server.close()


@pytest.fixture
async def senders(backend: Backend) -> AsyncIterator[Callable[..., Sender]]:
    made: list[Sender] = []

    def make(**overrides: object) -> Sender:
        sender = Sender(make_settings(backend.url, **{**OPEN, **overrides}), poll_seconds=0.05)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.aclose()


async def until(sender: Sender, done: Callable[[], bool], seconds: float = 15.0) -> None:
    """Drive the sender until `done()` (or fail after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        await sender.drain()
        if done():
            return
        assert time.monotonic() < deadline, "the sender did not get there in time"
        await asyncio.sleep(0.05)


async def endpoint_for(call: Caller, url: str, *events: str) -> tuple[str, str]:
    """A new endpoint's id and secret."""
    created = assert_granted(
        await call(CREATE, input={"url": url, "events": list(events) or ["LEARNER_CREATED"]}),
        "WebhookEndpointCreated",
    )
    return created["endpoint"]["id"], created["secret"]


async def deliveries(call: Caller, endpoint: str | None = None, **more: Any) -> list[Any]:
    page = (await call(DELIVERIES, endpoint=endpoint, **more)).ok()["webhookDeliveries"]
    return [e["node"] for e in page["edges"]]


# --- Endpoints ---------------------------------------------------------------------------


async def test_a_super_admin_manages_endpoints_and_the_secret_is_shown_once(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    call = api.as_(boss, org)

    created = assert_granted(
        await call(
            CREATE,
            input={
                "url": "http://127.0.0.1:9/hooks",
                "events": ["LEARNER_UPDATED", "LEARNER_CREATED", "LEARNER_CREATED"],
                "description": "  MIS  ",
            },
        ),
        "WebhookEndpointCreated",
    )
    endpoint, secret = created["endpoint"], created["secret"]
    assert secret.startswith("whsec_") and len(secret) >= 6 + 32
    assert endpoint["events"] == ["LEARNER_CREATED", "LEARNER_UPDATED"]
    assert endpoint["description"] == "MIS" and endpoint["disabled"] is False
    assert endpoint["createdBy"] == {"id": gid("User", boss.id)}
    listed = (await call(ENDPOINTS)).ok()["webhookEndpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert secret not in json.dumps(listed)

    changed = assert_granted(
        await call(
            UPDATE, input={"webhookEndpointId": endpoint["id"], "events": ["LEARNER_CREATED"]}
        ),
        "WebhookEndpointUpdated",
    )
    assert changed["endpoint"]["events"] == ["LEARNER_CREATED"] and not changed["unchanged"]
    again = assert_granted(
        await call(
            UPDATE, input={"webhookEndpointId": endpoint["id"], "events": ["LEARNER_CREATED"]}
        ),
        "WebhookEndpointUpdated",
    )
    assert again["unchanged"] is True
    off = assert_granted(
        await call(UPDATE, input={"webhookEndpointId": endpoint["id"], "enabled": False}),
        "WebhookEndpointUpdated",
    )
    assert off["endpoint"]["disabled"] and off["endpoint"]["disabledReason"]
    rotated = assert_granted(await call(ROTATE, id=endpoint["id"]), "WebhookSecretRotated")
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    async with backend.engine.connect() as conn:
        stored = (await conn.execute(select(WebhookEndpoint.secret))).scalar_one()
    assert stored == rotated["secret"]  # kept to sign with; shown only in the answer

    gone = assert_granted(await call(DELETE, id=endpoint["id"]), "WebhookEndpointDeleted")
    assert gone["webhookEndpointId"] == endpoint["id"]
    assert (await call(DELETE, id=endpoint["id"])).ok()["deleteWebhookEndpoint"]["code"] == (
        "NOT_FOUND"
    )
    actions = [e["node"]["action"] for e in (await call(EVENTS)).ok()["auditEvents"]["edges"]]
    assert actions == [
        "WEBHOOK_ENDPOINT_DELETED",
        "WEBHOOK_SECRET_ROTATED",
        "WEBHOOK_ENDPOINT_UPDATED",
        "WEBHOOK_ENDPOINT_UPDATED",
        "WEBHOOK_ENDPOINT_CREATED",
    ]
    assert secret not in json.dumps((await call(EVENTS)).ok())


async def test_only_super_admins_of_the_organisation_reach_endpoints(
    api_with: AppFactory, world: World
) -> None:
    api = await api_with(**OPEN)
    org, other = await world.organisation(), await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    elsewhere = api.as_(await world.staff(other, "SUPER_ADMIN"), other)
    endpoint, _ = await endpoint_for(boss, "http://127.0.0.1:9/hooks")

    for role in ("ADMIN", "MANAGER", "SENIOR_ASSESSOR", "ASSESSOR", "LEARNER"):
        call = api.as_(await world.staff(org, role), org)
        assert_denied(
            await call(CREATE, input={"url": "https://example.org", "events": ["LEARNER_CREATED"]})
        )
        assert_denied(await call(UPDATE, input={"webhookEndpointId": endpoint, "enabled": False}))
        assert_denied(await call(DELETE, id=endpoint))
        assert_denied(await call(ROTATE, id=endpoint))
        assert_denied(await call(REDELIVER, id=gid("WebhookDelivery", 1)))
        assert (await call(ENDPOINTS)).ok()["webhookEndpoints"] == []
        assert await deliveries(call) == []
        assert (await call("query($id: ID!) { node(id: $id) { id } }", id=endpoint)).ok() == {
            "node": None
        }
    support = api.as_(await world.support())
    assert_denied(
        await support(CREATE, input={"url": "https://example.org", "events": ["LEARNER_CREATED"]})
    )
    # Another organisation's super admin: the endpoint does not exist for them.
    assert (await elsewhere(ENDPOINTS)).ok()["webhookEndpoints"] == []
    for query, name in ((DELETE, "deleteWebhookEndpoint"), (ROTATE, "rotateWebhookSecret")):
        assert (await elsewhere(query, id=endpoint)).ok()[name]["code"] == "NOT_FOUND"
    made_up = gid("WebhookEndpoint", 10_000)
    assert (await elsewhere(ROTATE, id=made_up)).ok()["rotateWebhookSecret"]["code"] == "NOT_FOUND"


async def test_urls_must_be_https_and_reach_public_addresses(
    api_with: AppFactory, world: World
) -> None:
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    strict = (await api_with()).as_(boss, org)

    async def refused(call: Caller, url: str, events: list[str] | None = None) -> str:
        answer = await call(
            CREATE, input={"url": url, "events": ["LEARNER_CREATED"] if events is None else events}
        )
        result = answer.ok()["createWebhookEndpoint"]
        assert result["__typename"] == "ValidationError", (url, result)
        return str(result["message"])

    assert "https" in await refused(strict, "http://example.org/hooks")
    for url in (
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00:ec2::254]/",
        "https://10.1.2.3/",
        "https://192.168.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
    ):
        assert "refused" in await refused(strict, url), url
    for url in (
        "not a url",
        "https://",
        "https://user:pw@example.org/",
        "ftp://example.org/",
        "https://example.org:99999/",
    ):
        await refused(strict, url)
    assert "action" in await refused(strict, "https://example.org/", events=[])
    assert "resolve" in await refused(strict, "https://no-such-host.invalid/")
    # With both settings on (tests, closed networks), the receiver on 127.0.0.1 is accepted.
    relaxed = (await api_with(**OPEN)).as_(boss, org)
    await endpoint_for(relaxed, "http://127.0.0.1:9/hooks")


# --- Deliveries --------------------------------------------------------------------------


async def test_an_idle_sender_is_woken_by_a_commit_not_only_by_its_poll(
    api_with: AppFactory,
    world: World,
    receiver: Receiver,
    senders: Callable[..., Sender],
) -> None:
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    admin = api.as_(await world.staff(org, "ADMIN"), org)
    await endpoint_for(boss, receiver.url)
    sender = senders()
    sender.poll_seconds = 60.0  # only a commit can wake it within the test
    sender.start()
    await asyncio.wait_for(sender.commits.ready.wait(), 10)
    await asyncio.sleep(0.3)  # its first steps found nothing: it waits
    started = time.monotonic()
    (await admin(LEARNER, name="Woken Up")).ok()
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    assert time.monotonic() - started < 10
    assert receiver.got[0].json()["type"] == "LEARNER_CREATED"


async def test_changes_arrive_signed_once_each_in_commit_order(
    api_with: AppFactory, world: World, receiver: Receiver, senders: Callable[..., Sender]
) -> None:
    api = await api_with(**OPEN)
    org, other = await world.organisation(), await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    admin = api.as_(await world.staff(org, "ADMIN"), org)
    outsider = api.as_(await world.staff(other, "ADMIN"), other)
    endpoint, secret = await endpoint_for(boss, receiver.url, "LEARNER_CREATED")
    ids = []
    for n in range(5):
        ids.append(
            (await admin(LEARNER, name=f"Hooked {n}")).ok()["createLearner"]["learner"]["id"]
        )
        await outsider(LEARNER, name=f"Not theirs {n}")  # another organisation's: not sent
    await admin(  # an action it does not subscribe to: not sent
        'mutation($id: ID!) { updateLearner(input: {learnerId: $id, name: "Renamed"}) '
        "{ __typename } }",
        id=ids[0],
    )
    sender = senders()
    await until(sender, lambda: len(receiver.got) >= 5)
    await asyncio.sleep(0.2)
    await sender.drain()
    assert len(receiver.got) == 5

    verifier = Webhook(secret)  # the Standard Webhooks reference library
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.got]
    assert [b["data"]["subjectId"] for b in bodies] == ids  # commit order
    first = bodies[0]
    assert first["type"] == "LEARNER_CREATED"
    assert first["data"]["subjectType"] == "Learner"
    assert first["data"]["organisationId"] == gid("Organisation", org.id)
    assert set(first) == {"type", "timestamp", "data"}
    assert set(first["data"]) == {"changeCursor", "subjectType", "subjectId", "organisationId"}
    # The cursor is the feed's: reading on from it gives the next change.
    feed = (
        await boss(
            "query($after: String) { changes(after: $after, first: 1, filter: {actions: "
            "[LEARNER_CREATED]}) { edges { node { subject { id } } } } }",
            after=first["data"]["changeCursor"],
        )
    ).ok()
    assert feed["changes"]["edges"][0]["node"]["subject"]["id"] == ids[1]
    assert len({r.id for r in receiver.got}) == 5
    tampered = receiver.got[0]
    with pytest.raises(Exception, match="signature"):
        verifier.verify(tampered.body.replace(b"Learner", b"Licence"), tampered.headers)

    listed = await deliveries(boss, endpoint)
    assert len(listed) == 5 and {d["status"] for d in listed} == {"DELIVERED"}
    assert listed[0]["webhookId"] == receiver.got[-1].id  # newest first
    assert listed[0]["responseStatus"] == 200 and listed[0]["responseBody"] == "thanks"
    assert listed[0]["endpoint"] == {"id": endpoint} and listed[0]["nextAttemptAt"] is None


async def test_a_failing_receiver_gets_retries_with_the_same_id_then_the_endpoint_is_disabled(
    api_with: AppFactory, world: World, receiver: Receiver, senders: Callable[..., Sender]
) -> None:
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    endpoint, secret = await endpoint_for(boss, receiver.url)
    sender = senders(webhook_retry_schedule="0.3s,0.3s")

    # Two failures, then accepted: three tries of one delivery, one webhook-id.
    receiver.answers.extend([500, 503])
    await boss(LEARNER, name="Retried")
    await until(sender, lambda: len(receiver.got) >= 3)
    assert len({r.id for r in receiver.got}) == 1
    assert receiver.got[1].at - receiver.got[0].at >= 0.25  # waited as the schedule says
    for r in receiver.got:
        Webhook(secret).verify(r.body, r.headers)
    (delivered,) = await deliveries(boss, endpoint)
    assert delivered["status"] == "DELIVERED" and delivered["attempts"] == 3

    # Always failing: after the last retry the delivery FAILED and the endpoint is disabled.
    receiver.status = 500
    receiver.got.clear()
    await boss(LEARNER, name="Never accepted")
    await boss(LEARNER, name="Queued behind it")
    await until(sender, lambda: len(receiver.got) >= 3)
    await asyncio.sleep(0.5)
    await sender.drain()
    assert len(receiver.got) == 3 and len({r.id for r in receiver.got}) == 1  # in order: the
    # second change waits behind the first
    failed = await deliveries(boss, endpoint, status="FAILED")
    assert len(failed) == 1 and failed[0]["attempts"] == 3
    assert failed[0]["responseStatus"] == 500 and len(failed[0]["responseBody"]) == 1024
    (shown,) = (await boss(ENDPOINTS)).ok()["webhookEndpoints"]
    assert shown["disabled"] is True and "3 tries" in shown["disabledReason"]
    events = (await boss(EVENTS)).ok()["auditEvents"]["edges"]
    assert events[0]["node"]["action"] == "WEBHOOK_ENDPOINT_DISABLED"
    assert events[0]["node"]["subjectId"] == endpoint

    # Redelivered and enabled again: the failed change is sent again with the same id, then
    # the one queued behind it.
    receiver.status = 200
    redelivered = assert_granted(await boss(REDELIVER, id=failed[0]["id"]), "WebhookRedelivered")
    assert redelivered["delivery"]["status"] == "PENDING" and not redelivered["unchanged"]
    again = assert_granted(await boss(REDELIVER, id=failed[0]["id"]), "WebhookRedelivered")
    assert again["unchanged"] is True
    await sender.drain()
    assert len(receiver.got) == 3  # disabled: nothing is sent
    assert_granted(
        await boss(UPDATE, input={"webhookEndpointId": endpoint, "enabled": True}),
        "WebhookEndpointUpdated",
    )
    await until(sender, lambda: len(receiver.got) >= 5)
    assert receiver.got[3].id == receiver.got[0].id
    assert receiver.got[4].id != receiver.got[0].id
    assert {d["status"] for d in await deliveries(boss, endpoint)} == {"DELIVERED"}


async def test_each_send_checks_the_address_again(
    api_with: AppFactory,
    world: World,
    receiver: Receiver,
    senders: Callable[..., Sender],
    backend: Backend,
) -> None:
    """An endpoint accepted once is checked at every send: a sender that may not reach
    private addresses refuses it (as it would a name that resolved elsewhere by then)."""
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    endpoint, _ = await endpoint_for(boss, receiver.url)
    await boss(LEARNER, name="Refused at send")
    strict = senders(webhook_allow_private=False, webhook_retry_schedule="10s")
    await until(strict, lambda: True)
    await strict.drain()
    (pending,) = await deliveries(boss, endpoint)
    assert receiver.got == []
    assert pending["status"] == "PENDING" and pending["attempts"] == 1
    assert "loopback" in pending["error"] and pending["responseStatus"] is None
    async with backend.engine.connect() as conn:
        actions = (await conn.execute(select(AuditEvent.action))).scalars().all()
    assert "WEBHOOK_ENDPOINT_DISABLED" not in actions


async def test_a_slow_receiver_times_out_and_only_a_kilobyte_is_kept(
    api_with: AppFactory, world: World, receiver: Receiver, senders: Callable[..., Sender]
) -> None:
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    endpoint, _ = await endpoint_for(boss, receiver.url)
    receiver.hold = asyncio.Event()  # never answers
    await boss(LEARNER, name="Unanswered")
    sender = senders(webhook_retry_schedule="1h")
    started = time.monotonic()
    await sender.drain()
    assert 4.5 <= time.monotonic() - started < 8
    (pending,) = await deliveries(boss, endpoint)
    assert pending["attempts"] == 1 and "5 s" in pending["error"]
    receiver.hold.set()


# --- Two processes -------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_process_killed_mid_delivery_loses_no_change(
    backend: Backend, world: World, receiver: Receiver, tmp_path: Path
) -> None:
    """Two server processes on PostgreSQL: the one posting a delivery is killed before the
    receiver answers; the other posts it again, with the same `webhook-id`, and every change
    arrives."""
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    token = mint_token(make_settings(backend.url), email=boss.email, org=org.slug)
    env = {
        "CASELOAD_JWT_SECRET": TEST_SECRET,
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_WEBHOOK_ALLOW_HTTP": "true",
        "CASELOAD_WEBHOOK_ALLOW_PRIVATE": "true",
        "CASELOAD_WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s",
    }
    held = receiver.hold = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(server: Server, query: str, **variables: Any) -> Any:
            response = await client.post(
                f"{server.url}/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            body = response.json()
            assert response.status_code == 200 and "errors" not in body, body
            return body["data"]

        with serve(tmp_path / "a", env=env) as first:
            created = await post(
                first, CREATE, input={"url": receiver.url, "events": ["LEARNER_CREATED"]}
            )
            secret = created["createWebhookEndpoint"]["secret"]
            for n in range(3):
                await post(first, LEARNER, name=f"Before {n}")
            await asyncio.wait_for(receiver.arrived.wait(), 30)  # `first` is posting it
            with serve(tmp_path / "b", env=env) as second:
                assert first.process is not None
                first.process.send_signal(signal.SIGKILL)
                first.process.wait()
                receiver.hold = None
                held.set()
                for n in range(3):
                    await post(second, LEARNER, name=f"After {n}")
                deadline = time.monotonic() + 30
                while len({r.id for r in receiver.got}) < 6:
                    assert time.monotonic() < deadline, [r.id for r in receiver.got]
                    await asyncio.sleep(0.1)
    async with backend.engine.connect() as conn:
        committed = (
            (
                await conn.execute(
                    select(Change.id)
                    .where(Change.action == AuditAction.LEARNER_CREATED)
                    .order_by(Change.position, Change.id)
                )
            )
            .scalars()
            .all()
        )
    ids = [r.id for r in receiver.got]
    assert len(committed) == 6
    assert ids[0] == ids[1] == webhook_id(committed[0])  # posted again, the same id
    distinct = list(dict.fromkeys(ids))
    assert distinct == [webhook_id(c) for c in committed]  # none lost, in commit order
    for r in receiver.got:
        Webhook(secret).verify(r.body, r.headers)


async def test_caseload_worker_sends_alone_and_stops_cleanly(
    api_with: AppFactory, world: World, receiver: Receiver, backend: Backend, tmp_path: Path
) -> None:
    api = await api_with(**OPEN)
    org = await world.organisation()
    boss = api.as_(await world.staff(org, "SUPER_ADMIN"), org)
    _, secret = await endpoint_for(boss, receiver.url)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASELOAD_")} | {
        "CASELOAD_DATA_DIR": str(tmp_path),
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_WEBHOOK_ALLOW_HTTP": "true",
        "CASELOAD_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "worker", env=environment, stderr=asyncio.subprocess.PIPE
    )
    try:
        await boss(LEARNER, name="Sent by the worker")
        await asyncio.wait_for(receiver.arrived.wait(), 30)
        Webhook(secret).verify(receiver.got[0].body, receiver.got[0].headers)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    assert b"sending webhooks" in err


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_on_sqlite_one_process_sends_at_a_time(senders: Callable[..., Sender]) -> None:
    """Servers of one SQLite file (`--workers N`, or a worker beside them) send one at a
    time: the one holding the lock file beside the database; another takes over when it stops."""
    first, second = senders(), senders()
    assert first._take_lock()
    assert not second._take_lock()
    await first.aclose()
    assert second._take_lock()
