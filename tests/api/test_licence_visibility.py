"""Who sees which course, pool, licence and rule, for every principal of a generated world.

The generated world of test_visibility gains a catalogue, pools, licences (active, recalled,
launched, issued by rules) and rules (one deleted). The reference model is DESIGN.md's Reads
table written as sets, independent of policy.csv:
- licences: of the learners the principal sees (support: none);
- course catalogue: everyone but external assessors;
- a course's `pool`: the principal's organisation's pool, for SUPER_ADMIN, ADMIN and MANAGER;
- auto-allocation rules: the organisation's, for SUPER_ADMIN and ADMIN.
A second test widens the policy one row at a time and shows this comparison catches each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from db.models import Learner, LicenceStatus, Organisation
from policies.enforcer import POLICY_PATH, PolicyStore, load_enforcer
from server.services import Services
from tests.api.test_visibility import (
    EXTERNAL_ASSESSOR,
    SUPPORT,
    Facts,
    Lookup,
    Problems,
    Reference,
    Who,
    build_world,
    read_connection,
    read_invisible,
    read_visible,
)
from tests.factories import World
from tests.helpers import Api, gid

SEED = 4242
POOL_READERS = frozenset({"SUPER_ADMIN", "ADMIN", "MANAGER"})
RULE_READERS = frozenset({"SUPER_ADMIN", "ADMIN"})

LICENCE_NODE = Lookup("node(id:) of licences", "Licence", "node", "{ ... on Node { id } }")
RULE_NODE = Lookup("node(id:) of rules", "AutoAllocationRule", "node", "{ ... on Node { id } }")
COURSE_NODE = Lookup("node(id:) of courses", "Course", "node", "{ ... on Node { id } }")

POOLS = "{ courses(first: 500) { edges { node { id pool { seatsTotal } } } } }"
RULES = "{ autoAllocationRules { id } }"
NESTED = "{ learners(first: 500) { edges { node { id licences { id } } } } }"


@dataclass
class LicenceFacts:
    courses: list[int] = field(default_factory=list)
    pools: set[tuple[int, int]] = field(default_factory=set)  # (organisation, course)
    licences: dict[int, int] = field(default_factory=dict)  # licence → learner
    rules: dict[int, int] = field(default_factory=dict)  # rule → organisation
    deleted: set[int] = field(default_factory=set)  # rules no longer in force


async def add_licences(world: World, facts: Facts, rng: random.Random) -> LicenceFacts:
    """Courses, pools (not every organisation has one for every course), licences, rules."""
    found = LicenceFacts()
    courses = [await world.course() for _ in range(3)]
    found.courses = [c.id for c in courses]
    learners_of: dict[int, list[int]] = {}
    for lf in facts.learners:
        learners_of.setdefault(lf.organisation_id, []).append(lf.id)
    for n, org in enumerate(facts.organisations):
        rule_rows = []
        for course in courses[: 3 - (n % 2)]:
            pool = await world.pool(org, course, 200)
            found.pools.add((org.id, course.id))
            rule = await world.rule(org, course, deleted=course is courses[1])
            found.rules[rule.id] = org.id
            if rule.deleted_at is not None:
                found.deleted.add(rule.id)
            rule_rows.append((pool, rule))
        for learner_id in learners_of.get(org.id, []):
            for pool, rule in rule_rows:
                if rng.random() < 0.4:
                    status = rng.choice(
                        [LicenceStatus.ACTIVE, LicenceStatus.ACTIVE, LicenceStatus.RECALLED]
                    )
                    row = await world.licence(
                        pool,
                        Learner(id=learner_id, organisation_id=org.id),
                        status=status,
                        launched=status == LicenceStatus.ACTIVE and rng.random() < 0.3,
                        rule=rule if rng.random() < 0.3 else None,
                    )
                    found.licences[row.id] = learner_id
    return found


@dataclass
class Expected:
    licences: set[str]
    courses: set[str]
    pools: set[str]  # courses whose `pool` is shown
    rules: set[str]  # by id, deleted ones included
    in_force: set[str]
    licences_of: dict[str, set[str]]


def expected(who: Who, model: Reference, lic: LicenceFacts) -> Expected:
    learners, _ = model.learners_and_records(who)
    licences = {gid("Licence", pk) for pk, learner in lic.licences.items() if learner in learners}
    licences_of = {
        gid("Learner", learner): {
            gid("Licence", pk) for pk, holder in lic.licences.items() if holder == learner
        }
        for learner in learners
    }
    courses = set() if who.kind == EXTERNAL_ASSESSOR else {gid("Course", pk) for pk in lic.courses}
    org: Organisation | None = who.organisation
    pools: set[str] = set()
    rules: set[str] = set()
    if org is not None and who.roles & POOL_READERS:
        pools = {gid("Course", c) for o, c in lic.pools if o == org.id}
    if org is not None and who.roles & RULE_READERS:
        rules = {gid("AutoAllocationRule", r) for r, o in lic.rules.items() if o == org.id}
    in_force = rules - {gid("AutoAllocationRule", r) for r in lic.deleted}
    return Expected(licences, courses, pools, rules, in_force, licences_of)


async def compare(
    api: Api, facts: Facts, model: Reference, lic: LicenceFacts, *, thorough: bool
) -> Problems:
    problems = Problems(facts)
    all_licences = [gid("Licence", pk) for pk in lic.licences]
    all_rules = [gid("AutoAllocationRule", pk) for pk in lic.rules]
    all_courses = [gid("Course", pk) for pk in lic.courses]
    for who in facts.principals():
        want = expected(who, model, lic)
        caller = api.as_(who.user, who.organisation)
        await read_connection(caller, who, problems, "licences", want.licences, 500)
        await read_connection(caller, who, problems, "courses", want.courses, 500)
        if thorough and who.kind != SUPPORT and who.roles != {"LEARNER"}:
            await read_connection(caller, who, problems, "licences", want.licences, 9)
        shown = (await caller(POOLS)).ok()["courses"]["edges"]
        problems.compare(
            who,
            "courses { pool }",
            (e["node"]["id"] for e in shown if e["node"]["pool"]),
            want.pools,
        )
        rules = (await caller(RULES)).ok()["autoAllocationRules"]
        problems.compare(who, "autoAllocationRules", (r["id"] for r in rules), want.in_force)
        if not thorough:
            continue  # the lists alone show a widened policy
        nested = (await caller(NESTED)).ok()["learners"]["edges"]
        for edge in nested:
            problems.compare(
                who,
                f"learner {edge['node']['id']} licences",
                (x["id"] for x in edge["node"]["licences"]),
                want.licences_of.get(edge["node"]["id"], set()),
            )
        for lookup, everything, visible in (
            (LICENCE_NODE, all_licences, want.licences),
            (RULE_NODE, all_rules, want.rules),
            (COURSE_NODE, all_courses, want.courses),
        ):
            await read_visible(
                caller, who, problems, lookup, [i for i in everything if i in visible]
            )
            await read_invisible(
                caller, who, problems, lookup, [i for i in everything if i not in visible]
            )
    return problems


async def world_with_licences(world: World) -> tuple[Facts, Reference, LicenceFacts]:
    rng = random.Random(SEED)
    facts = await build_world(world, rng)
    lic = await add_licences(world, facts, rng)
    # some organisation lacks a pool for some course; some rules were deleted
    assert len(lic.pools) < len(lic.courses) * len(facts.organisations)
    assert lic.deleted and len(lic.licences) > 20
    return facts, Reference(facts), lic


async def test_every_principal_sees_exactly_the_licences_courses_pools_and_rules_of_the_model(
    api: Api, world: World
) -> None:
    facts, model, lic = await world_with_licences(world)
    problems = await compare(api, facts, model, lic, thorough=True)
    assert not problems.found, problems.report()


# Each row widens what DESIGN.md allows; the comparison must notice every one.
WIDENINGS = [
    "p, ASSESSOR, licence, read, organisation",
    "p, MANAGER, licence, read, organisation",
    "p, EXTERNAL_ASSESSOR, course, read, all",
    "p, SENIOR_ASSESSOR, licence_pool, read, organisation",
    "p, MANAGER, auto_allocation_rule, read, organisation",
    "p, LEARNER, licence, read, organisation",
    "p, LEARNER, licence_pool, read, organisation",
]


async def test_a_widened_policy_is_caught(
    api: Api, world: World, services: Services, tmp_path: Path
) -> None:
    facts, model, lic = await world_with_licences(world)
    original = services.policies
    missed = []
    try:
        for row in WIDENINGS:
            widened = tmp_path / "policy.csv"
            widened.write_text(POLICY_PATH.read_text() + f"\n{row}\n")
            services.policies = PolicyStore(load_enforcer(policy=widened))
            problems = await compare(api, facts, model, lic, thorough=False)
            if not problems.found:
                missed.append(row)
    finally:
        services.policies = original
    assert not missed, f"widening not caught: {missed}"
