"""Who sees what, end to end, for every principal of a generated world.

DESIGN.md ("Roles and visibility") promises a test that proves, for every role and every
resource, that what the API returns equals what a small independent reference model of the
rules says, on generated data. This is that test.

The reference model (`Reference`) is plain Python sets over facts recorded while the world
was built. It is written from DESIGN.md's table, not from policies/policy.csv, and it never
calls the application's policy code: if the two disagree, one of them is wrong.

For each principal (every staff membership, signed in with one token per organisation;
every external assessor and the support user, signed in without an organisation) it checks
- the `learners`, `apprenticeRecords` and `staff` connections, paged to the end, and their
  `totalCount`;
- `learner(id:)` for every learner id of the world, with the nested `records` of each
  learner the principal can see;
- `node(id:)` for every learner id and every apprentice record id;
- that an id the principal may not see answers byte for byte like an id that does not exist;
- the `evidence` work queue and the `organisations` connection.

Part of the world is then retired through the API, as admins do: some records archived (they
leave `apprenticeRecords` but still show by id and on their learner), and some staff
deactivated (their token for that organisation is refused, they leave `staff`, and their
assignments there end).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    Department,
    Learner,
    Location,
    Organisation,
    User,
)
from tests.factories import World
from tests.helpers import Api, Caller, gid

SEEDS = [20240611, 977]

ORGANISATIONS = 3
LEARNERS_PER_ORGANISATION = (28, 36)
LINKED_LEARNER_SHARE = 0.08  # learners with a sign-in (a user holding LEARNER)

PAGE_SIZE = 500  # the API's maximum `first`
SMALL_PAGE_SIZE = 7  # pages through the broad lists a second time, to exercise cursors
MAX_ALIASES = 30  # the API refuses operations with more aliases
MISSING_PK = 10**9  # no row has this primary key

FIRST_NAMES = ["Ava", "ava", "Zoë", "Zoe", "Omar", "Élodie", "Sam", "Priya", "O'Neil", "Li"]
LAST_NAMES = ["Adams", "Okafor", "de la Cruz", "Smith", "Nguyen", "Ødegaard"]

# Roles by what DESIGN.md's table lets them see.
WHOLE_ORGANISATION = frozenset({"SUPER_ADMIN", "ADMIN", "SENIOR_ASSESSOR"})
ASSIGNED_RECORDS = frozenset({"ASSESSOR", "TRAINING_COORDINATOR"})
ORGANISATION_STAFF = WHOLE_ORGANISATION | {"MANAGER"}
ONLY_THEMSELVES_AS_STAFF = ASSIGNED_RECORDS

STAFF, EXTERNAL_ASSESSOR, SUPPORT = "STAFF", "EXTERNAL_ASSESSOR", "SUPPORT"


# --- Facts: what the world holds, as plain values ----------------------------------------


@dataclass(frozen=True)
class LearnerFact:
    id: int
    organisation_id: int
    location_id: int | None
    department_id: int | None
    user_id: int | None


@dataclass(frozen=True)
class RecordFact:
    id: int
    learner_id: int
    organisation_id: int


@dataclass(frozen=True)
class AssignmentFact:
    record_id: int
    user_id: int
    organisation_id: int
    ended: bool


@dataclass(frozen=True)
class AllocationFact:
    learner_id: int
    assessor_id: int
    ended: bool
    expires_at: datetime | None


@dataclass(frozen=True)
class EvidenceFact:
    id: int
    record_id: int


@dataclass(frozen=True)
class MembershipFact:
    user_id: int
    organisation_id: int
    roles: frozenset[str]
    location_id: int | None
    department_id: int | None


@dataclass(frozen=True)
class Who:
    """A principal: a user, signed in for one organisation (staff) or for none."""

    user: User
    kind: str
    organisation: Organisation | None = None
    roles: frozenset[str] = frozenset()

    def __str__(self) -> str:
        where = f" in {self.organisation.slug}" if self.organisation else ""
        roles = "+".join(sorted(self.roles)) or self.kind
        return f"{self.user.email} ({self.user.id}) as {roles}{where}"


@dataclass
class Facts:
    now: datetime
    organisations: list[Organisation] = field(default_factory=list)
    memberships: list[MembershipFact] = field(default_factory=list)
    learners: list[LearnerFact] = field(default_factory=list)
    records: list[RecordFact] = field(default_factory=list)
    assignments: list[AssignmentFact] = field(default_factory=list)
    allocations: list[AllocationFact] = field(default_factory=list)
    externals: list[User] = field(default_factory=list)
    supports: list[User] = field(default_factory=list)
    users: dict[int, User] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # global id → description
    evidence: list[EvidenceFact] = field(default_factory=list)
    archived: set[int] = field(default_factory=set)  # record ids
    deactivated: set[tuple[int, int]] = field(default_factory=set)  # (user id, organisation id)
    record_rows: dict[int, ApprenticeRecord] = field(default_factory=dict)

    def principals(self) -> list[Who]:
        orgs = {o.id: o for o in self.organisations}
        staff = [
            Who(self.users[m.user_id], STAFF, orgs[m.organisation_id], m.roles)
            for m in self.memberships
        ]
        others = [Who(u, EXTERNAL_ASSESSOR) for u in self.externals]
        return staff + others + [Who(u, SUPPORT) for u in self.supports]

    def label(self, global_id: str) -> str:
        return self.labels.get(global_id, global_id)


# --- The reference model: DESIGN.md's table, in sets -------------------------------------


class Reference:
    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.records_of: defaultdict[int, set[int]] = defaultdict(set)
        self.learner_of: dict[int, int] = {}
        for record in facts.records:
            self.records_of[record.learner_id].add(record.id)
            self.learner_of[record.id] = record.learner_id

    def membership(self, who: Who) -> MembershipFact:
        assert who.organisation is not None
        (found,) = (
            m
            for m in self.facts.memberships
            if m.user_id == who.user.id and m.organisation_id == who.organisation.id
        )
        return found

    def records_of_learners(self, learner_ids: Iterable[int]) -> set[int]:
        return {r for learner_id in learner_ids for r in self.records_of[learner_id]}

    def learners_and_records(self, who: Who) -> tuple[set[int], set[int]]:
        """(learner ids, apprentice record ids) the principal sees."""
        if who.kind == SUPPORT:
            return set(), set()
        if who.kind == EXTERNAL_ASSESSOR:
            allocated = {
                a.learner_id
                for a in self.facts.allocations
                if a.assessor_id == who.user.id
                and not a.ended
                and (a.expires_at is None or a.expires_at > self.facts.now)
            }
            return allocated, self.records_of_learners(allocated)

        mine = self.membership(who)
        here = [lf for lf in self.facts.learners if lf.organisation_id == mine.organisation_id]
        learners: set[int] = set()
        records: set[int] = set()
        if mine.roles & WHOLE_ORGANISATION:
            learners |= {lf.id for lf in here}
            records |= {
                r.id for r in self.facts.records if r.organisation_id == mine.organisation_id
            }
        if "MANAGER" in mine.roles and (mine.location_id or mine.department_id):
            team = {
                lf.id
                for lf in here
                if (mine.location_id is None or lf.location_id == mine.location_id)
                and (mine.department_id is None or lf.department_id == mine.department_id)
            }
            learners |= team
            records |= self.records_of_learners(team)
        if mine.roles & ASSIGNED_RECORDS:
            assigned = {
                a.record_id
                for a in self.facts.assignments
                if a.user_id == who.user.id
                and not a.ended
                and a.organisation_id == mine.organisation_id
            }
            records |= assigned
            learners |= {self.learner_of[r] for r in assigned}
        if "LEARNER" in mine.roles:
            themselves = {lf.id for lf in here if lf.user_id == who.user.id}
            learners |= themselves
            records |= self.records_of_learners(themselves)
        return learners, records

    def staff(self, who: Who) -> set[int]:
        """User ids the `staff` query shows the principal.

        Staff are people with a membership holding a role other than LEARNER: a learner's
        sign-in is not staff (DESIGN.md's Reads table).
        """
        staff = [
            m
            for m in self.facts.memberships
            if m.roles - {"LEARNER"}
            and (m.user_id, m.organisation_id) not in self.facts.deactivated
        ]
        if who.kind == SUPPORT:
            return {m.user_id for m in staff}
        if who.kind == EXTERNAL_ASSESSOR:
            return set()
        mine = self.membership(who)
        seen: set[int] = set()
        if mine.roles & ORGANISATION_STAFF:
            seen |= {m.user_id for m in staff if m.organisation_id == mine.organisation_id}
        if mine.roles & ONLY_THEMSELVES_AS_STAFF:
            seen.add(who.user.id)
        return seen

    def live(self, records: set[int]) -> set[int]:
        """The live records view: lists show LIVE records only."""
        return records - self.facts.archived

    def evidence(self, records: set[int]) -> set[int]:
        """The work queue: evidence on the visible records that are live."""
        live = self.live(records)
        return {e.id for e in self.facts.evidence if e.record_id in live}

    def organisations(self, who: Who) -> set[int]:
        if who.kind == SUPPORT:
            return {o.id for o in self.facts.organisations}
        return set() if who.organisation is None else {who.organisation.id}

    def signs_in(self, who: Who) -> bool:
        if who.organisation is None:
            return True
        return (who.user.id, who.organisation.id) not in self.facts.deactivated


# --- Building the world -------------------------------------------------------------------


class Builder:
    """Writes rows through the `world` builder and records the facts the model needs."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.facts = Facts(now=datetime.now(UTC))
        self.active_pairs: set[tuple[int, int, AssignmentRole]] = set()
        self.learner_rows: dict[int, Learner] = {}
        self.record_rows: dict[int, ApprenticeRecord] = {}

    def person_name(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"

    def _user(self, user: User, label: str) -> None:
        self.facts.users[user.id] = user
        self.facts.labels[gid("User", user.id)] = f"{label} {user.email} (user {user.id})"

    async def organisation(self) -> tuple[Organisation, list[Location], list[Department]]:
        org = await self.world.organisation()
        self.facts.organisations.append(org)
        locations = [await self.world.location(org) for _ in range(2)]
        departments = [await self.world.department(org) for _ in range(2)]
        return org, locations, departments

    async def staff(
        self,
        org: Organisation,
        *roles: str,
        location: Location | None = None,
        department: Department | None = None,
        user: User | None = None,
    ) -> User:
        user = await self.world.staff(
            org,
            *roles,
            location=location,
            department=department,
            user=user,
            name=self.person_name(),
        )
        self.facts.memberships.append(
            MembershipFact(
                user.id,
                org.id,
                frozenset(roles),
                location.id if location else None,
                department.id if department else None,
            )
        )
        self._user(user, "staff")
        return user

    async def learner(
        self,
        org: Organisation,
        location: Location | None,
        department: Department | None,
        user: User | None = None,
    ) -> LearnerFact:
        row = await self.world.learner(
            org,
            name=user.name if user else self.person_name(),
            location=location,
            department=department,
            user=user,
        )
        fact = LearnerFact(
            row.id,
            org.id,
            location.id if location else None,
            department.id if department else None,
            user.id if user else None,
        )
        self.facts.learners.append(fact)
        self.learner_rows[row.id] = row
        units = f"location {fact.location_id}, department {fact.department_id}"
        self.facts.labels[gid("Learner", row.id)] = (
            f"learner {row.id} of {org.slug} ({units}, user {fact.user_id})"
        )
        return fact

    async def record(self, learner: LearnerFact) -> RecordFact:
        row = await self.world.record(self.learner_rows[learner.id])
        fact = RecordFact(row.id, learner.id, learner.organisation_id)
        self.record_rows[row.id] = row
        self.facts.record_rows[row.id] = row
        self.facts.records.append(fact)
        self.facts.labels[gid("ApprenticeRecord", row.id)] = (
            f"record {row.id} of learner {learner.id}"
        )
        return fact

    async def assign(
        self, record: RecordFact, user: User, role: AssignmentRole, *, ended: bool = False
    ) -> None:
        if not ended:
            if (record.id, user.id, role) in self.active_pairs:
                return  # at most one active assignment per (record, user, role)
            self.active_pairs.add((record.id, user.id, role))
        await self.world.assign(self.record_rows[record.id], user, role, ended=ended)
        self.facts.assignments.append(
            AssignmentFact(record.id, user.id, record.organisation_id, ended)
        )

    async def allocate(
        self,
        learner: LearnerFact,
        assessor: User,
        *,
        expires_at: datetime | None = None,
        ended: bool = False,
    ) -> None:
        await self.world.allocate(
            self.learner_rows[learner.id], assessor, expires_at=expires_at, ended=ended
        )
        self.facts.allocations.append(AllocationFact(learner.id, assessor.id, ended, expires_at))

    async def external_assessor(self) -> User:
        user = await self.world.external_assessor(name=self.person_name())
        self.facts.externals.append(user)
        self._user(user, "external assessor")
        return user

    async def support(self) -> User:
        user = await self.world.support()
        self.facts.supports.append(user)
        self._user(user, "support")
        return user


async def build_world(world: World, rng: random.Random) -> Facts:
    """Three organisations, every role, assignments and allocations live and ended."""
    b = Builder(world, rng)
    now = b.facts.now
    orgs = [await b.organisation() for _ in range(ORGANISATIONS)]

    # Staff of every role in every organisation; assessors and coordinators are kept in pools
    # that records get assigned from.
    assessors: dict[int, list[User]] = defaultdict(list)
    coordinators: dict[int, list[User]] = defaultdict(list)
    for org, locations, departments in orgs:
        await b.staff(org, "SUPER_ADMIN")
        await b.staff(org, "ADMIN")
        await b.staff(org, "SENIOR_ASSESSOR")
        await b.staff(org, "MANAGER", location=rng.choice(locations))
        await b.staff(org, "MANAGER", department=rng.choice(departments))
        await b.staff(
            org, "MANAGER", location=rng.choice(locations), department=rng.choice(departments)
        )
        await b.staff(org, "MANAGER")  # no unit: a team of nobody
        for _ in range(2):
            assessors[org.id].append(await b.staff(org, "ASSESSOR"))
            coordinators[org.id].append(await b.staff(org, "TRAINING_COORDINATOR"))
        # Several roles in one membership: the union of a team and assigned records.
        assessors[org.id].append(
            await b.staff(org, "MANAGER", "ASSESSOR", location=rng.choice(locations))
        )
        await b.staff(org, "LEARNER")  # a learner sign-in with no learner behind it

    (org0, _, _), (org1, _, departments1), (org2, _, _) = orgs
    # One person in two organisations with different roles: assigned records in both.
    two_orgs = await b.staff(org0, "ASSESSOR")
    assessors[org0.id].append(two_orgs)
    await b.staff(
        org1, "MANAGER", "TRAINING_COORDINATOR", department=departments1[0], user=two_orgs
    )
    coordinators[org1.id].append(two_orgs)
    # An assessor in one organisation who is a learner (with a sign-in) in another.
    assessor_and_learner = await b.staff(org1, "ASSESSOR")
    assessors[org1.id].append(assessor_and_learner)
    await b.staff(org2, "LEARNER", user=assessor_and_learner)
    # A learner in two organisations: each token shows only that organisation's learner.
    learner_twice = await b.staff(org0, "LEARNER")
    await b.staff(org1, "LEARNER", user=learner_twice)
    # An assessor who is also a learner in the same organisation (one membership, two roles).
    assessing_learner = await b.staff(org0, "ASSESSOR", "LEARNER")
    assessors[org0.id].append(assessing_learner)
    # An assessor whose assignments have all ended: sees nobody.
    former = {org.id: await b.staff(org, "ASSESSOR") for org, _, _ in orgs}

    # Learners, some with a sign-in; one or two records each; assignments live and ended.
    learners_by_org: dict[int, list[LearnerFact]] = defaultdict(list)
    for org, locations, departments in orgs:
        for _ in range(rng.randint(*LEARNERS_PER_ORGANISATION)):
            location = rng.choice([*locations, None])
            department = rng.choice([*departments, None])
            user = None
            if rng.random() < LINKED_LEARNER_SHARE:
                user = await b.staff(org, "LEARNER")
            learners_by_org[org.id].append(await b.learner(org, location, department, user))
        if org.id == org0.id:
            learners_by_org[org.id].append(
                await b.learner(org, rng.choice(locations), None, assessing_learner)
            )
        if org.id in (org0.id, org1.id):
            learners_by_org[org.id].append(
                await b.learner(org, rng.choice(locations), rng.choice(departments), learner_twice)
            )
        if org.id == org2.id:
            learners_by_org[org.id].append(
                await b.learner(org, None, rng.choice(departments), assessor_and_learner)
            )
        for learner in learners_by_org[org.id]:
            for _ in range(rng.randint(1, 2)):
                record = await b.record(learner)
                if rng.random() < 0.5:
                    await b.assign(record, rng.choice(assessors[org.id]), AssignmentRole.ASSESSOR)
                if rng.random() < 0.3:
                    await b.assign(
                        record,
                        rng.choice(coordinators[org.id]),
                        AssignmentRole.TRAINING_COORDINATOR,
                    )
                if rng.random() < 0.25:
                    someone = rng.choice(assessors[org.id] + coordinators[org.id])
                    await b.assign(record, someone, AssignmentRole.ASSESSOR, ended=True)
                if rng.random() < 0.1:
                    await b.assign(record, former[org.id], AssignmentRole.ASSESSOR, ended=True)

    # External assessors: one allocated in two organisations; one with an ended, an expired
    # and a still-valid expiring allocation; one with nothing current at all.
    across, mixed, lapsed = [await b.external_assessor() for _ in range(3)]
    for learner in rng.sample(learners_by_org[org0.id], 4) + rng.sample(
        learners_by_org[org1.id], 4
    ):
        await b.allocate(learner, across)
    ended, expired, expiring, plain = rng.sample(learners_by_org[org2.id], 4)
    await b.allocate(ended, mixed, ended=True)
    await b.allocate(expired, mixed, expires_at=now - timedelta(days=1))
    await b.allocate(expiring, mixed, expires_at=now + timedelta(days=30))
    await b.allocate(plain, mixed)
    reallocated = rng.choice(learners_by_org[org0.id])
    await b.allocate(reallocated, mixed, ended=True)
    await b.allocate(reallocated, mixed)  # ended once, allocated again: visible
    await b.allocate(rng.choice(learners_by_org[org1.id]), lapsed, ended=True)
    await b.allocate(
        rng.choice(learners_by_org[org2.id]), lapsed, expires_at=now - timedelta(hours=1)
    )

    await b.support()
    return b.facts


async def retire_part_of_the_world(
    api: Api, world: World, facts: Facts, rng: random.Random
) -> None:
    """Evidence on some records; then, through the API as each organisation's admins do,
    archive some records and deactivate some staff (their assignments there end)."""
    for record in facts.records:
        if rng.random() < 0.4:
            row = await world.evidence(facts.record_rows[record.id])
            facts.evidence.append(EvidenceFact(row.id, record.id))
    orgs = {o.id: o for o in facts.organisations}

    def admin_of(org_id: int, role: str) -> User:
        (found,) = [
            m for m in facts.memberships if m.organisation_id == org_id and m.roles == {role}
        ]
        return facts.users[found.user_id]

    for org_id, org in orgs.items():
        admin = api.as_(admin_of(org_id, "ADMIN"), org)
        records = [r for r in facts.records if r.organisation_id == org_id]
        for record in rng.sample(records, max(2, len(records) // 6)):
            result = await admin(
                "mutation($id: ID!) { archiveApprenticeRecord(input: {recordId: $id}) "
                "{ __typename } }",
                id=gid("ApprenticeRecord", record.id),
            )
            assert result.ok()["archiveApprenticeRecord"]["__typename"] == (
                "ApprenticeRecordArchived"
            )
            facts.archived.add(record.id)

    # A person in two organisations, deactivated in one; an assessor with live assignments;
    # a manager whose team is a location.
    memberships_of: defaultdict[int, list[MembershipFact]] = defaultdict(list)
    for m in facts.memberships:
        memberships_of[m.user_id].append(m)
    two_orgs = next(
        m
        for m in facts.memberships
        if m.roles == {"ASSESSOR"} and len(memberships_of[m.user_id]) > 1
    )
    busy = max(
        (m for m in facts.memberships if m.roles == {"ASSESSOR"} and m is not two_orgs),
        key=lambda m: sum(1 for a in facts.assignments if a.user_id == m.user_id and not a.ended),
    )
    manager = next(
        m
        for m in facts.memberships
        if m.roles == {"MANAGER"}
        and m.location_id is not None
        and m.organisation_id != busy.organisation_id
    )
    for m in (two_orgs, busy, manager):
        super_admin = api.as_(admin_of(m.organisation_id, "SUPER_ADMIN"), orgs[m.organisation_id])
        result = await super_admin(
            "mutation($id: ID!) { deactivateStaffMember(input: {userId: $id}) "
            "{ __typename ... on StaffMemberDeactivated { endedAssignments } } }",
            id=gid("User", m.user_id),
        )
        answer = result.ok()["deactivateStaffMember"]
        ending = [
            a
            for a in facts.assignments
            if a.user_id == m.user_id and a.organisation_id == m.organisation_id and not a.ended
        ]
        assert answer == {"__typename": "StaffMemberDeactivated", "endedAssignments": len(ending)}
        facts.assignments = [
            AssignmentFact(a.record_id, a.user_id, a.organisation_id, True) if a in ending else a
            for a in facts.assignments
        ]
        facts.deactivated.add((m.user_id, m.organisation_id))
    assert any(a.record_id in facts.archived and not a.ended for a in facts.assignments), (
        "an archived record keeps an active assignment"
    )


# --- Talking to the API -------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A root field that fetches one object by id, and what to select on it."""

    name: str
    type_name: str
    field: str
    selection: str


LEARNER_WITH_RECORDS = Lookup("learner(id:)", "Learner", "learner", "{ id records { id } }")
LEARNER_NODE = Lookup("node(id:) of learners", "Learner", "node", "{ ... on Node { id } }")
RECORD_NODE = Lookup("node(id:) of records", "ApprenticeRecord", "node", "{ ... on Node { id } }")
EVIDENCE_NODE = Lookup("node(id:) of evidence", "Evidence", "node", "{ ... on Node { id } }")

CONNECTION = """
query Page($first: Int!, $after: String) {
  %s(first: $first, after: $after) {
    totalCount
    edges { node { id } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def batch_query(lookup: Lookup, size: int) -> str:
    variables = ", ".join(f"$i{k}: ID!" for k in range(size))
    fields = " ".join(f"a{k}: {lookup.field}(id: $i{k}) {lookup.selection}" for k in range(size))
    return f"query Batch({variables}) {{ {fields} }}"


def chunks(items: Sequence[str]) -> list[list[str]]:
    """As few batches as the alias limit allows, of near-equal size (the first the largest)."""
    count = -(-len(items) // MAX_ALIASES)
    return [list(items[k::count]) for k in range(count)]


async def post_raw(caller: Caller, query: str, variables: dict[str, Any]) -> tuple[int, bytes]:
    """Status and the exact bytes of the response body."""
    response = await caller.api.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=caller.headers
    )
    return response.status_code, response.content


class Problems:
    """Collects every disagreement, so one run shows the whole picture."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.found: list[str] = []

    def add(self, who: Who, what: str, detail: str) -> None:
        self.found.append(f"{who} — {what}: {detail}")

    def compare(self, who: Who, what: str, got: Iterable[str], expected: set[str]) -> None:
        got_list = list(got)
        got_set = set(got_list)
        if len(got_list) != len(got_set):
            dupes = sorted({g for g in got_list if got_list.count(g) > 1})
            self.add(who, what, f"duplicates {self.describe(dupes)}")
        if got_set != expected:
            unexpected = sorted(got_set - expected)
            missing = sorted(expected - got_set)
            self.add(
                who,
                what,
                f"{len(unexpected)} unexpected {self.describe(unexpected)}; "
                f"{len(missing)} missing {self.describe(missing)}",
            )

    def describe(self, ids: Sequence[str], limit: int = 4) -> str:
        shown = [self.facts.label(i) for i in ids[:limit]]
        more = f", … {len(ids) - limit} more" if len(ids) > limit else ""
        return f"[{'; '.join(shown)}{more}]"

    def report(self, limit: int = 60) -> str:
        lines = self.found[:limit]
        more = [f"… and {len(self.found) - limit} more"] if len(self.found) > limit else []
        return f"{len(self.found)} disagreements with the reference model:\n" + "\n".join(
            lines + more
        )


async def read_connection(
    caller: Caller, who: Who, problems: Problems, field_name: str, expected: set[str], first: int
) -> None:
    """Page `field_name` to the end; every page's totalCount and the union of ids must match."""
    ids: list[str] = []
    after: str | None = None
    what = f"{field_name}(first: {first})"
    for _ in range(len(expected) // max(first, 1) + 3):  # bounded: a broken cursor must not spin
        result = await caller(CONNECTION % field_name, first=first, after=after)
        if result.status != 200 or result.errors:
            problems.add(who, what, f"errors {result.body}")
            return
        connection = result.data[field_name]
        ids += [edge["node"]["id"] for edge in connection["edges"]]
        if connection["totalCount"] != len(expected):
            problems.add(
                who, what, f"totalCount {connection['totalCount']}, expected {len(expected)}"
            )
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    else:
        problems.add(who, what, "hasNextPage never became false")
    problems.compare(who, what, ids, expected)


async def read_visible(
    caller: Caller,
    who: Who,
    problems: Problems,
    lookup: Lookup,
    visible: list[str],
    nested: dict[str, set[str]] | None = None,
) -> None:
    """Each visible id comes back as itself (and with exactly the expected nested records)."""
    for batch in chunks(visible):
        result = await caller(
            batch_query(lookup, len(batch)), **{f"i{k}": v for k, v in enumerate(batch)}
        )
        if result.status != 200 or result.errors:
            problems.add(who, lookup.name, f"errors {result.body}")
            continue
        for k, wanted in enumerate(batch):
            got = result.data[f"a{k}"]
            if got is None or got.get("id") != wanted:
                problems.add(who, lookup.name, f"{problems.facts.label(wanted)} → {got}")
                continue
            if nested is not None:
                problems.compare(
                    who,
                    f"{lookup.name} {{ records }} of {problems.facts.label(wanted)}",
                    (r["id"] for r in got["records"]),
                    nested[wanted],
                )


async def read_invisible(
    caller: Caller, who: Who, problems: Problems, lookup: Lookup, invisible: list[str]
) -> None:
    """Each invisible id answers exactly like an id that does not exist: same bytes, all null.

    Short batches are padded to the size of the first with nonexistent ids, so one query text
    serves all and a single answer for nonexistent ids of the same type is the reference.
    """
    if not invisible:
        return
    batches = chunks(invisible)
    size = len(batches[0])
    query = batch_query(lookup, size)
    padding = [gid(lookup.type_name, MISSING_PK + k) for k in range(size)]
    reference = await post_raw(caller, query, {f"i{k}": v for k, v in enumerate(padding)})
    status, body = reference
    if status != 200 or json.loads(body).get("data") != {f"a{k}": None for k in range(size)}:
        problems.add(who, lookup.name, f"nonexistent ids answer {status} {body[:300]!r}")
    for batch in batches:
        ids = batch + padding[len(batch) :]
        answer = await post_raw(caller, query, {f"i{k}": v for k, v in enumerate(ids)})
        if answer == reference:
            continue
        status, body = answer
        data = json.loads(body).get("data") or {}
        shown = [v for k, v in enumerate(batch) if data.get(f"a{k}") is not None]
        problems.add(
            who,
            lookup.name,
            f"invisible ids answer unlike nonexistent ones ({status}); "
            f"{len(shown)} came back: {problems.describe(shown)}; body {body[:300]!r}",
        )


async def read_one_invisible(
    caller: Caller, who: Who, problems: Problems, lookup: Lookup, invisible_id: str
) -> None:
    """The single-field form: {"data": {"learner": null}, ...} for both, byte for byte."""
    query = f"query One($id: ID!) {{ {lookup.field}(id: $id) {lookup.selection} }}"
    hidden = await post_raw(caller, query, {"id": invisible_id})
    absent = await post_raw(caller, query, {"id": gid(lookup.type_name, MISSING_PK)})
    if absent[0] != 200 or json.loads(absent[1]).get("data") != {lookup.field: None}:
        problems.add(who, f"one {lookup.name}", f"a nonexistent id answers {absent}")
    if hidden != absent:
        problems.add(
            who,
            f"one {lookup.name}",
            f"{problems.facts.label(invisible_id)} answers {hidden}, a nonexistent id {absent}",
        )


# --- The test -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_principal_sees_exactly_what_the_reference_model_says(
    api: Api, world: World, seed: int
) -> None:
    # given a generated world, part of it retired, and the reference model's answers for it
    facts = await build_world(world, random.Random(seed))
    assert_world_covers_the_brief(facts, Reference(facts), facts.principals())
    await retire_part_of_the_world(api, world, facts, random.Random(seed + 1))
    model = Reference(facts)
    all_learners = [gid("Learner", lf.id) for lf in facts.learners]
    all_records = [gid("ApprenticeRecord", r.id) for r in facts.records]
    all_evidence = [gid("Evidence", e.id) for e in facts.evidence]
    problems = Problems(facts)
    principals = facts.principals()

    for who in principals:
        caller = api.as_(who.user, who.organisation)
        if not model.signs_in(who):
            # then a deactivated member's token for that organisation is refused
            refused = await caller("{ viewer { roles } }")
            if "UNAUTHENTICATED" not in refused.codes or refused.data is not None:
                problems.add(who, "deactivated sign-in", f"answered {refused.body}")
            continue
        learner_pks, record_pks = model.learners_and_records(who)
        learners = {gid("Learner", pk) for pk in learner_pks}
        records = {gid("ApprenticeRecord", pk) for pk in record_pks}
        staff = {gid("User", pk) for pk in model.staff(who)}
        records_of = {
            gid("Learner", pk): {
                gid("ApprenticeRecord", r) for r in model.records_of[pk] & record_pks
            }
            for pk in learner_pks
        }

        # when they list learners, live records, staff, the evidence queue and organisations,
        # then they get exactly the model's sets
        for field_name, expected in (
            ("learners", learners),
            ("apprenticeRecords", {gid("ApprenticeRecord", pk) for pk in model.live(record_pks)}),
            ("staff", staff),
            ("evidence", {gid("Evidence", pk) for pk in model.evidence(record_pks)}),
            ("organisations", {gid("Organisation", pk) for pk in model.organisations(who)}),
        ):
            await read_connection(caller, who, problems, field_name, expected, PAGE_SIZE)
            if pages_in_small_steps(who):
                await read_connection(caller, who, problems, field_name, expected, SMALL_PAGE_SIZE)

        # when they ask for every learner, record and piece of evidence by id, then exactly
        # the visible ones come back (learners with exactly their visible records, archived
        # ones too), and every other id answers as if it did not exist
        evidence = {gid("Evidence", e.id) for e in facts.evidence if e.record_id in record_pks}
        for lookup, everything, visible in (
            (LEARNER_WITH_RECORDS, all_learners, learners),
            (LEARNER_NODE, all_learners, learners),
            (RECORD_NODE, all_records, records),
            (EVIDENCE_NODE, all_evidence, evidence),
        ):
            nested = records_of if lookup is LEARNER_WITH_RECORDS else None
            shown = [i for i in everything if i in visible]
            hidden = [i for i in everything if i not in visible]
            await read_visible(caller, who, problems, lookup, shown, nested)
            await read_invisible(caller, who, problems, lookup, hidden)
            if hidden and lookup is LEARNER_WITH_RECORDS:
                await read_one_invisible(caller, who, problems, lookup, hidden[0])

    assert not problems.found, problems.report()


def pages_in_small_steps(who: Who) -> bool:
    """A few principals with long lists page through them again in small pages."""
    return who.kind != STAFF or who.roles == {"ADMIN"}


def assert_world_covers_the_brief(facts: Facts, model: Reference, principals: list[Who]) -> None:
    """The generated world holds the cases this test is meant to cover."""
    roles = {role for who in principals for role in who.roles}
    assert roles >= WHOLE_ORGANISATION | ASSIGNED_RECORDS | {"MANAGER", "LEARNER"}
    assert {who.kind for who in principals} == {STAFF, EXTERNAL_ASSESSOR, SUPPORT}
    managers = [m for m in facts.memberships if "MANAGER" in m.roles]
    assert {(m.location_id is not None, m.department_id is not None) for m in managers} == {
        (True, False),
        (False, True),
        (True, True),
        (False, False),
    }
    assert any(lf.location_id is None for lf in facts.learners)
    assert any(lf.department_id is None for lf in facts.learners)
    assert any(a.ended for a in facts.assignments) and any(not a.ended for a in facts.assignments)
    assert any(a.expires_at and a.expires_at < facts.now for a in facts.allocations)
    assert any(a.expires_at and a.expires_at > facts.now for a in facts.allocations)
    assert any(a.ended for a in facts.allocations)
    members_of: defaultdict[int, set[int]] = defaultdict(set)
    for m in facts.memberships:
        members_of[m.user_id].add(m.organisation_id)
    assert any(len(orgs) > 1 for orgs in members_of.values())
    allocated_orgs = {
        lf.organisation_id
        for who in principals
        if who.kind == EXTERNAL_ASSESSOR
        for lf in facts.learners
        if lf.id in model.learners_and_records(who)[0]
    }
    assert len(allocated_orgs) >= 2
    # Someone sees only some of a learner's records (an assessor of one of two records).
    assert any(
        0 < len(model.records_of[pk] & records) < len(model.records_of[pk])
        for who in principals
        for learners, records in [model.learners_and_records(who)]
        for pk in learners
    )
