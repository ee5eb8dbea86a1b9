"""Subscriptions (graphql-transport-ws on /graphql): real server processes and a websocket client.

On SQLite one process; on PostgreSQL two, a mutation in one and its event at a subscriber of
the other. Each principal receives exactly the changes the feed shows it; a rolled-back mutation
sends nothing; revoked, deactivated and expired credentials close the websocket; the caps hold.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select, update
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from db.base import utcnow
from db.models import ApiKey, Membership, MembershipRole, Organisation, User
from server.tokens import mint_token
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.factories import World
from tests.helpers import gid
from tests.servers import Server, serve

PROTOCOL = "graphql-transport-ws"
CHANGES = """subscription($filter: ChangeFilter, $after: String) {
  changes(filter: $filter, after: $after) {
    cursor action at subject { id ... on Learner { name } }
  }
}"""
FEED = """query($after: String) {
  changes(after: $after, first: 500) {
    edges { cursor node { action subject { id } } }
  }
}"""
UPDATE_LEARNER = """mutation($id: ID!, $name: String!) {
  updateLearner(input: {learnerId: $id, name: $name}) { __typename }
}"""
CREATE_LEARNER = """mutation($name: String!) {
  createLearner(input: {name: $name}) { __typename }
}"""
RECORD = """mutation($id: ID!) {
  createApprenticeRecord(input: {learnerId: $id, programme: "Adult Care Level 3"}) {
    __typename
  }
}"""
# A learner made, then a top-level FORBIDDEN: the whole operation rolls back.
ROLLED_BACK = """mutation {
  createLearner(input: {name: "Never"}) { __typename }
  createOrganisation(input: {name: "Nope", slug: "nope"}) { __typename }
}"""
IMPORT = """mutation {
  importLearners(input: {learners: [{name: "A"}, {name: "B"}]}) { __typename }
}"""
EVENT_WAIT = 15.0


def env_for(backend: Backend, **more: str) -> dict[str, str]:
    return {
        "CASELOAD_JWT_SECRET": TEST_SECRET,
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_SUBSCRIPTION_SWEEP_SECONDS": "1",
        **more,
    }


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/graphql"


class Subscriber:
    """One websocket, signed in, with its subscriptions' events."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, Any] = {}
        self.completed: set[str] = set()
        self.others: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.socket:
                message = json.loads(text)
                kind, key = message["type"], message.get("id", "")
                if kind == "next":
                    payload = message["payload"]
                    if "errors" in payload:
                        self.errors[key] = payload["errors"]
                    else:
                        self.events.setdefault(key, []).append(payload["data"]["changes"])
                elif kind == "error":
                    self.errors[key] = message["payload"]
                elif kind == "complete":
                    self.completed.add(key)
                else:
                    self.others.append(message)
                self.changed.set()
        except ConnectionClosed:
            pass
        self.changed.set()

    async def subscribe(self, key: str, query: str = CHANGES, **variables: Any) -> None:
        await self.send(key, {"query": query, "variables": variables})

    async def send(self, key: str, payload: dict[str, Any]) -> None:
        """Subscribe with this payload as it stands."""
        await self.socket.send(json.dumps({"id": key, "type": "subscribe", "payload": payload}))

    async def until(self, check: Any, within: float = EVENT_WAIT) -> None:
        try:
            async with asyncio.timeout(within):
                while not check():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"events {self.events}, errors {self.errors}, others {self.others}, "
                f"closed {self.socket.close_code} {self.socket.close_reason}"
            ) from None

    async def closed(self, within: float = EVENT_WAIT) -> tuple[int | None, str | None]:
        async with asyncio.timeout(within):
            await self.socket.wait_closed()
        return self.socket.close_code, self.socket.close_reason


