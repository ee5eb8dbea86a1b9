"""The change outbox and the `changes` feed (issue 22): one change per audit verb and object,
written with the mutation; nothing for a rollback or a repeat; read oldest first in commit
order, under the reader's scopes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from db.models import ApprenticeRecord, AuditAction, AuditEvent, Change
from resolvers.changes import changes_of, delete_expired
from resolvers.pagination import decode_cursor, encode_cursor
from server.app import create_app
from server.services import Services
from tests.api.test_oidc_organisations import REMOVE, SET
from tests.api.test_webhooks import OPEN, ROTATE, endpoint_for
from tests.cast import cast
from tests.conftest import AppFactory, Backend, make_settings
from tests.factories import World
from tests.helpers import Api, Caller, counting, gid

CREATE = """mutation($input: CreateLearnerInput!) { createLearner(input: $input) { __typename } }"""
IMPORT = """mutation($input: ImportLearnersInput!) {
  importLearners(input: $input) { __typename }
}"""
ARCHIVE = """mutation($id: ID!) {
  archiveApprenticeRecord(input: {recordId: $id}) {
    __typename ... on ApprenticeRecordArchived { unchanged }
  }
}"""
CREATE_THEN_FAIL = """mutation($first: CreateLearnerInput!, $second: UpdateLearnerInput!) {
  first: createLearner(input: $first) { __typename }
  second: updateLearner(input: $second) { __typename }
}"""


async def outbox(backend: Backend) -> list[tuple[Any, ...]]:
    async with backend.engine.connect() as conn:
        rows = await conn.execute(
            select(Change.action, Change.subject_type, Change.subject_id).order_by(
                Change.position, Change.id
            )
        )
        return [tuple(r) for r in rows]


async def test_each_change_writes_one_row_per_object_and_a_repeat_none(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    (await admin(CREATE, input={"name": "Ada Lovelace"})).ok()
    (await admin(IMPORT, input={"learners": [{"name": "Bo One"}, {"name": "Cy Two"}]})).ok()
    first = (await admin(ARCHIVE, id=gid("ApprenticeRecord", c.record.id))).ok()
    again = (await admin(ARCHIVE, id=gid("ApprenticeRecord", c.record.id))).ok()
    assert (
        first["archiveApprenticeRecord"]["unchanged"],
        again["archiveApprenticeRecord"]["unchanged"],
    ) == (False, True)

    rows = await outbox(backend)
    assert [(a, t) for a, t, _ in rows] == [
        (AuditAction.LEARNER_CREATED, "Learner"),
        (AuditAction.LEARNERS_IMPORTED, "Learner"),  # one per learner imported
        (AuditAction.LEARNERS_IMPORTED, "Learner"),
        (AuditAction.APPRENTICE_RECORD_ARCHIVED, "ApprenticeRecord"),  # the repeat: none
    ]
    assert rows[-1][2] == c.record.id
    assert len({pk for _, _, pk in rows[:3]}) == 3


AUDIT = """query { auditEvents(first: 10) { edges { node { id action client userAgent } } } }"""


async def test_each_change_points_at_the_audit_event_the_trail_shows(
    api: Api, world: World, backend: Backend
) -> None:
    """One record: the trail lists each audit event once (a bulk action's too), and every
    change the feed lists is one of its objects, pointing at that event (its client, its user
    agent, its full details)."""
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    (await admin(CREATE, input={"name": "Ada Lovelace"})).ok()
    (await admin(IMPORT, input={"learners": [{"name": "Bo One"}, {"name": "Cy Two"}]})).ok()
    (await admin(ARCHIVE, id=gid("ApprenticeRecord", c.record.id))).ok()

    trail = [e["node"] for e in (await admin(AUDIT)).ok()["auditEvents"]["edges"]]
    async with backend.engine.connect() as conn:
        linked = list(
            await conn.execute(
                select(AuditEvent.id, Change.action, AuditEvent.action, Change.at, AuditEvent.at)
                .join_from(Change, AuditEvent, Change.audit_event_id == AuditEvent.id)
                .order_by(Change.position, Change.id)
            )
        )
        unlinked = await conn.scalar(
            select(func.count()).select_from(Change).where(Change.audit_event_id.is_(None))
        )
    assert unlinked == 0
    assert all(a == b and at == at_event for _, a, b, at, at_event in linked)
    by_event = [gid("AuditEvent", pk) for pk, *_ in linked]
    assert [e["id"] for e in reversed(trail)] == list(dict.fromkeys(by_event))
    imported = next(e for e in trail if e["action"] == "LEARNERS_IMPORTED")
    assert by_event.count(imported["id"]) == 2  # one event, a change per learner
    assert imported["client"] == "jwt" and imported["userAgent"] is not None


async def test_a_rolled_back_mutation_writes_no_change(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    # the learner also belongs elsewhere: renaming them is FORBIDDEN, a top-level error
    await world.staff(c.other, "ASSESSOR", user=c.people["LEARNER"])
    result = await admin(
        CREATE_THEN_FAIL,
        first={"name": "Never Committed"},
        second={"learnerId": gid("Learner", c.learner.id), "name": "Renamed"},
    )
    assert result.codes == ["FORBIDDEN"]
    assert await outbox(backend) == []


# Reading the feed ---------------------------------------------------------------------------

FEED = """query($after: String, $first: Int, $filter: ChangeFilter) {
  changes(after: $after, first: $first, filter: $filter) {
    edges { cursor node {
      action at actor { id } apiKey { id }
      subject { __typename id }
      details {
        __typename
        ... on ApprenticeRecordCreatedDetails { learnerId programme }
        ... on LearnerUpdatedDetails { fields }
      }
    } }
    pageInfo { hasNextPage endCursor }
  }
}"""
RECORD = """mutation($learnerId: ID!, $programme: String!) {
  createApprenticeRecord(input: {learnerId: $learnerId, programme: $programme}) { __typename }
}"""
RENAME = """mutation($learnerId: ID!, $name: String!) {
  updateLearner(input: {learnerId: $learnerId, name: $name}) { __typename }
}"""
UNIT = """mutation($input: CreateUnitInput!) { createLocation(input: $input) { __typename } }"""
COURSE = """mutation($title: String!, $code: String!) {
  createCourse(input: {title: $title, code: $code}) { __typename }
}"""


async def feed(caller: Caller, **variables: Any) -> dict[str, Any]:
    result = (await caller(FEED, **variables)).ok()
    return dict(result["changes"])


def subjects(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["node"]["action"], e["node"]["subject"]["id"]) for e in page["edges"]]


async def test_the_feed_reads_oldest_first_and_resumes_from_the_stored_cursor(
    api: Api, world: World
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    learner = gid("Learner", c.learner.id)
    (await admin(RECORD, learnerId=learner, programme="Level 3 Diploma")).ok()
    (await admin(RENAME, learnerId=learner, name="Lee Renamed")).ok()
    (await admin(CREATE, input={"name": "Ada Lovelace"})).ok()

    first = await feed(admin, first=2)
    assert [a for a, _ in subjects(first)] == ["APPRENTICE_RECORD_CREATED", "LEARNER_UPDATED"]
    node = first["edges"][0]["node"]
    assert node["details"] == {
        "__typename": "ApprenticeRecordCreatedDetails",
        "learnerId": learner,
        "programme": "Level 3 Diploma",
    }
    assert node["actor"] == {"id": gid("User", c.people["ADMIN"].id)} and node["apiKey"] is None
    assert first["edges"][1]["node"]["details"]["fields"] == ["name"]
    assert first["pageInfo"]["hasNextPage"]
    rest = await feed(admin, first=2, after=first["pageInfo"]["endCursor"])
    assert subjects(rest)[0][0] == "LEARNER_CREATED" and not rest["pageInfo"]["hasNextPage"]
    assert rest["edges"][0]["node"]["details"] is None  # nothing more than its subject
    # caught up: nothing new, and the position to store stays where it was
    done = await feed(admin, after=rest["pageInfo"]["endCursor"])
    assert done["edges"] == [] and done["pageInfo"]["endCursor"] == rest["pageInfo"]["endCursor"]
    (await admin(RENAME, learnerId=learner, name="Lee Again")).ok()
    later = await feed(admin, after=rest["pageInfo"]["endCursor"])
    assert subjects(later) == [("LEARNER_UPDATED", learner)]


async def test_a_manager_follows_changes_to_team_learners_only(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    outsider = await world.learner(c.org, location=c.there)
    mine, theirs = gid("Learner", c.learner.id), gid("Learner", outsider.id)
    (await admin(RENAME, learnerId=theirs, name="Out Side")).ok()
    (await admin(RECORD, learnerId=mine, programme="Level 2")).ok()
    (await admin(RECORD, learnerId=theirs, programme="Level 2")).ok()
    (await admin(RENAME, learnerId=mine, name="In Side")).ok()

    in_team = c.as_(api, "MANAGER_IN_TEAM")
    seen = await feed(in_team)
    assert [a for a, _ in subjects(seen)] == ["APPRENTICE_RECORD_CREATED", "LEARNER_UPDATED"]
    assert subjects(seen)[1] == ("LEARNER_UPDATED", mine)
    outside = await feed(c.as_(api, "MANAGER_OUTSIDE_TEAM"))
    assert subjects(outside)[0][1] == theirs and len(outside["edges"]) == 2
    assert (await feed(c.as_(api, "OTHER_ADMIN")))["edges"] == []
    assert len((await feed(admin))["edges"]) == 4

    # a change the manager cannot see answers exactly as if it had never been written
    async with backend.engine.begin() as conn:
        await conn.execute(
            delete(Change).where(
                or_(
                    and_(Change.subject_type == "Learner", Change.subject_id == outsider.id),
                    and_(
                        Change.subject_type == "ApprenticeRecord",
                        Change.subject_id.in_(
                            select(ApprenticeRecord.id).where(
                                ApprenticeRecord.learner_id == outsider.id
                            )
                        ),
                    ),
                )
            )
        )
    assert await feed(in_team) == seen
    assert await feed(in_team, first=1) == {
        "edges": seen["edges"][:1],
        "pageInfo": {"hasNextPage": True, "endCursor": seen["edges"][0]["cursor"]},
    }


async def test_support_follows_organisations_staff_courses_and_pools_only(
    api: Api, world: World
) -> None:
    c = await cast(world)
    support = c.as_(api, "SUPPORT")
    (await support(COURSE, title="Welding", code="WLD-1")).ok()
    # support may read locations, but the feed follows only organisations, staff, courses, pools
    (
        await support(
            UNIT, input={"organisationId": gid("Organisation", c.org.id), "name": "Annex"}
        )
    ).ok()
    (await c.as_(api, "ADMIN")(RENAME, learnerId=gid("Learner", c.learner.id), name="X Y")).ok()
    assert [a for a, _ in subjects(await feed(support))] == ["COURSE_CREATED"]
    learner = [a for a, _ in subjects(await feed(c.as_(api, "LEARNER")))]
    assert learner == ["COURSE_CREATED", "LOCATION_CREATED", "LEARNER_UPDATED"]


async def test_identity_provider_details_stay_null_and_webhook_changes_are_not_listed(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(**OPEN)
    c = await cast(world)
    support = c.as_(api, "SUPPORT")
    org = gid("Organisation", c.org.id)
    issuer = "https://login.example.com/tenant"
    (await support(SET, o=org, i=issuer, a="caseload-client", c="upn")).ok()
    (await support(REMOVE, o=org)).ok()
    boss = c.as_(api, "SUPER_ADMIN")
    endpoint, _ = await endpoint_for(boss, "http://127.0.0.1:9/hooks")
    (await boss(ROTATE, id=endpoint)).ok()

    # The organisation is the subject, seen by everyone in it: the issuer is not shown there.
    expected = [None, None]
    for who in ("SUPER_ADMIN", "ADMIN", "SUPPORT", "LEARNER"):
        seen = await feed(c.as_(api, who))
        assert subjects(seen) == [
            ("IDENTITY_PROVIDER_SET", org),
            ("IDENTITY_PROVIDER_REMOVED", org),
        ]
        assert [e["node"]["details"] for e in seen["edges"]] == expected
    # a webhook endpoint is no kind of subject: its changes are in the outbox, never in the feed
    assert [(a, t) for a, t, _ in await outbox(backend)][2:] == [
        (AuditAction.WEBHOOK_ENDPOINT_CREATED, "WebhookEndpoint"),
        (AuditAction.WEBHOOK_SECRET_ROTATED, "WebhookEndpoint"),
    ]


async def test_the_filter_narrows_by_kind_action_and_learner(api: Api, world: World) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    other = await world.learner(c.org)
    mine = gid("Learner", c.learner.id)
    (await admin(RECORD, learnerId=mine, programme="Level 2")).ok()
    (await admin(RENAME, learnerId=mine, name="In Side")).ok()
    (await admin(RENAME, learnerId=gid("Learner", other.id), name="Else Where")).ok()

    by_kind = await feed(admin, filter={"subjectTypes": ["APPRENTICE_RECORD"]})
    assert [a for a, _ in subjects(by_kind)] == ["APPRENTICE_RECORD_CREATED"]
    by_action = await feed(admin, filter={"actions": ["LEARNER_UPDATED"]})
    assert len(by_action["edges"]) == 2
    of_learner = await feed(admin, filter={"learnerId": mine})
    assert [a for a, _ in subjects(of_learner)] == ["APPRENTICE_RECORD_CREATED", "LEARNER_UPDATED"]
    assert (await feed(admin, filter={"learnerId": gid("Course", 1)}))["edges"] == []
    assert (await admin(FEED, filter={"learnerId": "nope"})).codes == ["INVALID"]


async def test_foreign_and_expired_cursors_are_invalid(api: Api, world: World) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    (await admin(RENAME, learnerId=gid("Learner", c.learner.id), name="In Side")).ok()
    listed = (await admin("{ learners(first: 1) { pageInfo { endCursor } } }")).ok()
    foreign = listed["learners"]["pageInfo"]["endCursor"]
    for cursor in (foreign, "not-a-cursor", encode_cursor("changes", [1, 2])):
        result = await admin(FEED, after=cursor)
        assert result.codes == ["INVALID"], cursor
    stored = (await feed(admin))["edges"][0]["cursor"]
    xid, pk, at = decode_cursor(stored, "changes", (int, int, datetime), field="after")
    old = encode_cursor("changes", [xid, pk, at - timedelta(days=31)])
    expired = await admin(FEED, after=old)
    assert expired.codes == ["INVALID"]
    assert (
        "resync" in expired.errors[0]["message"] or "read the lists" in expired.errors[0]["message"]
    )
    # inside the retention, the same position reads on
    fine = encode_cursor("changes", [xid, pk, at - timedelta(days=29)])
    assert (await admin(FEED, after=fine)).ok()["changes"]["edges"] == []


async def age_changes(backend: Backend, days: int) -> None:
    """Every change so far happened `days` ago."""
    async with backend.engine.begin() as conn:
        rows = list(await conn.execute(select(Change.id, Change.at)))
        for pk, at in rows:
            old = at - timedelta(days=days)
            await conn.execute(update(Change).where(Change.id == pk).values(at=old))


async def test_expired_changes_are_deleted_a_bounded_number_a_run(
    api: Api, world: World, backend: Backend, services: Services
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    for n in range(5):
        (await admin(RENAME, learnerId=gid("Learner", c.learner.id), name=f"Name {n}")).ok()
    position, pk, at = decode_cursor(
        (await feed(admin))["edges"][1]["cursor"], "changes", (int, int, datetime), field="after"
    )
    stored = encode_cursor("changes", [position, pk, at - timedelta(days=31)])  # as aged
    await age_changes(backend, 31)
    (await admin(RENAME, learnerId=gid("Learner", c.learner.id), name="Kept")).ok()
    now = datetime.now(UTC)

    # a run deletes at most `batches` transactions of `batch` rows
    assert await delete_expired(services.maker, now, 30, batch=2, batches=1) == 2
    assert len(await outbox(backend)) == 4
    # the next run the rest
    assert await delete_expired(services.maker, now, 30, batch=2, batches=5) == 3
    assert len(await outbox(backend)) == 1
    (await admin(RENAME, learnerId=gid("Learner", c.learner.id), name="Later")).ok()
    async with backend.engine.connect() as conn:
        positions = list(await conn.scalars(select(Change.position).order_by(Change.position)))
    assert positions == [6, 7]
    assert await delete_expired(services.maker, now, 30) == 0
    # the feed reads what it keeps; a cursor of a deleted change stays INVALID: resync
    names = [n for _, n in subjects(await feed(admin))]
    assert len(names) == 2
    expired = await admin(FEED, after=stored)
    assert expired.codes == ["INVALID"]
    assert "read the lists again" in expired.errors[0]["message"]


async def test_each_process_deletes_expired_changes_from_its_start(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    for n in range(3):
        (await admin(RENAME, learnerId=gid("Learner", c.learner.id), name=f"Name {n}")).ok()
    await age_changes(backend, 31)
    app = create_app(
        services=Services.build(make_settings(backend.url, changes_prune_seconds=0.05))
    )
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if len(await outbox(backend)) == 1:
                break
            await asyncio.sleep(0.05)
    assert len(await outbox(backend)) == 1  # all but the highest position


FULL = """query($first: Int) {
  changes(first: $first) {
    edges { cursor node {
      action at actor { id name } apiKey { id }
      subject { __typename id ... on Learner { name } ... on ApprenticeRecord { programme } }
      details { __typename ... on ApprenticeRecordCreatedDetails { learnerId programme } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_a_feed_page_costs_the_same_statements_for_5_changes_as_for_50(
    api: Api, world: World, services: Services
) -> None:
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    people = [{"name": f"Person {n}"} for n in range(25)]
    for n in range(25):  # a page of 5 holds both kinds of subject, as a page of 50 does
        if n == 2:
            (await admin(IMPORT, input={"learners": people})).ok()
        (await admin(RECORD, learnerId=gid("Learner", c.learner.id), programme=f"P{n}")).ok()
    counts, times = [], []
    for size in (5, 50):
        with counting(services.engine) as statements:
            started = time.perf_counter()
            page = (await admin(FULL, first=size)).ok()["changes"]
            times.append(time.perf_counter() - started)
        assert len(page["edges"]) == size
        counts.append(len(statements))
    # sign-in, the page, the actors, and one per kind of subject on it (learners, records)
    assert counts[0] == counts[1] <= 5, counts
    ms = [f"{t * 1000:.1f} ms" for t in times]
    print(f"feed page: {counts[1]} statements; 5 changes {ms[0]}, 50 changes {ms[1]}")


def test_a_bulk_event_stands_for_one_change_per_object_it_names() -> None:
    licences = [gid("Licence", 7), gid("Licence", 9)]
    allocated = changes_of(
        AuditAction.LICENCES_ALLOCATED,
        "Licence",
        None,
        {"courseId": gid("Course", 1), "learnerIds": [gid("Learner", 3)], "licenceIds": licences},
    )
    assert [(w.subject_type, w.subject_id, w.details) for w in allocated] == [
        ("Licence", 7, {"courseId": gid("Course", 1)}),
        ("Licence", 9, {"courseId": gid("Course", 1)}),
    ]
    assigned = changes_of(
        AuditAction.RECORDS_ASSIGNED,
        "User",
        5,
        {"role": "ASSESSOR", "recordIds": [], "assignmentIds": [gid("Assignment", 2)]},
    )
    assert [(w.subject_type, w.subject_id, w.details) for w in assigned] == [
        ("Assignment", 2, {"role": "ASSESSOR", "assigneeId": gid("User", 5)})
    ]
    # an event on a table that names no object stands for none
    ended: dict[str, Any] = {
        "recordIds": [],
        "endedAssignmentIds": [],
        "role": None,
        "assigneeId": None,
    }
    assert changes_of(AuditAction.RECORDS_UNASSIGNED, "ApprenticeRecord", None, ended) == []
