"""Generated worlds: Hypothesis draws a `WorldSpec` (plain indices), `build` writes it.

A spec says nothing about database ids; `build` writes every row in one transaction and
returns `Facts`: the same world as plain values with real ids, which is all the reference
model (tests/authz/model.py) ever reads.

Every world holds, whatever Hypothesis draws, the cases the proof must cover: several
organisations, a person in two organisations with different roles, learners with sign-ins,
a learner with several records assigned to different people, ASSESSOR and
TRAINING_COORDINATOR assignments (at most one active coordinator per record), ended
assignments, allocations active, expiring, expired, ended and renewed, evidence, API keys
(one revoked), audit events by people, keys and support, archived records (one with an
active assignment), a deactivated member whose assignments there ended, courses with pools
in some organisations, licences active (some expiring), launched, recalled, completed and
expired (mostly past their expiry, read as EXPIRED; some issued by a rule), and
auto-allocation rules (one deleted).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    AuditEvent,
    AutoAllocationRule,
    Change,
    Course,
    Department,
    Evidence,
    EvidenceStatus,
    Learner,
    Licence,
    LicencePool,
    LicenceSource,
    LicenceStatus,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    RecordStatus,
    RuleScope,
    User,
    UserKind,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from server.tokens import new_api_key

SUPER_ADMIN, ADMIN, SENIOR = "SUPER_ADMIN", "ADMIN", "SENIOR_ASSESSOR"
MANAGER, ASSESSOR, COORDINATOR = "MANAGER", "ASSESSOR", "TRAINING_COORDINATOR"
LEARNER, EXTERNAL_ASSESSOR, SUPPORT = "LEARNER", "EXTERNAL_ASSESSOR", "SUPPORT"
MEMBERSHIP_ROLES = (SUPER_ADMIN, ADMIN, SENIOR, MANAGER, ASSESSOR, COORDINATOR, LEARNER)
# DESIGN.md: "a key's roles never include SUPER_ADMIN or LEARNER".
KEY_ROLES = (ADMIN, SENIOR, MANAGER, ASSESSOR, COORDINATOR)
# Who may take which kind of assignment (the assignee rule of assignRecords).
FITS = {
    AssignmentRole.ASSESSOR: frozenset({ASSESSOR, SENIOR}),
    AssignmentRole.TRAINING_COORDINATOR: frozenset({COORDINATOR}),
}

FIRST_NAMES = ("Ava", "ava", "Zoë", "Zoe", "Omar", "Élodie", "Sam", "Priya", "O'Neil", "Li")
LAST_NAMES = ("Adams", "Okafor", "de la Cruz", "Smith", "Nguyen", "Ødegaard", "100% Ltd", "Lee_")
PROGRAMMES = (
    "Adult Care Level 2",
    "Residential Childcare Level 3",
    "Lead Practitioner Level 5",
    "Team Leading Level 2",
)

COURSES = ("Safeguarding", "Moving and Handling", "Fire Safety")


class AllocationState(enum.StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"  # expires in the future: grants access
    EXPIRED = "expired"  # not ended, but past its expiry: grants nothing
    ENDED = "ended"


# --- The spec: what Hypothesis draws -----------------------------------------------------


@dataclass(frozen=True)
class MembershipSpec:
    person: int
    org: int
    roles: frozenset[str]
    location: int | None  # index into the organisation's locations
    department: int | None
    deactivated: bool = False  # DESIGN.md: cannot sign in there; their assignments there end


@dataclass(frozen=True)
class LearnerSpec:
    org: int
    person: int | None  # the sign-in, if any
    name: str
    location: int | None
    department: int | None


@dataclass(frozen=True)
class RecordSpec:
    learner: int
    programme: str
    archived: bool = False


@dataclass(frozen=True)
class AssignmentSpec:
    record: int
    person: int
    role: AssignmentRole
    ended: bool


@dataclass(frozen=True)
class AllocationSpec:
    learner: int
    external: int
    state: AllocationState


@dataclass(frozen=True)
class EvidenceSpec:
    record: int
    status: EvidenceStatus
    decided_by: int | None  # a person


@dataclass(frozen=True)
class ApiKeySpec:
    org: int
    roles: frozenset[str]
    revoked: bool


@dataclass(frozen=True)
class LicenceSpec:
    learner: int
    course: int
    status: LicenceStatus
    launched: bool
    rule: int | None  # index into the rules: issued by that rule


@dataclass(frozen=True)
class RuleSpec:
    org: int
    course: int
    deleted: bool


@dataclass(frozen=True)
class AuditSpec:
    org: int | None
    actor: tuple[str, int]  # ("person" | "support" | "external" | "key", index)


@dataclass(frozen=True)
class WorldSpec:
    units: tuple[tuple[int, int], ...]  # (locations, departments) per organisation
    persons: tuple[str, ...]
    memberships: tuple[MembershipSpec, ...]
    learners: tuple[LearnerSpec, ...]
    records: tuple[RecordSpec, ...]
    assignments: tuple[AssignmentSpec, ...]
    externals: tuple[str, ...]
    allocations: tuple[AllocationSpec, ...]
    evidence: tuple[EvidenceSpec, ...]
    supports: tuple[str, ...]
    api_keys: tuple[ApiKeySpec, ...]
    audit: tuple[AuditSpec, ...]
    pools: tuple[tuple[int, int], ...] = ()  # (organisation, course)
    rules: tuple[RuleSpec, ...] = ()
    licences: tuple[LicenceSpec, ...] = ()

    def principal_count(self) -> int:
        return (
            len(self.memberships)
            + len(self.externals)
            + len(self.supports)
            + sum(not k.revoked for k in self.api_keys)
        )


# Role sets of a membership: mostly one role, sometimes the unions DESIGN.md mentions.
ROLE_SETS: tuple[frozenset[str], ...] = tuple(
    frozenset(s)
    for s in (
        {SUPER_ADMIN},
        {ADMIN},
        {SENIOR},
        {MANAGER},
        {MANAGER},
        {ASSESSOR},
        {ASSESSOR},
        {COORDINATOR},
        {LEARNER},
        {LEARNER},
        {MANAGER, ASSESSOR},
        {ASSESSOR, LEARNER},
        {SENIOR, MANAGER},
        {MANAGER, LEARNER},
        {ADMIN, LEARNER},
        {COORDINATOR, ASSESSOR},
        {SUPER_ADMIN, ADMIN},
    )
)


def _role_sets() -> st.SearchStrategy[frozenset[str]]:
    return st.one_of(
        st.sampled_from(ROLE_SETS),
        st.frozensets(st.sampled_from(MEMBERSHIP_ROLES), min_size=1, max_size=3),
    )


@st.composite
def worlds(draw: st.DrawFn, max_organisations: int = 6) -> WorldSpec:
    """A world of 2 to `max_organisations` organisations (see the module docstring)."""
    organisations = draw(st.integers(2, max_organisations))
    units = tuple((draw(st.integers(1, 3)), draw(st.integers(1, 3))) for _ in range(organisations))
    name = st.builds(
        lambda f, last: f"{f} {last}", st.sampled_from(FIRST_NAMES), st.sampled_from(LAST_NAMES)
    )
    persons: list[str] = []
    memberships: list[MembershipSpec] = []

    def unit(org: int, which: int) -> int | None:
        return draw(st.none() | st.integers(0, units[org][which] - 1))

    def member(person: int, org: int, roles: frozenset[str], deactivated: bool = False) -> None:
        memberships.append(
            MembershipSpec(person, org, roles, unit(org, 0), unit(org, 1), deactivated)
        )

    def new_person() -> int:
        persons.append(draw(name))
        return len(persons) - 1

    # The cases every world holds, in organisation 0: two assessors and a coordinator to
    # assign, a learner sign-in, and a deactivated assessor.
    scaffold = [frozenset({ASSESSOR}), frozenset({ASSESSOR}), frozenset({COORDINATOR})]
    scaffold += [frozenset({LEARNER}), frozenset({ASSESSOR})]
    for n, roles in enumerate(scaffold):
        member(new_person(), 0, roles, deactivated=n == 4)
    for org in range(organisations):
        for roles in draw(st.lists(_role_sets(), min_size=2 if org else 1, max_size=5)):
            here = {m.person for m in memberships if m.org == org}
            elsewhere = [m.person for m in memberships if m.person not in here]
            deactivated = draw(st.integers(0, 7)) == 7
            if elsewhere and draw(st.integers(0, 4)) == 4:
                # joins a second organisation
                member(draw(st.sampled_from(elsewhere)), org, roles, deactivated)
            else:
                member(new_person(), org, roles, deactivated)
    # A person in two organisations with different roles, whatever was drawn.
    first = memberships[0]
    roles_elsewhere = draw(_role_sets().filter(lambda r: r != first.roles))
    if not any(m.person == first.person and m.org == 1 for m in memberships):
        member(first.person, 1, roles_elsewhere)

    # Learners: behind some LEARNER memberships (the scaffold's always), and without sign-in.
    learners: list[LearnerSpec] = []
    for index, m in enumerate(memberships):
        if LEARNER in m.roles and (index == 3 or draw(st.integers(0, 5)) < 5):
            learners.append(
                LearnerSpec(m.org, m.person, persons[m.person], unit(m.org, 0), unit(m.org, 1))
            )
    for org in range(organisations):
        for _ in range(draw(st.integers(2, 5))):
            learners.append(LearnerSpec(org, None, draw(name), unit(org, 0), unit(org, 1)))

    records: list[RecordSpec] = []
    for index, _ in enumerate(learners):
        for _ in range(draw(st.integers(1, 3))):
            archived = draw(st.integers(0, 5)) == 0
            records.append(RecordSpec(index, draw(st.sampled_from(PROGRAMMES)), archived))
    # The scaffold's learner sign-in has two live records, for two different assessors, and
    # an archived one that keeps its assessor.
    (signed_in,) = [i for i, lr in enumerate(learners) if lr.person == 3 and lr.org == 0]
    records += [
        RecordSpec(signed_in, PROGRAMMES[2], archived=True),
        RecordSpec(signed_in, PROGRAMMES[0]),
        RecordSpec(signed_in, PROGRAMMES[1]),
    ]

    assignments: list[AssignmentSpec] = []
    for index, record in enumerate(records):
        org = learners[record.learner].org
        eligible = {
            role: sorted({m.person for m in memberships if m.org == org and m.roles & fits})
            for role, fits in FITS.items()
        }
        assessors = eligible[AssignmentRole.ASSESSOR]
        coordinators = eligible[AssignmentRole.TRAINING_COORDINATOR]
        if assessors:
            for person in draw(st.lists(st.sampled_from(assessors), max_size=2, unique=True)):
                assignments.append(AssignmentSpec(index, person, AssignmentRole.ASSESSOR, False))
        with_coordinator: bool = draw(st.booleans())
        if coordinators and with_coordinator:
            person = draw(st.sampled_from(coordinators))
            assignments.append(
                AssignmentSpec(index, person, AssignmentRole.TRAINING_COORDINATOR, False)
            )
        if assessors + coordinators and draw(st.integers(0, 3)) == 3:
            person = draw(st.sampled_from(assessors + coordinators))
            role = (
                AssignmentRole.ASSESSOR
                if person in assessors
                else AssignmentRole.TRAINING_COORDINATOR
            )
            assignments.append(AssignmentSpec(index, person, role, True))
    two = len(records) - 2, len(records) - 1
    assignments += [
        AssignmentSpec(len(records) - 3, 0, AssignmentRole.ASSESSOR, False),  # archived record
        AssignmentSpec(two[0], 0, AssignmentRole.ASSESSOR, False),
        AssignmentSpec(two[1], 1, AssignmentRole.ASSESSOR, False),
        AssignmentSpec(two[1], 0, AssignmentRole.ASSESSOR, True),  # ended, kept as history
    ]
    if not any(
        a.record == two[0] and a.role is AssignmentRole.TRAINING_COORDINATOR and not a.ended
        for a in assignments
    ):
        assignments.append(AssignmentSpec(two[0], 2, AssignmentRole.TRAINING_COORDINATOR, False))
    assignments = _one_active_per_pair(
        _ended_when_deactivated(assignments, records, learners, memberships)
    )

    externals = [draw(name) for _ in range(draw(st.integers(1, 3)))]
    any_learner = st.integers(0, len(learners) - 1)
    # Every state at least once, and an allocation ended then renewed; then drawn ones.
    renewed = draw(any_learner)
    allocations = [
        AllocationSpec(renewed, len(externals) - 1, AllocationState.ENDED),
        AllocationSpec(renewed, len(externals) - 1, AllocationState.ACTIVE),
    ]
    others = any_learner.filter(lambda i: i != renewed)
    states = draw(st.lists(others, min_size=4, max_size=4, unique=True))
    allocations += [
        AllocationSpec(i, 0, state) for i, state in zip(states, AllocationState, strict=True)
    ]
    for external in range(len(externals)):
        for _ in range(draw(st.integers(0, 4))):
            allocations.append(
                AllocationSpec(draw(any_learner), external, draw(st.sampled_from(AllocationState)))
            )
    allocations = _one_open_per_pair(allocations)

    evidence: list[EvidenceSpec] = []
    for index, record in enumerate(records):
        org = learners[record.learner].org
        deciders = sorted(
            {m.person for m in memberships if m.org == org and m.roles & {ASSESSOR, SENIOR, ADMIN}}
        )
        for _ in range(draw(st.integers(0, 2) if index < len(records) - 1 else st.just(1))):
            status = draw(st.sampled_from(EvidenceStatus))
            decided_by = (
                None
                if status is EvidenceStatus.SUBMITTED or not deciders
                else draw(st.sampled_from(deciders))
            )
            evidence.append(EvidenceSpec(index, status, decided_by))

    supports = [draw(name) for _ in range(draw(st.integers(1, 2)))]
    api_keys = [ApiKeySpec(0, frozenset({ADMIN}), False), ApiKeySpec(0, frozenset({ADMIN}), True)]
    for org in range(organisations):
        for _ in range(draw(st.integers(0, 1))):
            roles = draw(st.frozensets(st.sampled_from(KEY_ROLES), min_size=1, max_size=2))
            api_keys.append(ApiKeySpec(org, roles, draw(st.integers(0, 4)) == 4))

    audit: list[AuditSpec] = []
    for org in range(organisations):
        people_here = sorted({m.person for m in memberships if m.org == org})
        keys_here = [i for i, k in enumerate(api_keys) if k.org == org]
        actors = [("person", p) for p in people_here] + [("key", k) for k in keys_here]
        actors += [("support", s) for s in range(len(supports))]
        actors += [("external", e) for e in range(len(externals))]
        for _ in range(draw(st.integers(1, 3))):
            audit.append(AuditSpec(org, draw(st.sampled_from(actors))))
    audit += [
        AuditSpec(None, ("support", 0)),
        AuditSpec(0, ("support", 0)),
        AuditSpec(1, ("person", 0)),
    ]

    # Courses: every organisation but the second has a pool for every course; the second lacks
    # the last one. Rules: one per pool, the first course's deleted. Licences: drawn per
    # learner and pool, at most one ACTIVE per learner and course.
    pools = tuple(
        (org, course)
        for org in range(organisations)
        for course in range(len(COURSES))
        if not (org == 1 and course == len(COURSES) - 1)
    )
    rules = tuple(RuleSpec(org, course, course == 0) for org, course in pools)
    licences: list[LicenceSpec] = []
    for index, lr in enumerate(learners):
        for course in range(len(COURSES)):
            if (lr.org, course) not in pools:
                continue
            rule = pools.index((lr.org, course))
            for status in draw(
                st.lists(st.sampled_from(list(LicenceStatus)), max_size=2, unique=True)
            ):
                launched = status is LicenceStatus.ACTIVE and draw(st.booleans())
                by_rule = draw(st.booleans())
                licences.append(
                    LicenceSpec(index, course, status, launched, rule if by_rule else None)
                )
    licences.append(LicenceSpec(signed_in, 0, LicenceStatus.ACTIVE, True, None))
    # and before it, one completed and one expired: the signed-in learner was licensed again
    licences.append(LicenceSpec(signed_in, 0, LicenceStatus.COMPLETED, True, None))
    licences.append(LicenceSpec(signed_in, 0, LicenceStatus.EXPIRED, False, None))
    licences = _one_active_licence(licences)

    return WorldSpec(
        units=units,
        persons=tuple(persons),
        memberships=tuple(memberships),
        learners=tuple(learners),
        records=tuple(records),
        assignments=tuple(assignments),
        externals=tuple(externals),
        allocations=tuple(allocations),
        evidence=tuple(evidence),
        supports=tuple(supports),
        api_keys=tuple(api_keys),
        audit=tuple(audit),
        pools=pools,
        rules=rules,
        licences=tuple(licences),
    )


def _ended_when_deactivated(
    assignments: list[AssignmentSpec],
    records: list[RecordSpec],
    learners: list[LearnerSpec],
    memberships: list[MembershipSpec],
) -> list[AssignmentSpec]:
    """DESIGN.md: deactivating a member ends their assignments there (history kept)."""
    gone = {(m.person, m.org) for m in memberships if m.deactivated}
    return [
        AssignmentSpec(a.record, a.person, a.role, True)
        if (a.person, learners[records[a.record].learner].org) in gone
        else a
        for a in assignments
    ]


def _one_active_licence(licences: list[LicenceSpec]) -> list[LicenceSpec]:
    """At most one ACTIVE licence per (learner, course)."""
    kept: list[LicenceSpec] = []
    active: set[tuple[int, int]] = set()
    for x in licences:
        if x.status is LicenceStatus.ACTIVE:
            if (x.learner, x.course) in active:
                continue
            active.add((x.learner, x.course))
        kept.append(x)
    return kept


def _one_active_per_pair(assignments: list[AssignmentSpec]) -> list[AssignmentSpec]:
    """At most one active row per (record, person, role), one active coordinator per record."""
    kept: list[AssignmentSpec] = []
    active: set[tuple[int, int, AssignmentRole]] = set()
    coordinated: set[int] = set()
    for a in assignments:
        if not a.ended:
            if (a.record, a.person, a.role) in active:
                continue
            if a.role is AssignmentRole.TRAINING_COORDINATOR:
                if a.record in coordinated:
                    continue
                coordinated.add(a.record)
            active.add((a.record, a.person, a.role))
        kept.append(a)
    return kept


def _one_open_per_pair(allocations: list[AllocationSpec]) -> list[AllocationSpec]:
    """At most one allocation not ended per (learner, external assessor)."""
    kept: list[AllocationSpec] = []
    open_pairs: set[tuple[int, int]] = set()
    for a in allocations:
        if a.state is not AllocationState.ENDED:
            if (a.learner, a.external) in open_pairs:
                continue
            open_pairs.add((a.learner, a.external))
        kept.append(a)
    return kept


# --- Facts: the built world as plain values -----------------------------------------------


@dataclass(frozen=True)
class OrganisationFact:
    id: int
    slug: str
    locations: tuple[int, ...]
    departments: tuple[int, ...]


@dataclass(frozen=True)
class UserFact:
    id: int
    email: str
    name: str
    kind: str  # a UserKind value


@dataclass(frozen=True)
class MembershipFact:
    user_id: int
    organisation_id: int
    roles: frozenset[str]
    location_id: int | None
    department_id: int | None
    deactivated: bool = False


@dataclass(frozen=True)
class LearnerFact:
    id: int
    organisation_id: int
    user_id: int | None
    name: str
    email: str | None
    location_id: int | None
    department_id: int | None


@dataclass(frozen=True)
class RecordFact:
    id: int
    learner_id: int
    organisation_id: int
    programme: str
    live: bool


@dataclass(frozen=True)
class AssignmentFact:
    id: int
    record_id: int
    organisation_id: int
    user_id: int
    role: AssignmentRole
    ended: bool


@dataclass(frozen=True)
class AllocationFact:
    id: int
    learner_id: int
    organisation_id: int
    assessor_id: int
    ended: bool
    expires_at: datetime | None

    def grants(self, now: datetime) -> bool:
        """Active and unexpired: the allocation gives its assessor the learner."""
        return not self.ended and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class EvidenceFact:
    id: int
    record_id: int
    organisation_id: int
    decided_by: int | None
    status: str  # an EvidenceStatus value


@dataclass(frozen=True)
class ApiKeyFact:
    id: int
    organisation_id: int
    user_id: int
    roles: frozenset[str]
    revoked: bool
    key: str


@dataclass(frozen=True)
class PoolFact:
    organisation_id: int
    course_id: int
    id: int = 0


@dataclass(frozen=True)
class RuleFact:
    id: int
    organisation_id: int
    course_id: int
    deleted: bool


@dataclass(frozen=True)
class LicenceFact:
    id: int
    learner_id: int
    organisation_id: int
    course_id: int
    status: LicenceStatus
    rule_id: int | None
    launched: bool


@dataclass(frozen=True)
class AuditFact:
    id: int
    organisation_id: int | None
    actor_id: int | None
    api_key_id: int | None


@dataclass(frozen=True)
class WebhookFact:
    """An endpoint, or one of its deliveries (`endpoint_id`: the endpoint's)."""

    id: int
    organisation_id: int
    endpoint_id: int
    pending: bool = True  # a delivery waiting to be sent (redelivering it changes nothing)


@dataclass(frozen=True)
class Who:
    """A principal: a membership signed in for its organisation, an external assessor,
    a support user, or an API key."""

    kind: str  # STAFF, EXTERNAL_ASSESSOR, SUPPORT or API_KEY
    user_id: int
    organisation_id: int | None
    roles: frozenset[str]
    location_id: int | None = None
    department_id: int | None = None
    api_key_id: int | None = None
    signs_in: bool = True  # False: a membership deactivated there (its token is refused)

    def label(self, facts: Facts) -> str:
        roles = "+".join(sorted(self.roles))
        where = f" in organisation {self.organisation_id}" if self.organisation_id else ""
        units = (
            f" (location {self.location_id}, department {self.department_id})"
            if MANAGER in self.roles
            else ""
        )
        if self.kind == "API_KEY":
            return f"API key {self.api_key_id} as {roles}{where}"
        gone = "" if self.signs_in else " (deactivated there)"
        email = facts.users[self.user_id].email
        return f"{email} (user {self.user_id}) as {roles}{where}{units}{gone}"


@dataclass
class Facts:
    now: datetime
    organisations: list[OrganisationFact] = field(default_factory=list)
    users: dict[int, UserFact] = field(default_factory=dict)
    memberships: list[MembershipFact] = field(default_factory=list)
    learners: list[LearnerFact] = field(default_factory=list)
    records: list[RecordFact] = field(default_factory=list)
    assignments: list[AssignmentFact] = field(default_factory=list)
    allocations: list[AllocationFact] = field(default_factory=list)
    evidence: list[EvidenceFact] = field(default_factory=list)
    api_keys: list[ApiKeyFact] = field(default_factory=list)
    audit: list[AuditFact] = field(default_factory=list)
    courses: list[int] = field(default_factory=list)
    pools: list[PoolFact] = field(default_factory=list)
    rules: list[RuleFact] = field(default_factory=list)
    licences: list[LicenceFact] = field(default_factory=list)
    # The outbox, in commit order: (subject type, subject id) of each change.
    changes: list[tuple[str, int]] = field(default_factory=list)
    webhook_endpoints: list[WebhookFact] = field(default_factory=list)
    webhook_deliveries: list[WebhookFact] = field(default_factory=list)

    def principals(self) -> list[Who]:
        staff = [
            Who(
                "STAFF",
                m.user_id,
                m.organisation_id,
                m.roles,
                m.location_id,
                m.department_id,
                signs_in=not m.deactivated,
            )
            for m in self.memberships
        ]
        people = [
            Who(u.kind, u.id, None, frozenset({u.kind}))
            for u in self.users.values()
            if u.kind in (EXTERNAL_ASSESSOR, SUPPORT)
        ]
        keys = [
            Who("API_KEY", k.user_id, k.organisation_id, k.roles, api_key_id=k.id)
            for k in self.api_keys
            if not k.revoked
        ]
        return staff + people + keys

    def slug(self, organisation_id: int) -> str:
        (found,) = [o.slug for o in self.organisations if o.id == organisation_id]
        return found

    def key_of(self, who: Who) -> str:
        (found,) = [k.key for k in self.api_keys if k.id == who.api_key_id]
        return found


async def build(engine: AsyncEngine, spec: WorldSpec) -> Facts:
    """Write the world in one transaction; return its facts."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    facts = Facts(now=datetime.now(UTC))
    now = facts.now
    session: AsyncSession
    async with maker() as session, session.begin():

        async def save(*rows: Any) -> None:
            session.add_all(rows)
            await session.flush()

        organisations = [
            Organisation(slug=f"org-{n}", name=f"Organisation {n}", created_at=now)
            for n in range(len(spec.units))
        ]
        await save(*organisations)
        units: list[tuple[list[Location], list[Department]]] = []
        for org, (locations, departments) in zip(organisations, spec.units, strict=True):
            locs = [Location(organisation_id=org.id, name=f"Site {n}") for n in range(locations)]
            deps = [
                Department(organisation_id=org.id, name=f"Team {n}") for n in range(departments)
            ]
            await save(*locs, *deps)
            units.append((locs, deps))
            facts.organisations.append(
                OrganisationFact(
                    org.id, org.slug, tuple(x.id for x in locs), tuple(x.id for x in deps)
                )
            )

        def unit_id(org: int, which: int, index: int | None) -> int | None:
            return None if index is None else units[org][which][index].id

        def user(kind: UserKind, name: str, email: str) -> User:
            return User(email=email, name=name, kind=kind, created_at=now)

        persons = [
            user(UserKind.STAFF, name, f"person{n}@example.org")
            for n, name in enumerate(spec.persons)
        ]
        externals = [
            user(UserKind.EXTERNAL_ASSESSOR, name, f"external{n}@example.org")
            for n, name in enumerate(spec.externals)
        ]
        supports = [
            user(UserKind.SUPPORT, name, f"support{n}@example.org")
            for n, name in enumerate(spec.supports)
        ]
        services = [
            user(UserKind.SERVICE, f"API key {n}", f"apikey{n}@service.invalid")
            for n, _ in enumerate(spec.api_keys)
        ]
        await save(*persons, *externals, *supports, *services)
        for u in (*persons, *externals, *supports, *services):
            facts.users[u.id] = UserFact(u.id, u.email, u.name, u.kind.value)

        for m in spec.memberships:
            row = Membership(
                user_id=persons[m.person].id,
                organisation_id=organisations[m.org].id,
                location_id=unit_id(m.org, 0, m.location),
                department_id=unit_id(m.org, 1, m.department),
                created_at=now,
                deactivated_at=now - timedelta(days=1) if m.deactivated else None,
            )
            await save(row)
            await save(*(MembershipRole(membership_id=row.id, role=r) for r in sorted(m.roles)))
            facts.memberships.append(
                MembershipFact(
                    row.user_id,
                    row.organisation_id,
                    m.roles,
                    row.location_id,
                    row.department_id,
                    m.deactivated,
                )
            )

        learners = [
            Learner(
                organisation_id=organisations[lr.org].id,
                user_id=None if lr.person is None else persons[lr.person].id,
                name=lr.name,
                email=None if lr.person is None else persons[lr.person].email,
                location_id=unit_id(lr.org, 0, lr.location),
                department_id=unit_id(lr.org, 1, lr.department),
                created_at=now,
            )
            for lr in spec.learners
        ]
        await save(*learners)
        facts.learners += [
            LearnerFact(
                x.id, x.organisation_id, x.user_id, x.name, x.email, x.location_id, x.department_id
            )
            for x in learners
        ]

        records = [
            ApprenticeRecord(
                organisation_id=learners[r.learner].organisation_id,
                learner_id=learners[r.learner].id,
                programme=r.programme,
                status=RecordStatus.ARCHIVED if r.archived else RecordStatus.LIVE,
                created_at=now,
            )
            for r in spec.records
        ]
        await save(*records)
        facts.records += [
            RecordFact(x.id, x.learner_id, x.organisation_id, x.programme, not r.archived)
            for x, r in zip(records, spec.records, strict=True)
        ]

        assignments = [
            RecordAssignment(
                organisation_id=records[a.record].organisation_id,
                record_id=records[a.record].id,
                user_id=persons[a.person].id,
                role=a.role,
                assigned_at=now - timedelta(days=10),
                ended_at=now - timedelta(days=1) if a.ended else None,
            )
            for a in spec.assignments
        ]
        await save(*assignments)
        facts.assignments += [
            AssignmentFact(
                x.id, x.record_id, x.organisation_id, x.user_id, x.role, x.ended_at is not None
            )
            for x in assignments
        ]

        expiry = {
            AllocationState.ACTIVE: None,
            AllocationState.EXPIRING: now + timedelta(days=30),
            AllocationState.EXPIRED: now - timedelta(days=1),
            AllocationState.ENDED: None,
        }
        allocations = [
            Allocation(
                organisation_id=learners[a.learner].organisation_id,
                learner_id=learners[a.learner].id,
                assessor_id=externals[a.external].id,
                allocated_at=now - timedelta(days=20),
                expires_at=expiry[a.state],
                ended_at=now - timedelta(days=2) if a.state is AllocationState.ENDED else None,
            )
            for a in spec.allocations
        ]
        await save(*allocations)
        facts.allocations += [
            AllocationFact(
                x.id,
                x.learner_id,
                x.organisation_id,
                x.assessor_id,
                x.ended_at is not None,
                x.expires_at,
            )
            for x in allocations
        ]

        evidence = [
            Evidence(
                organisation_id=records[e.record].organisation_id,
                record_id=records[e.record].id,
                title="Reflective account",
                status=e.status,
                submitted_at=now - timedelta(days=3),
                decided_by_id=None if e.decided_by is None else persons[e.decided_by].id,
                decided_at=None if e.decided_by is None else now - timedelta(days=1),
                comment=None if e.status is not EvidenceStatus.REFERRED else "Add a reflection.",
            )
            for e in spec.evidence
        ]
        await save(*evidence)
        facts.evidence += [
            EvidenceFact(x.id, x.record_id, x.organisation_id, x.decided_by_id, x.status.value)
            for x in evidence
        ]

        keys = []
        for k, service in zip(spec.api_keys, services, strict=True):
            secret, prefix, digest = new_api_key()
            key_row = ApiKey(
                organisation_id=organisations[k.org].id,
                user_id=service.id,
                name=f"partner {service.id}",
                prefix=prefix,
                key_hash=digest,
                roles=",".join(sorted(k.roles)),
                created_at=now,
                revoked_at=now - timedelta(hours=1) if k.revoked else None,
            )
            keys.append(key_row)
            await save(key_row)
            facts.api_keys.append(
                ApiKeyFact(
                    key_row.id, key_row.organisation_id, service.id, k.roles, k.revoked, secret
                )
            )

        events = []
        for a in spec.audit:
            kind, index = a.actor
            actor: User = {
                "person": persons,
                "support": supports,
                "external": externals,
                "key": services,
            }[kind][index]
            events.append(
                AuditEvent(
                    organisation_id=None if a.org is None else organisations[a.org].id,
                    at=now,
                    actor_id=actor.id,
                    api_key_id=keys[index].id if kind == "key" else None,
                    client="tests",
                    action=AuditAction.LEARNER_CREATED,
                    subject_type="Organisation",
                    subject_id=None,
                )
            )
        await save(*events)
        facts.audit += [
            AuditFact(x.id, x.organisation_id, x.actor_id, x.api_key_id) for x in events
        ]

        courses = [
            Course(title=title, code=f"C-{n}", created_at=now) for n, title in enumerate(COURSES)
        ]
        await save(*courses)
        facts.courses += [c.id for c in courses]
        used = {pool: 0 for pool in spec.pools}
        for x in spec.licences:
            if x.status is not LicenceStatus.RECALLED:
                used[(spec.learners[x.learner].org, x.course)] += 1
        pools = {
            (org, course): LicencePool(
                organisation_id=organisations[org].id,
                course_id=courses[course].id,
                seats_total=used[(org, course)] + 100,
                seats_used=used[(org, course)],
                updated_at=now,
            )
            for org, course in spec.pools
        }
        await save(*pools.values())
        facts.pools += [PoolFact(p.organisation_id, p.course_id, p.id) for p in pools.values()]
        rules = [
            AutoAllocationRule(
                organisation_id=organisations[r.org].id,
                course_id=courses[r.course].id,
                scope=RuleScope.ENTIRE_COMPANY,
                created_at=now - timedelta(days=30),
                deleted_at=now - timedelta(days=1) if r.deleted else None,
            )
            for r in spec.rules
        ]
        await save(*rules)
        facts.rules += [
            RuleFact(x.id, x.organisation_id, x.course_id, x.deleted_at is not None) for x in rules
        ]
        # An EXPIRED licence is mostly an ACTIVE row past its expiry (read as EXPIRED); where
        # its learner holds an ACTIVE one for the course too, the row says EXPIRED (as
        # allocating the new one left it). Unlaunched ACTIVE licences expire in a month.
        active_pairs = {
            (x.learner, x.course) for x in spec.licences if x.status is LicenceStatus.ACTIVE
        }

        def stored(x: LicenceSpec) -> tuple[LicenceStatus, datetime | None]:
            if x.status is LicenceStatus.EXPIRED:
                kept = (x.learner, x.course) in active_pairs
                return (LicenceStatus.EXPIRED if kept else LicenceStatus.ACTIVE), now - timedelta(
                    days=2
                )
            if x.status is LicenceStatus.ACTIVE and not x.launched:
                return x.status, now + timedelta(days=30)
            return x.status, None

        licences = [
            Licence(
                organisation_id=learners[x.learner].organisation_id,
                pool_id=pools[(spec.learners[x.learner].org, x.course)].id,
                learner_id=learners[x.learner].id,
                course_id=courses[x.course].id,
                status=stored(x)[0],
                expires_at=stored(x)[1],
                completed_at=now - timedelta(days=1)
                if x.status is LicenceStatus.COMPLETED
                else None,
                source=LicenceSource.MANUAL if x.rule is None else LicenceSource.RULE,
                rule_id=None if x.rule is None else rules[x.rule].id,
                allocated_at=now - timedelta(days=5),
                launched_at=now - timedelta(days=4) if x.launched else None,
                recalled_at=now - timedelta(days=3) if x.status is LicenceStatus.RECALLED else None,
            )
            for x in spec.licences
        ]
        await save(*licences)
        facts.licences += [
            LicenceFact(
                x.id,
                x.learner_id,
                x.organisation_id,
                x.course_id,
                y.status,  # as it reads: EXPIRED past its expiry
                x.rule_id,
                x.launched_at is not None,
            )
            for x, y in zip(licences, spec.licences, strict=True)
        ]
        await save(*the_changes(facts))
        # Every organisation has a webhook endpoint with two deliveries (of changes of its own,
        # after the outbox's other rows, to objects that are gone: the feed shows no one
        # them, so the feed's model stays the_changes'), one delivered, one waiting.
        last = len(facts.changes)
        for n, org in enumerate(organisations):
            changes = [
                Change(
                    position=last + 2 * n + k + 1,
                    at=now,
                    organisation_id=org.id,
                    action=AuditAction.LEARNER_CREATED,
                    subject_type="Learner",
                    subject_id=GONE_PK + 1 + 2 * n + k,
                )
                for k in range(2)
            ]
            endpoint = WebhookEndpoint(
                organisation_id=org.id,
                url=f"https://hooks.example.org/{org.slug}",
                events=AuditAction.LEARNER_CREATED.value,
                secret="whsec_" + "A" * 44,
                created_at=now,
                updated_at=now,
                after_position=last + 2 * n + 2,
            )
            await save(*changes, endpoint)
            deliveries = [
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    organisation_id=org.id,
                    change_id=change.id,
                    change_position=change.position,
                    status=status,
                    attempts=1,
                    created_at=now,
                    next_attempt_at=now + timedelta(days=1),
                    delivered_at=now if status is WebhookDeliveryStatus.DELIVERED else None,
                )
                for change, status in zip(
                    changes,
                    (WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.PENDING),
                    strict=True,
                )
            ]
            await save(*deliveries)
            facts.webhook_endpoints.append(WebhookFact(endpoint.id, org.id, endpoint.id))
            facts.webhook_deliveries += [
                WebhookFact(d.id, org.id, endpoint.id, d.status is WebhookDeliveryStatus.PENDING)
                for d in deliveries
            ]
    return facts


# The action each kind of object's change names (its creation, as the mutations write it).
CHANGE_ACTIONS: dict[str, AuditAction] = {
    "Organisation": AuditAction.ORGANISATION_CREATED,
    "Location": AuditAction.LOCATION_CREATED,
    "Department": AuditAction.DEPARTMENT_CREATED,
    "User": AuditAction.STAFF_MEMBER_UPDATED,
    "Learner": AuditAction.LEARNER_CREATED,
    "ApprenticeRecord": AuditAction.APPRENTICE_RECORD_CREATED,
    "Assignment": AuditAction.RECORDS_ASSIGNED,
    "Allocation": AuditAction.ASSESSOR_ALLOCATED,
    "Evidence": AuditAction.EVIDENCE_SUBMITTED,
    "Course": AuditAction.COURSE_CREATED,
    "LicencePool": AuditAction.LICENCE_POOL_SET,
    "Licence": AuditAction.LICENCES_ALLOCATED,
    "AutoAllocationRule": AuditAction.AUTO_ALLOCATION_RULE_CREATED,
    "ApiKey": AuditAction.API_KEY_CREATED,
}
GONE_PK = 10**9  # a change's subject that no longer exists (no row has this key)


def all_ids(facts: Facts) -> dict[str, list[int]]:
    """Every object of the world by GraphQL type (the ids `node` is probed with)."""
    return {
        "Organisation": [o.id for o in facts.organisations],
        "Location": [x for o in facts.organisations for x in o.locations],
        "Department": [x for o in facts.organisations for x in o.departments],
        "User": sorted(facts.users),
        "Learner": [lf.id for lf in facts.learners],
        "ApprenticeRecord": [r.id for r in facts.records],
        "Assignment": [a.id for a in facts.assignments],
        "Allocation": [a.id for a in facts.allocations],
        "Evidence": [e.id for e in facts.evidence],
        "AuditEvent": [e.id for e in facts.audit],
        "Licence": [x.id for x in facts.licences],
        "Course": list(facts.courses),
        "AutoAllocationRule": [r.id for r in facts.rules],
        "ApiKey": [k.id for k in facts.api_keys],
        "WebhookEndpoint": [w.id for w in facts.webhook_endpoints],
        "WebhookDelivery": [d.id for d in facts.webhook_deliveries],
    }


def the_changes(facts: Facts) -> list[Change]:
    """The outbox the world's writes left, in commit order: a change to every object of
    every kind a change can be about (two to each learner, apart), and one to an object of
    each kind that is gone. Sets `facts.changes`."""
    ids = {**all_ids(facts), "LicencePool": [p.id for p in facts.pools]}
    subjects = {kind: ids[kind] for kind in CHANGE_ACTIONS}
    order = [(t, pk) for t, pks in subjects.items() for pk in [*pks, GONE_PK]]
    order += [("Learner", lf.id) for lf in facts.learners]  # again, after the rest
    # interleave the kinds, as mutations of many kinds commit
    order = order[::2] + order[1::2]
    facts.changes = order
    return [
        Change(
            position=n,
            at=facts.now,
            action=CHANGE_ACTIONS[t],
            subject_type=t,
            subject_id=pk,
        )
        for n, (t, pk) in enumerate(order, start=1)
    ]