@asynccontextmanager
async def connect(
    server: Server,
    authorization: str | None,
    *,
    ack: bool = True,
    more: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Subscriber]:
    """A websocket signed in with `authorization` (and `more` in connection_init's payload;
    `headers` on the handshake)."""
    async with websockets.connect(
        ws_url(server),
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        additional_headers=headers,
    ) as socket:
        payload = {} if authorization is None else {"Authorization": authorization}
        payload |= more or {}
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        if ack:
            answer = json.loads(await asyncio.wait_for(socket.recv(), EVENT_WAIT))
            assert answer["type"] == "connection_ack", answer
        subscriber = Subscriber(socket)
        try:
            yield subscriber
        finally:
            subscriber.reader.cancel()


async def post(server: Server, authorization: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{server.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": authorization},
        )
    body: dict[str, Any] = response.json()
    return body


def bearer(backend: Backend, user: User, org: Organisation | None, **kw: Any) -> str:
    token = mint_token(
        make_settings(backend.url), email=user.email, org=org.slug if org else None, **kw
    )
    return f"Bearer {token}"


async def started(subscriber: Subscriber) -> None:
    """Give a subscription time to start (its sign-in and first read run after the message is
    taken): a round trip, then a moment. Tests that must not miss a change subscribe with
    `after` instead, and do not depend on this."""
    await subscriber.socket.send(json.dumps({"type": "ping"}))
    await subscriber.until(lambda: any(m["type"] == "pong" for m in subscriber.others))
    await asyncio.sleep(1.0)


async def end_cursor(server: Server, authorization: str) -> str | None:
    """Where the reader's feed ends now."""
    feed = await post(server, authorization, "{ changes(first: 500) { pageInfo { endCursor } } }")
    cursor: str | None = feed["data"]["changes"]["pageInfo"]["endCursor"]
    return cursor


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_each_principal_receives_exactly_what_the_feed_shows_it(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org, other = await world.organisation(), await world.organisation()
    here, there = await world.location(org), await world.location(org)
    admin = await world.staff(org, "ADMIN")
    manager = await world.staff(org, "MANAGER", location=here)
    assessor = await world.staff(org, "ASSESSOR")
    external = await world.external_assessor()
    learner_user = await world.staff(org, "LEARNER")
    stranger = await world.staff(other, "ADMIN")
    mine = await world.learner(org, location=here, name="Mine")
    allocated = await world.learner(org, location=there, name="Allocated")
    own = await world.learner(org, location=there, name="Own", user=learner_user)
    far = await world.learner(org, location=there, name="Far")
    record = await world.record(mine)
    await world.assign(record, assessor)
    await world.allocate(allocated, external)
    await world.allocate(far, external, expires_at=utcnow() - timedelta(hours=1))  # expired
    principals = {
        "admin": bearer(backend, admin, org),
        "manager": bearer(backend, manager, org),
        "assessor": bearer(backend, assessor, org),
        "external": bearer(backend, external, None),
        "learner": bearer(backend, learner_user, org),
        "stranger": bearer(backend, stranger, other),
    }
    postgres = backend.name == "postgresql"
    async with AsyncExitStack() as stack:
        servers = [
            stack.enter_context(serve(tmp_path / name, env=env_for(backend)))
            for name in (("a", "b") if postgres else ("a",))
        ]
        listening, writing = servers[-1], servers[0]
        subscribers = {
            name: await stack.enter_async_context(connect(listening, authorization))
            for name, authorization in principals.items()
        }
        by_admin = principals["admin"]
        # Every subscription starts after this cursor, whenever it is registered.
        await post(writing, by_admin, UPDATE_LEARNER, id=gid("Learner", far.id), name="Far 1")
        start = await end_cursor(writing, by_admin)
        assert start is not None  # a cursor, not "from now": registration races the mutations
        for subscriber in subscribers.values():
            await subscriber.subscribe("1", after=start)
        for learner in (mine, allocated, own, far):
            await post(
                writing,
                by_admin,
                UPDATE_LEARNER,
                id=gid("Learner", learner.id),
                name=f"{learner.name} 2",
            )
        await post(writing, by_admin, RECORD, id=gid("Learner", mine.id))
        await post(writing, by_admin, RECORD, id=gid("Learner", far.id))
        await post(writing, by_admin, CREATE_LEARNER, name="New")
        rolled_back = await post(writing, by_admin, ROLLED_BACK)
        assert (
            rolled_back["data"] is None
            and rolled_back["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        )
        expected: dict[str, list[tuple[str, str]]] = {}
        for name, authorization in principals.items():
            feed = await post(writing, authorization, FEED, after=start)
            expected[name] = [
                (e["node"]["action"], e["node"]["subject"]["id"])
                for e in feed["data"]["changes"]["edges"]
            ]
        assert len(expected["admin"]) == 7
        assert expected["stranger"] == []
        assert 0 < len(expected["assessor"]) < len(expected["manager"]) < len(expected["admin"])
        assert 0 < len(expected["external"]) < len(expected["admin"])
        assert gid("Learner", far.id) not in [subject for _, subject in expected["external"]]
        for name, subscriber in subscribers.items():
            await subscriber.until(
                lambda s=subscriber, n=name: len(s.events.get("1", [])) >= len(expected[n])
            )
        await asyncio.sleep(1.5)  # nothing more comes: the rolled-back learner included
        for name, subscriber in subscribers.items():
            got = [(e["action"], e["subject"]["id"]) for e in subscriber.events.get("1", [])]
            assert got == expected[name], name
            assert not subscriber.errors, subscriber.errors
        # the subject is read when delivered, under the subscriber's scopes
        names = [e["subject"].get("name") for e in subscribers["admin"].events["1"]]
        assert "Mine 2" in names and "Never" not in names


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_resuming_after_a_cursor_replays_then_follows(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Resumed")
    authorization = bearer(backend, admin, org)
    with serve(tmp_path, env=env_for(backend)) as server:
        for n in range(3):
            await post(
                server, authorization, UPDATE_LEARNER, id=gid("Learner", learner.id), name=f"R{n}"
            )
        feed = (await post(server, authorization, FEED))["data"]["changes"]["edges"]
        async with connect(server, authorization) as subscriber:
            await subscriber.subscribe("1", after=feed[0]["cursor"])
            await subscriber.until(lambda: len(subscriber.events.get("1", [])) == 2)
            await post(
                server, authorization, UPDATE_LEARNER, id=gid("Learner", learner.id), name="Live"
            )
            await subscriber.until(lambda: len(subscriber.events.get("1", [])) == 3)
            events = subscriber.events["1"]
            assert [e["cursor"] for e in events[:2]] == [e["cursor"] for e in feed[1:]]
            assert events[2]["subject"]["name"] == "Live"
            # a filter narrows as the feed's does
            await subscriber.subscribe("2", filter={"actions": ["APPRENTICE_RECORD_CREATED"]})
            await started(subscriber)
            await post(
                server, authorization, UPDATE_LEARNER, id=gid("Learner", learner.id), name="X"
            )
            await post(server, authorization, RECORD, id=gid("Learner", learner.id))
            await subscriber.until(lambda: len(subscriber.events.get("2", [])) == 1)
            assert subscriber.events["2"][0]["action"] == "APPRENTICE_RECORD_CREATED"
            # a bad cursor is an error for that subscription, before anything is followed
            await subscriber.subscribe("3", after="nonsense")
            await subscriber.until(lambda: "3" in subscriber.errors)
            assert subscriber.errors["3"][0]["extensions"]["code"] == "INVALID"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_sign_in_and_the_credential_checked_on_every_event(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    leaving = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Watched")
    key_row, key = await world.usable_api_key(org, "ADMIN")
    by_admin = bearer(backend, admin, org)
    with serve(tmp_path, env=env_for(backend)) as server:
        # no credentials, bad ones: 4401
        async with connect(server, None, ack=False) as subscriber:
            assert (await subscriber.closed())[0] == 4401
        async with connect(server, "Bearer not-a-token", ack=False) as subscriber:
            assert (await subscriber.closed())[0] == 4401
        # subscriptions do not run over HTTP
        over_http = await post(server, by_admin, CHANGES)
        assert over_http["errors"][0]["extensions"]["code"] == "BAD_REQUEST", over_http
        # queries and mutations go over HTTP
        async with connect(server, by_admin) as subscriber:
            await subscriber.subscribe("q", query="{ viewer { roles } }")
            await subscriber.until(lambda: "q" in subscriber.errors)
            assert subscriber.errors["q"][0]["extensions"]["code"] == "BAD_REQUEST"
        # a key revoked while subscribed: closed with 4403 at the next change
        async with connect(server, f"ApiKey {key}") as subscriber:
            await subscriber.subscribe("1")
            await started(subscriber)
            async with world.maker() as session, session.begin():
                await session.execute(
                    update(ApiKey).where(ApiKey.id == key_row.id).values(revoked_at=utcnow())
                )
            await post(server, by_admin, UPDATE_LEARNER, id=gid("Learner", learner.id), name="K")
            assert (await subscriber.closed())[0] == 4403
        # a deactivated membership: 4403
        async with connect(server, bearer(backend, leaving, org)) as subscriber:
            await subscriber.subscribe("1")
            await started(subscriber)
            await world.deactivate(leaving, org)
            await post(server, by_admin, UPDATE_LEARNER, id=gid("Learner", learner.id), name="Now")
            assert (await subscriber.closed())[0] == 4403
        # a role narrowed while subscribed: the next changes are read under the new scopes
        narrowed = await world.staff(org, "ADMIN")
        assigned = await world.learner(org, name="Assigned")
        await world.assign(await world.record(assigned), narrowed)
        async with connect(server, bearer(backend, narrowed, org)) as subscriber:
            await subscriber.subscribe("1", after=await end_cursor(server, by_admin))
            await post(server, by_admin, UPDATE_LEARNER, id=gid("Learner", learner.id), name="A1")
            await subscriber.until(lambda: len(subscriber.events.get("1", [])) == 1)
            async with world.maker() as session, session.begin():
                membership = await session.scalar(
                    select(Membership.id).where(
                        Membership.user_id == narrowed.id, Membership.organisation_id == org.id
                    )
                )
                await session.execute(
                    update(MembershipRole)
                    .where(MembershipRole.membership_id == membership)
                    .values(role="ASSESSOR")
                )
            await post(server, by_admin, UPDATE_LEARNER, id=gid("Learner", learner.id), name="A2")
            await post(server, by_admin, UPDATE_LEARNER, id=gid("Learner", assigned.id), name="B")
            await subscriber.until(lambda: len(subscriber.events.get("1", [])) == 2)
            await asyncio.sleep(1.5)
            subjects = [e["subject"]["id"] for e in subscriber.events["1"]]
            assert subjects == [gid("Learner", learner.id), gid("Learner", assigned.id)]
        # a subscription passes the same limits as a query (here: aliases)
        async with connect(server, by_admin) as subscriber:
            aliased = " ".join(f"a{n}: action" for n in range(40))
            await subscriber.subscribe("many", query=f"subscription {{ changes {{ {aliased} }} }}")
            await subscriber.until(lambda: "many" in subscriber.errors)
            assert subscriber.errors["many"][0]["extensions"]["code"] == "MAX_ALIASES_EXCEEDED"
        # a token that expires while subscribed: 4401, within a sweep, changes or not
        short = bearer(backend, admin, org, ttl=timedelta(seconds=2))
        async with connect(server, short) as subscriber:
            await subscriber.subscribe("1")
            code, reason = await subscriber.closed(within=10)
            assert code == 4401 and reason is not None and "expired" in reason


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_token_without_an_organisation_names_it_like_the_http_header(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org, other = await world.organisation(), await world.organisation()
    person = await world.staff(org, "ADMIN")
    await world.staff(other, "ADMIN", user=person)
    learner = await world.learner(org, name="Here")
    elsewhere = await world.learner(other, name="There")
    unnamed = bearer(backend, person, None)  # no `org` claim: two organisations to choose from
    with serve(tmp_path, env=env_for(backend)) as server:
        # naming none: refused, as over HTTP without the header
        async with connect(server, unnamed, ack=False) as subscriber:
            assert (await subscriber.closed())[0] in (4401, 4403)
        async with (
            connect(server, unnamed, more={"X-Caseload-Organisation": org.slug}) as here,
            connect(server, unnamed, headers={"X-Caseload-Organisation": other.slug}) as there,
        ):
            for subscriber in (here, there):
                await subscriber.subscribe("1")
                await started(subscriber)
            for row, slug in ((learner, org.slug), (elsewhere, other.slug)):
                async with httpx.AsyncClient(timeout=30) as client:
                    answer = await client.post(
                        f"{server.url}/graphql",
                        json={
                            "query": UPDATE_LEARNER,
                            "variables": {"id": gid("Learner", row.id), "name": f"{slug} renamed"},
                        },
                        headers={"Authorization": unnamed, "X-Caseload-Organisation": slug},
                    )
                assert "errors" not in answer.json(), answer.json()
            # every event re-checks the credential with the organisation the connection named
            for subscriber, row in ((here, learner), (there, elsewhere)):
                await subscriber.until(lambda s=subscriber: len(s.events.get("1", [])) >= 1)
                assert [e["subject"]["id"] for e in subscriber.events["1"]] == [
                    gid("Learner", row.id)
                ]
                assert subscriber.socket.close_code is None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_with_trusted_documents_a_subscription_runs_only_by_id(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Watched")
    by_admin = bearer(backend, admin, org)
    trusted = tmp_path / "persisted-documents.json"
    trusted.write_text(json.dumps({"changes": CHANGES, "rename": UPDATE_LEARNER}))
    env = env_for(backend, CASELOAD_TRUSTED_DOCUMENTS=str(trusted))
    sha256 = hashlib.sha256(CHANGES.encode()).hexdigest()
    with serve(tmp_path / "server", env=env) as server:
        async with connect(server, by_admin) as subscriber:
            await subscriber.subscribe("text")  # the same document, sent as text
            await subscriber.send("unknown", {"documentId": "nope"})
            await subscriber.send("by-id", {"documentId": "changes", "variables": {}})
            persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
            await subscriber.send("by-hash", {"query": "", "extensions": persisted})
            await subscriber.until(lambda: {"text", "unknown"} <= set(subscriber.errors))
            codes = {k: v[0]["extensions"]["code"] for k, v in subscriber.errors.items()}
            assert codes == {
                "text": "PERSISTED_QUERY_ONLY",
                "unknown": "TRUSTED_DOCUMENT_NOT_FOUND",
            }
            await started(subscriber)
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.post(
                    f"{server.url}/graphql",
                    json={
                        "documentId": "rename",
                        "variables": {"id": gid("Learner", learner.id), "name": "Renamed"},
                    },
                    headers={"Authorization": by_admin},
                )
            assert "errors" not in answer.json(), answer.json()
            await subscriber.until(lambda: {"by-id", "by-hash"} <= set(subscriber.events))
            for key in ("by-id", "by-hash"):
                (event,) = subscriber.events[key]
                assert event["subject"] == {"id": gid("Learner", learner.id), "name": "Renamed"}
            assert set(subscriber.errors) == {"text", "unknown"}
            assert subscriber.socket.close_code is None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_document_sent_with_its_hash_registers_it_for_later_subscriptions(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    """Automatic persisted queries over the websocket: a hash alone is not found until a
    signed-in subscriber sends it with its document; then a subscription (and a POST, where
    the document is a query) may send the hash alone."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Watched")
    by_admin = bearer(backend, admin, org)
    sha256 = hashlib.sha256(CHANGES.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    with serve(tmp_path / "server", env=env_for(backend)) as server:
        async with connect(server, by_admin) as subscriber:
            # given a hash nobody registered: not found
            await subscriber.send("early", {"extensions": persisted})
            await subscriber.until(lambda: "early" in subscriber.errors)
            assert subscriber.errors["early"][0]["extensions"]["code"] == (
                "PERSISTED_QUERY_NOT_FOUND"
            )
            # when it comes with its document (a wrong hash registers nothing)
            wrong = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
            await subscriber.send("mismatch", {"query": CHANGES, "extensions": wrong})
            await subscriber.send("with-text", {"query": CHANGES, "extensions": persisted})
            await subscriber.until(lambda: "mismatch" in subscriber.errors)
            assert subscriber.errors["mismatch"][0]["extensions"]["code"] == (
                "PERSISTED_QUERY_HASH_MISMATCH"
            )
            # then the hash alone runs it
            await subscriber.send("by-hash", {"query": "", "extensions": persisted})
            await started(subscriber)
            renamed = await post(
                server,
                by_admin,
                UPDATE_LEARNER,
                id=gid("Learner", learner.id),
                name="Renamed",
            )
            assert "errors" not in renamed, renamed
            await subscriber.until(lambda: {"with-text", "by-hash"} <= set(subscriber.events))
            for key in ("with-text", "by-hash"):
                (event,) = subscriber.events[key]
                assert event["subject"] == {"id": gid("Learner", learner.id), "name": "Renamed"}
            assert set(subscriber.errors) == {"early", "mismatch"}


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_caps_hold(backend: Backend, world: World, tmp_path: Path) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    by_admin = bearer(backend, admin, org)
    env = env_for(
        backend,
        CASELOAD_SUBSCRIPTIONS_PER_CONNECTION="2",
        CASELOAD_SUBSCRIPTIONS_PER_CREDENTIAL="3",
        CASELOAD_SUBSCRIPTION_QUEUE="1",
        CASELOAD_SUBSCRIPTION_INIT_TIMEOUT_SECONDS="1",
    )
    with serve(tmp_path, env=env) as server:
        # per connection
        async with connect(server, by_admin) as subscriber:
            for key in ("1", "2", "3"):
                await subscriber.subscribe(key)
            await subscriber.until(lambda: "3" in subscriber.errors)
        # per credential, across connections
        async with connect(server, by_admin) as one, connect(server, by_admin) as two:
            for key in ("1", "2"):
                await one.subscribe(key)
            await started(one)
            await two.subscribe("1")
            await started(two)
            await two.subscribe("2")
            await two.until(lambda: "2" in two.errors)
            assert two.errors["2"][0]["extensions"]["code"] == "RATE_LIMITED"
        # a subscriber with more changes waiting than its queue holds: closed with 1013
        async with connect(server, by_admin) as subscriber:
            await subscriber.subscribe("1")
            await started(subscriber)
            imported = await post(
                server,
                by_admin,
                IMPORT,
            )
            assert "errors" not in imported, imported
            assert (await subscriber.closed())[0] == 1013
        # connection_init must come within its timeout
        async with websockets.connect(ws_url(server), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            async with asyncio.timeout(EVENT_WAIT):
                await socket.wait_closed()
            assert socket.close_code == 4408


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_reads_the_hub_keeps_are_bounded_in_bytes(backend: Backend) -> None:
    """One read is kept per principal and filter, stated at READ_BYTES each (its measured
    size must stay below that), and no more are kept than the budget holds."""
    import gc
    import tracemalloc

    from db.models import UserKind
    from policies.principal import Principal
    from policies.vocabulary import Role
    from server.app import create_app
    from server.live import READ_BYTES
    from server.services import Services

    budget = 40 * READ_BYTES
    services = Services.build(make_settings(backend.url, document_cache_bytes=4 * budget))
    try:
        hub = create_app(services=services).state.hub
        roles = [Role.ADMIN, Role.ASSESSOR, Role.MANAGER, Role.LEARNER]

        def principal(n: int) -> Principal:
            return Principal(
                1000 + n,
                UserKind.STAFF,
                frozenset({roles[n % 4]}),
                organisation_id=1,
                location_id=2,
                department_id=3,
            )

        hub._statement(principal(0), None)  # imports and caches warmed
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(1, 31):
                hub._statement(principal(n), None)
            gc.collect()
            measured = (tracemalloc.get_traced_memory()[0] - before) / 30
        finally:
            tracemalloc.stop()
        assert measured < READ_BYTES, measured
        for n in range(31, 200):
            hub._statement(principal(n), None)
        assert len(hub.statements) == 40
        assert hub.statements.size <= budget
    finally:
        await services.aclose()
