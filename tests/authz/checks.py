"""Ask the API everything one principal can ask, and compare each answer with the model.

For one principal of a built world, `check_principal` checks
- a membership deactivated there: its token is refused, and nothing else is asked;
- `viewer`;
- the `learners`, `apprenticeRecords`, `staff`, `externalAssessors`, `licences`, `courses`,
  `evidence`, `auditEvents` and `organisations` connections, paged to the end, with
  `totalCount` on every page, and the `autoAllocationRules` and `apiKeys` lists;
- every filter of `learners`, `apprenticeRecords`, `staff`, `externalAssessors`, `licences`
  and `evidence`, for every
  unit, user and learner id of the world and a made-up one: a filter naming an id the
  caller cannot see answers exactly like one naming a made-up id;
- `node(id:)` for every id of every Node type (and `learner(id:)` for every learner), with
  every nested path of the visible ones; an invisible id answers byte for byte like a
  made-up one;
- `Learner.access` on every visible learner;
- the Actions table, without changing anything: each mutation is sent with input that
  fails validation only after the permission check, so a permitted target answers a typed
  validation (or NotFound-for-the-other-id) error, an invisible one NOT_FOUND, and a
  visible one the caller may not change FORBIDDEN;
- `viewerCan` on every object it sees and `Viewer.can`: the model's Actions table, and what
  the mutations probed above answered on the same objects.

Every disagreement is collected in `Problems`, so one run shows the whole picture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from resolvers.ids import MalformedId, decode_id
from schema import schema
from tests.authz import TALLY
from tests.authz.model import (
    ACTION_ROLES,
    CAPABILITY_FLAGS,
    FLAG_OPERATIONS,
    Model,
    capabilities,
    viewer_can,
)
from tests.authz.world import SUPER_ADMIN as SUPER_ADMIN_ROLE
from tests.authz.world import Facts, Who, all_ids
from tests.helpers import Api, Caller, gid

# The proof's app raises the alias and token limits (PROOF_LIMITS) so that one principal's
# ids go in a few requests: dataloaders batch per type whatever the batch, so the answers
# are the same; the limits themselves are tested in tests/api/test_limits_and_caches.py.
MAX_ALIASES = 300
PROOF_LIMITS: dict[str, object] = {
    "max_aliases": 10 * MAX_ALIASES,  # the node fragment's own aliases count per use
    "max_tokens": 60_000,
    "max_cost": 10_000_000,
}
PAGE = 500  # the API's largest `first`
SMALL_PAGE = 3
MISSING_PK = 10**9  # no row has this primary key
PAST = "2000-01-01T00:00:00+00:00"
FORBIDDEN_PROBES_PER_OPERATION = 3  # each costs a request of its own (a non-null root error)

NODE_TYPES = (
    "Organisation",
    "Location",
    "Department",
    "User",
    "Learner",
    "ApprenticeRecord",
    "Assignment",
    "Allocation",
    "Evidence",
    "AuditEvent",
    "Licence",
    "Course",
    "AutoAllocationRule",
    "ApiKey",
    "WebhookEndpoint",
    "WebhookDelivery",
)

NODE_FRAGMENT = """
fragment N on Node {
  __typename id
  ... on Learner { organisation { id } location { id } department { id } records { id }
                   allocations { id } allAllocations: allocations(includeEnded: true) { id }
                   assessors { id } evidence { id } licences { id }
                   recalled: licences(filter: {status: RECALLED}) { id }
                   licenceRules: licences { id rule { id } }
                   expired: licences(filter: {status: EXPIRED}) { id }
                   active: licences(filter: {status: ACTIVE}) { id } }
  ... on ApprenticeRecord { learner { id } assignments { id } evidence { id }
                            allAssignments: assignments(includeEnded: true) { id } }
  ... on Assignment { user { id } record { id } }
  ... on Allocation { assessor { id } learner { id } }
  ... on Evidence { record { id } decidedBy { id } }
  ... on User { caseloadCount roles deactivatedAt }
  ... on Organisation { locations { id } departments { id } }
  ... on AuditEvent { actor { id } apiKey { id } }
  ... on Licence { learner { id } course { id } rule { id } status }
  ... on Course { pool { seatsTotal } }
  ... on AutoAllocationRule { course { id } }
  ... on WebhookDelivery { endpoint { id } }
}"""

CONNECTION = "totalCount edges { node { id } } pageInfo { hasNextPage endCursor }"
FILTERED = "totalCount edges { node { id } } pageInfo { hasNextPage }"

VIEWER = """query {
  viewer { user { id } roles organisation { id locations { id } departments { id } } }
}"""


def outcome_selection(operation: str) -> str:
    """The result selection of a probe: only fragments on types its union can hold."""
    union = schema._schema.mutation_type.fields[operation].type.of_type
    members = {t.name for t in union.types}
    parts = ["__typename ... on Error { code } ... on ValidationError { field }"]
    if "NotFoundError" in members:
        parts.append("... on NotFoundError { id }")
    if "BulkRejectedError" in members:
        parts.append("... on BulkRejectedError { items { id code } }")
    return "{ " + " ".join(parts) + " }"


class NewProblem(Exception):
    """Raised at the first problem a baseline did not have (mutation testing stops there)."""


class Problems:
    """Every disagreement with the model, as deterministic text."""

    def __init__(self, known: frozenset[str] | None = None) -> None:
        self.found: list[str] = []
        self.known = known

    def add(self, who: str, what: str, detail: str) -> None:
        text = f"{who} — {what}: {detail}"
        self.found.append(text)
        if self.known is not None and text not in self.known:
            raise NewProblem(text)

    def compare(self, who: str, what: str, got: Sequence[str], expected: Iterable[str]) -> None:
        wanted = set(expected)
        if len(got) != len(set(got)):
            self.add(who, what, f"duplicates {sorted({g for g in got if got.count(g) > 1})}")
        if set(got) != wanted:
            unexpected, missing = sorted(set(got) - wanted), sorted(wanted - set(got))
            self.add(
                who,
                what,
                f"{len(unexpected)} unexpected {describe(unexpected)}; "
                f"{len(missing)} missing {describe(missing)}",
            )

    def report(self, limit: int = 80) -> str:
        dump = os.environ.get("CASELOAD_PROBLEMS_FILE")
        if dump:  # every problem, for reading at leisure
            with open(dump, "a") as out:
                out.write("\n".join(self.found) + "\n")
        lines = self.found[:limit]
        if len(self.found) > limit:
            lines.append(f"… and {len(self.found) - limit} more")
        return f"{len(self.found)} disagreements with the reference model:\n" + "\n".join(lines)


def describe(ids: Sequence[str], limit: int = 4) -> str:
    shown = [readable(i) for i in ids[:limit]]
    more = f", … {len(ids) - limit} more" if len(ids) > limit else ""
    return f"[{'; '.join(shown)}{more}]"


def readable(global_id: str) -> str:
    """`Learner:12` for an id the API gave out (ids are opaque, but tests may read them)."""
    try:
        type_name, pk = decode_id(global_id)
    except MalformedId:
        return global_id
    return f"{type_name}:{pk}"


def through_provider(who: Who) -> str | None:
    """How a principal of the proof signs in where the app trusts an OpenID Connect provider:
    None (an HS256 token, as the command line mints), or through the provider, naming the
    organisation by the token's claim ("claim") or by X-Caseload-Organisation ("header").
    Every other person goes through the provider; of those, every other one by the header."""
    if who.kind == "API_KEY" or who.user_id % 2:
        return None
    return "header" if who.user_id % 4 == 0 else "claim"


def caller_for(api: Api, facts: Facts, who: Who) -> Caller:
    if who.kind == "API_KEY":
        return api.with_headers({"Authorization": f"ApiKey {facts.key_of(who)}"})
    email = facts.users[who.user_id].email
    slug = None if who.organisation_id is None else facts.slug(who.organisation_id)
    way = None if api.signer is None else through_provider(who)
    if api.signer is None or way is None:
        return api.with_headers({"Authorization": f"Bearer {api.token_for_email(email, slug)}"})
    if way == "claim" or slug is None:
        return api.with_headers({"Authorization": f"Bearer {api.signer(email, slug)}"})
    return api.with_headers(
        {"Authorization": f"Bearer {api.signer(email, None)}", "X-Caseload-Organisation": slug}
    )


async def post_raw(caller: Caller, query: str, variables: dict[str, Any]) -> tuple[int, bytes]:
    response = await caller.api.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=caller.headers
    )
    return response.status_code, response.content


def batches(items: Sequence[Any], size: int = MAX_ALIASES) -> list[Sequence[Any]]:
    return [items[k : k + size] for k in range(0, len(items), size)]


@dataclass
class Check:
    """One principal's check: the caller, the model and where problems go."""

    api: Api
    facts: Facts
    model: Model
    who: Who
    problems: Problems
    access_selection: str = "user { id } role reason expiresAt apiKey { id }"
    # What each probe of the Actions table answered: (operation, target id) → outcome.
    outcomes: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.caller = caller_for(self.api, self.facts, self.who)
        self.label = self.who.label(self.facts)

    def add(self, what: str, detail: str) -> None:
        self.problems.add(self.label, what, detail)

    async def ask(self, query: str, **variables: Any) -> dict[str, Any] | None:
        """Data of an answer without errors; otherwise the problem is recorded, None."""
        result = await self.caller(query, **variables)
        if result.status != 200 or result.errors:
            self.add(query.split("(")[0].split("{")[0].strip() or "query", f"errors {result.body}")
            return None
        data: dict[str, Any] = result.data
        return data


async def check_principal(check: Check, *, small_pages: bool = False) -> None:
    if not check.who.signs_in:
        await check_refused(check)
        return
    await check_viewer(check)
    await check_lists(check, small_pages=small_pages)
    await check_nested_lists(check)
    await check_filters(check)
    await check_nodes(check)
    await check_access(check)
    await check_actions(check)
    await check_capabilities(check)
    await check_changes(check, first=SMALL_PAGE if small_pages else PAGE)


# --- viewer -------------------------------------------------------------------------------


async def check_refused(check: Check) -> None:
    """DESIGN.md: a deactivated member's token for that organisation is refused."""
    result = await check.caller("{ viewer { roles } }")
    if result.codes != ["UNAUTHENTICATED"] or result.data is not None:
        check.add("a deactivated membership signs in", f"answered {result.body}")


async def check_viewer(check: Check) -> None:
    who, model = check.who, check.model
    data = await check.ask(VIEWER)
    if data is None:
        return
    viewer = data["viewer"]
    if viewer["user"]["id"] != gid("User", who.user_id):
        check.add("viewer", f"user {viewer['user']}")
    if sorted(viewer["roles"]) != sorted(who.roles):
        check.add("viewer", f"roles {viewer['roles']}, expected {sorted(who.roles)}")
    org = viewer["organisation"]
    if who.organisation_id is None:
        if org is not None:
            check.add("viewer", f"organisation {org}, expected none")
        return
    if org is None or org["id"] != gid("Organisation", who.organisation_id):
        check.add("viewer", f"organisation {org}")
        return
    (mine,) = [o for o in check.facts.organisations if o.id == who.organisation_id]
    for key, type_name, expected in (
        ("locations", "Location", set(mine.locations) & model.locations(who)),
        ("departments", "Department", set(mine.departments) & model.departments(who)),
    ):
        check.problems.compare(
            check.label,
            f"viewer.organisation.{key}",
            [x["id"] for x in org[key]],
            {gid(type_name, pk) for pk in expected},
        )


# --- lists --------------------------------------------------------------------------------


LISTS = {
    "learners": "Learner",
    "apprenticeRecords": "ApprenticeRecord",
    "staff": "User",
    "externalAssessors": "User",
    "licences": "Licence",
    "courses": "Course",
    "evidence": "Evidence",
    "auditEvents": "AuditEvent",
    "organisations": "Organisation",
    "webhookDeliveries": "WebhookDelivery",
}
PLAIN_LISTS = {
    "autoAllocationRules": "AutoAllocationRule",
    "apiKeys": "ApiKey",
    "webhookEndpoints": "WebhookEndpoint",
}
COMPILABLE = ("learners", "apprenticeRecords")  # root lists the compiled read path answers


def expected_lists(check: Check) -> dict[str, set[str]]:
    who, model = check.who, check.model
    pks = {
        "learners": model.learner_list(who),
        "apprenticeRecords": model.record_list(who),
        "staff": model.staff_list(who),
        "externalAssessors": model.directory_list(who),
        "licences": model.licence_list(who),
        "courses": model.courses(who),
        "evidence": model.evidence_queue(who),
        "auditEvents": model.audit_events(who),
        "organisations": model.organisations(who),
        "webhookDeliveries": model.webhook_deliveries(who),
    }
    return {name: {gid(LISTS[name], pk) for pk in found} for name, found in pks.items()}


async def check_lists(check: Check, *, small_pages: bool) -> None:
    expected = expected_lists(check)
    compilable = " ".join(f"{name}(first: {PAGE}) {{ {CONNECTION} }}" for name in COMPILABLE)
    fields = " ".join(
        f"{name}(first: {PAGE}) {{ {CONNECTION} }}" for name in LISTS if name not in COMPILABLE
    )
    fields += " " + " ".join(f"{name} {{ id }}" for name in PLAIN_LISTS)
    first = await check.ask(f"query Lists {{ {compilable} }}")
    data = await check.ask(f"query MoreLists {{ {fields} }}")
    if data is None or first is None:
        return
    data |= first
    for name, pks in (
        ("autoAllocationRules", check.model.rules_in_force(check.who)),
        ("apiKeys", check.model.api_keys(check.who)),
        ("webhookEndpoints", check.model.webhook_endpoints(check.who)),
    ):
        check.problems.compare(
            check.label,
            name,
            [x["id"] for x in data[name]],
            {gid(PLAIN_LISTS[name], pk) for pk in pks},
        )
    for name, wanted in expected.items():
        connection = data[name]
        what = f"{name}(first: {PAGE})"
        if connection["totalCount"] != len(wanted):
            check.add(what, f"totalCount {connection['totalCount']}, expected {len(wanted)}")
        if connection["pageInfo"]["hasNextPage"] != (len(wanted) > PAGE):
            check.add(what, f"pageInfo {connection['pageInfo']}")
        check.problems.compare(
            check.label, what, [e["node"]["id"] for e in connection["edges"]], wanted
        )
    if small_pages:
        for name, wanted in expected.items():
            await page_through(check, name, wanted, SMALL_PAGE)


NESTED = f"""query Nested {{
  learners(first: {PAGE}) {{ edges {{ node {{
    id organisation {{ id }} location {{ id }} department {{ id }} records {{ id }}
    allocations {{ id }} allAllocations: allocations(includeEnded: true) {{ id }}
    assessors {{ id }} evidence {{ id }} licences {{ id }}
    recalled: licences(filter: {{status: RECALLED}}) {{ id }}
    licenceRules: licences {{ id rule {{ id }} }}
    expired: licences(filter: {{status: EXPIRED}}) {{ id }}
    active: licences(filter: {{status: ACTIVE}}) {{ id }} }} }} }}
  apprenticeRecords(first: {PAGE}) {{ edges {{ node {{
    id learner {{ id }} assignments {{ id }} evidence {{ id }}
    allAssignments: assignments(includeEnded: true) {{ id }} }} }} }}
}}"""


async def check_nested_lists(check: Check) -> None:
    """Every nested path of the two lists, as `node(id:)` shows it (one operation, which the
    compiled read path answers when it is on)."""
    data = await check.ask(NESTED)
    if data is None:
        return
    for name, type_name in (("learners", "Learner"), ("apprenticeRecords", "ApprenticeRecord")):
        for edge in data[name]["edges"]:
            answered = shape_of(edge["node"])
            _, pk = decode_id(answered["id"])
            expected = expected_node(check, type_name, pk)
            wrong = sorted(k for k in answered if expected.get(k) != answered[k])
            if wrong:
                details = "; ".join(
                    f"{k} {answered.get(k)!r}, expected {expected.get(k)!r}" for k in wrong
                )
                check.add(f"{name} nested ({type_name}:{pk})", details)


async def page_through(check: Check, name: str, wanted: set[str], first: int) -> None:
    """Page to the end; every page's totalCount and the union of the pages must match."""
    query = (
        f"query Page($after: String) {{ {name}(first: {first}, after: $after) {{ {CONNECTION} }} }}"
    )
    what = f"{name}(first: {first}) paged"
    ids: list[str] = []
    after: str | None = None
    for _ in range(len(wanted) // first + 2):  # bounded: a broken cursor must not spin
        data = await check.ask(query, after=after)
        if data is None:
            return
        connection = data[name]
        ids += [e["node"]["id"] for e in connection["edges"]]
        if connection["totalCount"] != len(wanted):
            check.add(what, f"totalCount {connection['totalCount']}, expected {len(wanted)}")
        if len(connection["edges"]) > first:
            check.add(what, f"{len(connection['edges'])} edges on a page of {first}")
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    else:
        check.add(what, "hasNextPage never became false")
    check.problems.compare(check.label, what, ids, wanted)


# --- the change feed ----------------------------------------------------------------------

CHANGES = """query Feed($after: String, $first: Int, $filter: ChangeFilter) {
  changes(after: $after, first: $first, filter: $filter) {
    edges { cursor node { subject { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def read_feed(
    check: Check, first: int, filter: dict[str, Any] | None = None
) -> list[str | None] | None:
    """The subjects of the principal's whole feed, in order, paged `first` at a time."""
    subjects: list[str | None] = []
    after: str | None = None
    for _ in range(len(check.facts.changes) // first + 2):  # bounded: a broken cursor
        data = await check.ask(CHANGES, after=after, first=first, filter=filter)
        if data is None:
            return None
        page = data["changes"]
        if len(page["edges"]) > first:
            check.add("changes", f"{len(page['edges'])} edges on a page of {first}")
        subjects += [(e["node"]["subject"] or {}).get("id") for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return subjects
        after = page["pageInfo"]["endCursor"]
    check.add(f"changes(first: {first})", "hasNextPage never became false")
    return None


async def check_changes(check: Check, first: int = PAGE) -> None:
    """The change feed lists, in commit order, the changes whose subject the principal sees
    (DESIGN.md, Reads, row "changes"), each with its subject; a change to anything else,
    or to an object that is gone, is skipped. Also narrowed to one kind and to one learner."""
    expected = [gid(t, pk) for t, pk in check.model.changes(check.who)]
    got = await read_feed(check, first)
    if got is not None and got != expected:
        check.add(
            f"changes(first: {first})",
            f"subjects {describe([str(x) for x in got], 8)} ({len(got)}), expected "
            f"{describe(expected, 8)} ({len(expected)}); "
            f"unexpected {describe(sorted({str(x) for x in got} - set(expected)))}, "
            f"missing {describe(sorted(set(expected) - {str(x) for x in got}))}",
        )
    narrowed = [x for x in expected if decode_id(x)[0] == "ApprenticeRecord"]
    got = await read_feed(check, PAGE, {"subjectTypes": ["APPRENTICE_RECORD"]})
    if got is not None and got != narrowed:
        check.add("changes(subjectTypes: [APPRENTICE_RECORD])", f"{got}, expected {narrowed}")
    learners = sorted({lf.id for lf in check.facts.learners})[:1]
    for pk in learners:
        mine = {gid("Learner", pk)} | {
            gid("ApprenticeRecord", r.id) for r in check.facts.records if r.learner_id == pk
        }
        mine |= {gid("Allocation", a.id) for a in check.facts.allocations if a.learner_id == pk}
        mine |= {gid("Licence", x.id) for x in check.facts.licences if x.learner_id == pk}
        records_of = {r.id for r in check.facts.records if r.learner_id == pk}
        mine |= {
            gid("Assignment", a.id) for a in check.facts.assignments if a.record_id in records_of
        }
        mine |= {gid("Evidence", e.id) for e in check.facts.evidence if e.record_id in records_of}
        narrowed = [x for x in expected if x in mine]
        got = await read_feed(check, PAGE, {"learnerId": gid("Learner", pk)})
        if got is not None and got != narrowed:
            check.add(f"changes(learnerId: Learner:{pk})", f"{got}, expected {narrowed}")


# --- filters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterCase:
    field: str  # learners | apprenticeRecords | staff | externalAssessors | licences | evidence
    value: Any  # the filter input
    expected: frozenset[str]
    hidden_id: bool = False  # names an id the caller cannot see: must answer like a made-up one
    made_up: bool = False

    @property
    def key(self) -> str:
        """Which made-up case this one must answer like."""
        if self.field == "externalAssessors":
            return self.field
        (name,) = [k for k in self.value if k != "first"]
        return f"{self.field}.{name}"


FILTER_TYPES = {
    "learners": "LearnerFilter",
    "apprenticeRecords": "RecordFilter",
    "staff": "StaffFilter",
    "externalAssessors": "ExternalAssessorFilter",
    "licences": "LicenceFilter",
    "evidence": "EvidenceFilter",
}


def search_terms(facts: Facts) -> list[str]:
    """A term that matches some names and not others, LIKE's wildcards (which must match
    only themselves), a blank term (no filter), and part of an email address.

    ASCII only: SQLite folds the case of ASCII letters alone.
    """
    names = sorted("".join(c for c in lf.name if c.isascii()) for lf in facts.learners)
    some = names[0].split()[-1][:3].upper() if names and names[0].split() else "AVA"
    return [some, "%", "_", "  ", "person1"]


def filter_cases(check: Check) -> list[FilterCase]:
    facts, model, who = check.facts, check.model, check.who
    g = gid
    cases: list[FilterCase] = []
    learners_seen = model.learners(who)
    learner_units = [model.learner[pk] for pk in learners_seen]
    units_seen: dict[str, set[int]] = {
        "locationId": set(model.locations(who))
        | {lf.location_id for lf in learner_units if lf.location_id is not None},
        "departmentId": set(model.departments(who))
        | {lf.department_id for lf in learner_units if lf.department_id is not None},
    }

    def learners(name: str, value: Any, expected: Iterable[int], **flags: bool) -> None:
        cases.append(
            FilterCase(
                "learners", {name: value}, frozenset(g("Learner", pk) for pk in expected), **flags
            )
        )

    def records(name: str, value: Any, expected: Iterable[int], **flags: bool) -> None:
        cases.append(
            FilterCase(
                "apprenticeRecords",
                {name: value},
                frozenset(g("ApprenticeRecord", pk) for pk in expected),
                **flags,
            )
        )

    terms = search_terms(facts)
    for term in terms:
        learners("search", term, model.learner_list(who, search=term))
        records("search", term, model.record_list(who, search=term))
    records("search", "LEVEL 3", model.record_list(who, search="LEVEL 3"))  # a programme
    for term in (terms[0], terms[1], terms[-1]):
        found = model.staff_list(who, search=term)
        cases.append(FilterCase("staff", {"search": term}, frozenset(g("User", p) for p in found)))
    for term in (terms[0], "external1"):
        found = model.directory_list(who, search=term)
        cases.append(
            FilterCase(
                "externalAssessors", {"search": term}, frozenset(g("User", p) for p in found)
            )
        )
    # Units and people of the organisations the principal acts in or sees learners of, one
    # of some other organisation (hidden), and made-up ids.
    relevant = {who.organisation_id} | {lf.organisation_id for lf in learner_units}
    elsewhere = [o for o in facts.organisations if o.id not in relevant][:1]
    for name, type_name, which in (
        ("locationId", "Location", "location"),
        ("departmentId", "Department", "department"),
    ):
        units = [
            u for o in facts.organisations if o.id in relevant for u in getattr(o, f"{which}s")
        ]
        units += [getattr(o, f"{which}s")[0] for o in elsewhere]
        for pk in units:
            found = model.learner_list(who, **{which: pk})
            learners(name, g(type_name, pk), found, hidden_id=pk not in units_seen[name])
        learners(name, g(type_name, MISSING_PK), (), made_up=True)

    # Users named by filters: everyone ever assigned there, one assignee of elsewhere, one
    # person of every other kind (external assessor, support, API key identity), made-up.
    others = {u.kind: u.id for u in sorted(facts.users.values(), key=lambda u: -u.id)}
    assigned_here = {a.user_id for a in facts.assignments if a.organisation_id in relevant}
    assigned_elsewhere = sorted(
        {a.user_id for a in facts.assignments if a.organisation_id not in relevant} - assigned_here
    )[:1]
    candidates = sorted(
        assigned_here | set(assigned_elsewhere) | {v for k, v in others.items() if k != "STAFF"}
    )
    users_seen = model.users(who)
    for pk in candidates:
        hidden = pk not in users_seen
        learners(
            "assigneeId", g("User", pk), model.learner_list(who, assigned_to=pk), hidden_id=hidden
        )
        records("assigneeId", g("User", pk), model.record_list(who, assignee=pk), hidden_id=hidden)
    learners("assigneeId", g("User", MISSING_PK), (), made_up=True)
    records("assigneeId", g("User", MISSING_PK), (), made_up=True)
    for flag in (True, False):
        learners("unassigned", flag, model.learner_list(who, unassigned=flag))
        records("unassigned", flag, model.record_list(who, unassigned=flag))
    for status in ("LIVE", "ARCHIVED"):
        records("status", status, model.record_list(who, status=status))
    hidden_learners = [lf.id for lf in facts.learners if lf.id not in learners_seen][:2]
    for pk in [*sorted(learners_seen), *hidden_learners]:
        records(
            "learnerId",
            g("Learner", pk),
            model.record_list(who, learner=pk),
            hidden_id=pk not in learners_seen,
        )
    records("learnerId", g("Learner", MISSING_PK), (), made_up=True)
    for roles in (
        ["SUPER_ADMIN", "SENIOR_ASSESSOR"],
        ["ADMIN"],
        ["MANAGER"],
        ["ASSESSOR", "EXTERNAL_ASSESSOR"],
        ["TRAINING_COORDINATOR"],
        ["LEARNER"],
    ):
        found = model.staff_list(who, roles=frozenset(roles))
        cases.append(
            FilterCase("staff", {"roles": roles}, frozenset(g("User", pk) for pk in found))
        )
    for flag in (True, False):
        found = model.staff_list(who, deactivated=flag)
        cases.append(
            FilterCase("staff", {"deactivated": flag}, frozenset(g("User", pk) for pk in found))
        )
    cases += licence_and_evidence_cases(check)
    return cases


def licence_and_evidence_cases(check: Check) -> list[FilterCase]:
    """`licences(filter:)` and `evidence(filter:)`: by course, learner, record and status;
    a learner or record the caller cannot see answers like a made-up one."""
    facts, model, who = check.facts, check.model, check.who
    g = gid
    cases: list[FilterCase] = []

    def licences(name: str, value: Any, expected: Iterable[int], **flags: bool) -> None:
        found = frozenset(g("Licence", pk) for pk in expected)
        cases.append(FilterCase("licences", {name: value}, found, **flags))

    def evidence(name: str, value: Any, expected: Iterable[int], **flags: bool) -> None:
        found = frozenset(g("Evidence", pk) for pk in expected)
        cases.append(FilterCase("evidence", {name: value}, found, **flags))

    for course in facts.courses:
        hidden = course not in model.courses(who)
        licences(
            "courseId",
            g("Course", course),
            model.licence_list(who, course=course),
            hidden_id=hidden,
        )
    licences("courseId", g("Course", MISSING_PK), (), made_up=True)
    for status in ("ACTIVE", "RECALLED", "COMPLETED", "EXPIRED"):
        licences("status", status, model.licence_list(who, status=status))
    for status in ("SUBMITTED", "SIGNED_OFF", "REFERRED"):
        evidence("status", status, model.evidence_queue(who, status=status))
    seen = model.learners(who)
    hidden_learners = [lf.id for lf in facts.learners if lf.id not in seen][:2]
    for pk in [*sorted(seen)[:8], *hidden_learners]:
        hidden = pk not in seen
        licences(
            "learnerId", g("Learner", pk), model.licence_list(who, learner=pk), hidden_id=hidden
        )
        evidence(
            "learnerId", g("Learner", pk), model.evidence_queue(who, learner=pk), hidden_id=hidden
        )
    licences("learnerId", g("Learner", MISSING_PK), (), made_up=True)
    evidence("learnerId", g("Learner", MISSING_PK), (), made_up=True)
    records = model.records(who)
    hidden_records = [r.id for r in facts.records if r.id not in records][:2]
    for pk in [*sorted(records)[:8], *hidden_records]:
        evidence(
            "recordId",
            g("ApprenticeRecord", pk),
            model.evidence_queue(who, record=pk),
            hidden_id=pk not in records,
        )
    evidence("recordId", g("ApprenticeRecord", MISSING_PK), (), made_up=True)
    return cases


def connection_field(field: str, variable: str) -> str:
    return f"{field}(first: {PAGE}, filter: ${variable})"


async def check_filters(check: Check) -> None:
    cases = filter_cases(check)
    # The lists the compiled read path answers go in operations of their own.
    cases.sort(key=lambda case: case.field not in COMPILABLE)
    compilable = sum(case.field in COMPILABLE for case in cases)
    starts = [*range(0, compilable, MAX_ALIASES), *range(compilable, len(cases), MAX_ALIASES)]
    answers: dict[int, Any] = {}
    for start in starts:
        end = min(start + MAX_ALIASES, compilable if start < compilable else len(cases))
        batch = cases[start:end]
        variables = {f"f{k}": case.value for k, case in enumerate(batch)}
        definitions = ", ".join(
            f"$f{k}: {FILTER_TYPES[case.field]}" for k, case in enumerate(batch)
        )
        fields = " ".join(
            f"a{k}: {connection_field(case.field, f'f{k}')} {{ {FILTERED} }}"
            for k, case in enumerate(batch)
        )
        result = await check.caller(f"query Filters({definitions}) {{ {fields} }}", **variables)
        if result.status != 200 or result.errors:
            check.add("filters", f"errors {json.dumps(result.body)[:600]}")
            continue
        for k in range(len(batch)):
            answers[start + k] = result.data[f"a{k}"]
    made_up = {case.key: answers.get(n) for n, case in enumerate(cases) if case.made_up}
    for n, connection in sorted(answers.items()):
        case = cases[n]
        what = f"{case.field}({json.dumps(case.value)})"
        got = [e["node"]["id"] for e in connection["edges"]]
        check.problems.compare(check.label, what, got, case.expected)
        if connection["totalCount"] != len(case.expected):
            check.add(what, f"totalCount {connection['totalCount']}, expected {len(case.expected)}")
        if case.hidden_id and connection != made_up.get(case.key):
            check.add(what, f"answers {connection}, a made-up id {made_up.get(case.key)}")
    await check_filters_byte_for_byte(check, cases)


async def check_filters_byte_for_byte(check: Check, cases: list[FilterCase]) -> None:
    """One operation naming invisible ids, against the same naming made-up ids: same bytes."""
    hidden: dict[str, FilterCase] = {}
    for case in cases:
        if case.hidden_id and case.key not in hidden:
            hidden[case.key] = case
    if not hidden:
        return
    made_up = {case.key: case for case in cases if case.made_up}
    chosen = [(hidden[key], made_up[key]) for key in sorted(hidden)]
    definitions = ", ".join(
        f"$f{k}: {FILTER_TYPES[case.field]}" for k, (case, _) in enumerate(chosen)
    )
    fields = " ".join(
        f"a{k}: {connection_field(case.field, f'f{k}')} {{ {CONNECTION} }}"
        for k, (case, _) in enumerate(chosen)
    )
    query = f"query Hidden({definitions}) {{ {fields} }}"
    shown = await post_raw(
        check.caller, query, {f"f{k}": c.value for k, (c, _) in enumerate(chosen)}
    )
    absent = await post_raw(
        check.caller, query, {f"f{k}": m.value for k, (_, m) in enumerate(chosen)}
    )
    if shown != absent:
        names = [f"{c.field}({json.dumps(c.value)})" for c, _ in chosen]
        check.add(
            "filters naming invisible ids", f"{names} answer {shown!r}, made-up ids {absent!r}"
        )


# --- node(id:) and nested paths ------------------------------------------------------------


def expected_node(check: Check, type_name: str, pk: int) -> dict[str, Any]:
    """What `node(id:)` answers for a visible object, nested paths included."""
    model, who = check.model, check.who

    def ids(type_: str, pks: Iterable[int]) -> list[str]:
        return sorted(gid(type_, p) for p in pks)

    def one(type_: str, p: int | None) -> str | None:
        return None if p is None else gid(type_, p)

    shape: dict[str, Any] = {"__typename": type_name, "id": gid(type_name, pk)}
    if type_name == "Learner":
        lf = model.learner[pk]
        shape |= {
            "organisation": gid("Organisation", lf.organisation_id),
            "location": one("Location", lf.location_id),
            "department": one("Department", lf.department_id),
            "records": ids("ApprenticeRecord", model.learner_records(who, pk)),
            "allocations": ids("Allocation", model.learner_allocations(who, pk)),
            "allAllocations": ids(
                "Allocation", model.learner_allocations(who, pk, include_ended=True)
            ),
            "assessors": ids("User", model.learner_assessors(who, pk)),
            "evidence": ids("Evidence", model.learner_evidence(who, pk)),
            "licences": ids("Licence", model.learner_licences(pk)),
            "recalled": ids("Licence", model.learner_licences(pk, "RECALLED")),
            "licenceRules": sorted(
                nested(
                    gid("Licence", x), rule=one("AutoAllocationRule", model.licence_rule(who, x))
                )
                for x in model.learner_licences(pk)
            ),
            "expired": ids("Licence", model.learner_licences(pk, "EXPIRED")),
            "active": ids("Licence", model.learner_licences(pk, "ACTIVE")),
        }
    elif type_name == "ApprenticeRecord":
        shape |= {
            "learner": gid("Learner", model.record[pk].learner_id),
            "assignments": ids("Assignment", model.record_assignments(pk)),
            "allAssignments": ids("Assignment", model.record_assignments(pk, include_ended=True)),
            "evidence": ids("Evidence", model.record_evidence(pk)),
        }
    elif type_name == "Assignment":
        a = model.assignment[pk]
        shape |= {"user": gid("User", a.user_id), "record": gid("ApprenticeRecord", a.record_id)}
    elif type_name == "Allocation":
        al = model.allocation[pk]
        shape |= {"assessor": gid("User", al.assessor_id), "learner": gid("Learner", al.learner_id)}
    elif type_name == "Evidence":
        e = model.evidence_row[pk]
        shape |= {
            "record": gid("ApprenticeRecord", e.record_id),
            "decidedBy": one("User", e.decided_by),
        }
    elif type_name == "User":
        shape |= {
            "caseloadCount": model.caseload(who, pk),
            "roles": sorted(model.roles_of(who, pk)),
            "deactivatedAt": (pk, who.organisation_id) in model.deactivated,
        }
    elif type_name == "Organisation":
        o = model.organisation[pk]
        shape |= {
            "locations": ids("Location", set(o.locations) & model.locations(who)),
            "departments": ids("Department", set(o.departments) & model.departments(who)),
        }
    elif type_name == "AuditEvent":
        ev = model.audit_row[pk]
        shape |= {
            "actor": one("User", None if ev.api_key_id else ev.actor_id),
            "apiKey": one("ApiKey", model.key_shown(who, ev.api_key_id)),
        }
    elif type_name == "Licence":
        x = model.licence[pk]
        shape |= {
            "learner": gid("Learner", x.learner_id),
            "course": gid("Course", x.course_id),
            "rule": one("AutoAllocationRule", model.licence_rule(who, pk)),
            "status": x.status.value,
        }
    elif type_name == "Course":
        shape |= {"pool": model.pool_shown(who, pk)}
    elif type_name == "AutoAllocationRule":
        shape |= {"course": gid("Course", model.rule[pk].course_id)}
    elif type_name == "WebhookDelivery":
        (d,) = [d for d in check.facts.webhook_deliveries if d.id == pk]
        shape |= {"endpoint": gid("WebhookEndpoint", d.endpoint_id)}
    return shape


PRESENCE = {"deactivatedAt", "pool"}  # compared as shown or not


def nested(item_id: str, **fields: str | None) -> str:
    """A listed object with objects of its own, as one comparable (and readable) text."""
    shown = (f"{k}={v if v is None else readable(v)}" for k, v in sorted(fields.items()))
    return " ".join([readable(item_id), *shown])


def listed(value: Any) -> Any:
    """An item of an answered list: its id, or its id and its objects' ids."""
    if not isinstance(value, dict):
        return value
    more = {k: v if v is None else v["id"] for k, v in value.items() if k != "id"}
    return nested(value["id"], **more) if more else value["id"]


def shape_of(node: dict[str, Any]) -> dict[str, Any]:
    """An answered node in the form of `expected_node`: lists sorted, objects as ids."""
    shaped: dict[str, Any] = {}
    for key, value in node.items():
        if key in PRESENCE:
            shaped[key] = value is not None
        elif isinstance(value, list):
            shaped[key] = sorted(listed(v) for v in value)
        elif isinstance(value, dict):
            shaped[key] = value.get("id")
        else:
            shaped[key] = value
    return shaped


@dataclass(frozen=True)
class Lookup:
    field: str  # node | learner
    type_name: str
    pk: int

    def alias_text(self, k: int) -> str:
        selection = "{ ...N }" if self.field == "node" else "{ id }"
        return f"a{k}: {self.field}(id: $i{k}) {selection}"


async def check_nodes(check: Check) -> None:
    model, who = check.model, check.who
    visible = model.visible(who)
    lookups = [Lookup("node", t, pk) for t, pks in all_ids(check.facts).items() for pk in pks]
    lookups += [Lookup("learner", "Learner", lf.id) for lf in check.facts.learners]
    lookups += [Lookup("node", t, MISSING_PK) for t in NODE_TYPES]
    for batch in batches(lookups):
        definitions = ", ".join(f"$i{k}: ID!" for k in range(len(batch)))
        fields = " ".join(lookup.alias_text(k) for k, lookup in enumerate(batch))
        fragment = NODE_FRAGMENT if any(x.field == "node" for x in batch) else ""
        result = await check.caller(
            f"query Nodes({definitions}) {{ {fields} }}{fragment}",
            **{f"i{k}": gid(x.type_name, x.pk) for k, x in enumerate(batch)},
        )
        if result.status != 200 or result.data is None:
            check.add("node(id:)", f"errors {json.dumps(result.body)[:800]}")
            continue
        # An error names its lookup and field (e.g. a non-null parent the caller cannot see).
        failed: dict[str, list[str]] = {}
        for error in result.errors:
            alias, *field = [str(part) for part in error.get("path") or ["?"]]
            failed.setdefault(alias, []).append(f"{'.'.join(field)}: {error.get('message')}")
        for k, lookup in enumerate(batch):
            got = result.data[f"a{k}"]
            what = f"{lookup.field}(id: {lookup.type_name}:{lookup.pk})"
            if f"a{k}" in failed:
                check.add(what, f"errors at {'; '.join(failed[f'a{k}'])}")
                continue
            if lookup.pk not in visible[lookup.type_name]:
                if got is not None:
                    check.add(what, f"invisible, answered {got}")
                continue
            if got is None:
                check.add(what, "visible, answered null")
                continue
            if lookup.field == "learner":
                if got != {"id": gid("Learner", lookup.pk)}:
                    check.add(what, f"answered {got}")
                continue
            expected = expected_node(check, lookup.type_name, lookup.pk)
            answered = shape_of(got)
            wrong = sorted(
                k for k in expected.keys() | answered.keys() if expected.get(k) != answered.get(k)
            )
            if wrong:
                details = "; ".join(
                    f"{key} {answered.get(key)!r}, expected {expected.get(key)!r}" for key in wrong
                )
                check.add(what, details)
    await check_nodes_byte_for_byte(check, visible)


async def check_nodes_byte_for_byte(check: Check, visible: dict[str, frozenset[int]]) -> None:
    """The first invisible id of each type, against made-up ids: the same bytes."""
    hidden = [
        (type_name, next((pk for pk in pks if pk not in visible[type_name]), None))
        for type_name, pks in all_ids(check.facts).items()
    ]
    chosen = [(t, pk) for t, pk in hidden if pk is not None]
    if not chosen:
        return
    definitions = ", ".join(f"$i{k}: ID!" for k in range(len(chosen)))
    fields = " ".join(f"a{k}: node(id: $i{k}) {{ ...N }}" for k in range(len(chosen)))
    query = f"query Hidden({definitions}) {{ {fields} }}{NODE_FRAGMENT}"
    shown = await post_raw(
        check.caller, query, {f"i{k}": gid(t, pk) for k, (t, pk) in enumerate(chosen)}
    )
    absent = await post_raw(
        check.caller, query, {f"i{k}": gid(t, MISSING_PK) for k, (t, _) in enumerate(chosen)}
    )
    if shown != absent:
        check.add(
            "node(id:) of invisible ids",
            f"{[f'{t}:{pk}' for t, pk in chosen]} answer {shown!r}, made-up ids {absent!r}",
        )
    # The single-field form too: {"data": {"learner": null}} for both.
    hidden_learner = next((pk for t, pk in chosen if t == "Learner"), None)
    if hidden_learner is not None:
        query = "query One($id: ID!) { learner(id: $id) { id records { id } } }"
        one = await post_raw(check.caller, query, {"id": gid("Learner", hidden_learner)})
        none = await post_raw(check.caller, query, {"id": gid("Learner", MISSING_PK)})
        if one != none or json.loads(none[1]).get("data") != {"learner": None}:
            check.add(
                f"learner(id: Learner:{hidden_learner})", f"answers {one!r}, made-up {none!r}"
            )


# --- Learner.access --------------------------------------------------------------------------


def access_subject(facts: Facts, entry: dict[str, Any]) -> tuple[str, int] | str:
    """("user", pk) or ("api_key", pk) of an answered entry."""
    key = entry.get("apiKey")
    if key is not None:
        try:
            return ("api_key", decode_id(key["id"])[1])
        except MalformedId:
            return f"api key {key}"
    user = entry.get("user")
    if user is None:
        return f"entry {entry}"
    pk = decode_id(user["id"])[1]
    for k in facts.api_keys:
        if k.user_id == pk:  # a key shown as the identity it acts as
            return ("api_key", k.id)
    return ("user", pk)


def entry_text(
    subject: tuple[str, int] | str, role: str, reason: str, expires: Any, key: Any = None
) -> str:
    shown = "" if key is None else f" showing ApiKey:{key}"
    return f"{subject} {role} {reason} expires {expires}{shown}"


async def check_access(check: Check) -> None:
    model, who, facts = check.model, check.who, check.facts
    learners = sorted(model.learners(who))
    if not learners:
        return
    for batch in batches(learners):
        definitions = ", ".join(f"$i{k}: ID!" for k in range(len(batch)))
        fields = " ".join(
            f"a{k}: learner(id: $i{k}) {{ access {{ {check.access_selection} }} }}"
            for k in range(len(batch))
        )
        result = await check.caller(
            f"query Access({definitions}) {{ {fields} }}",
            **{f"i{k}": gid("Learner", pk) for k, pk in enumerate(batch)},
        )
        errors = {tuple(e.get("path") or ()): e for e in result.errors}
        for k, pk in enumerate(batch):
            what = f"learner(id: Learner:{pk}).access"
            answer = (result.data or {}).get(f"a{k}")
            error = errors.get((f"a{k}", "access"))
            if not model.reads_access(who, model.learner[pk]):
                code = (error or {}).get("extensions", {}).get("code")
                if code != "FORBIDDEN" or answer != {"access": None}:
                    check.add(what, f"expected FORBIDDEN, answered {answer} with error {error}")
                continue
            if error is not None or answer is None or answer["access"] is None:
                check.add(what, f"readable, answered {answer} with error {error}")
                continue
            got = sorted(
                entry_text(
                    access_subject(facts, e),
                    e["role"],
                    e["reason"],
                    None if e["expiresAt"] is None else datetime.fromisoformat(e["expiresAt"]),
                    None if e.get("apiKey") is None else readable(e["apiKey"]["id"]).split(":")[-1],
                )
                for e in answer["access"]
            )
            keys_asked = "apiKey" in check.access_selection
            expected = sorted(
                entry_text(
                    x.who,
                    x.role,
                    x.reason,
                    x.expires_at,
                    model.key_shown(who, x.who[1])
                    if keys_asked and x.who[0] == "api_key"
                    else None,
                )
                for x in model.access(model.learner[pk])
            )
            check.problems.compare(check.label, what, got, expected)


# --- Actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One mutation sent so that it cannot change anything, and the outcome DESIGN.md implies."""

    operation: str
    text: str  # the mutation's field with arguments, alias-less
    variables: dict[str, Any]
    expected: tuple[
        Any, ...
    ]  # ("error", code) | ("invalid", field) | ("not_found", id) | ("bulk", ((id, code),))
    # The object whose `viewerCan` flag the outcome is compared with, when it is not the
    # target `$t` (an allocation, named by its learner and assessor), and that flag's label.
    subject: str | None = None
    label: str | None = None

    @property
    def forbidden(self) -> bool:
        return bool(self.expected[0] == "error")

    @property
    def key(self) -> tuple[str, str] | None:
        """Where its outcome is kept for check_capabilities: (label, object)."""
        target = self.subject or self.variables.get("t")
        return None if target is None else (self.label or self.operation, target)


# A probe whose outcome is only compared with a flag: it changes nothing whatever it answers.
FLAG_ONLY: tuple[Any, ...] = ("flag only",)


def outcome_of(payload: Any, error: dict[str, Any] | None) -> tuple[Any, ...]:
    if error is not None:
        return ("error", error.get("extensions", {}).get("code"))
    if payload is None:
        return ("null",)
    kind = payload["__typename"]
    if kind == "ValidationError":
        return ("invalid", payload["field"])
    if kind == "NotFoundError":
        return ("not_found", payload["id"])
    if kind == "BulkRejectedError":
        return ("bulk", tuple(sorted((i["id"], i["code"]) for i in payload["items"])))
    if "code" in payload:
        return ("typed", payload["code"])
    return ("granted", kind)


def probes(check: Check) -> list[Probe]:
    facts, model, who = check.facts, check.model, check.who
    missing_user = gid("User", MISSING_PK)
    found: list[Probe] = []

    def pick(all_pks: Sequence[int], visible: frozenset[int]) -> list[int | None]:
        """Every visible target, two invisible ones, and a made-up one (None)."""
        hidden = [pk for pk in all_pks if pk not in visible][:2]
        return [*sorted(visible), *hidden, None]

    def add(
        operation: str, text: str, variables: dict[str, Any], expected: tuple[Any, ...]
    ) -> None:
        found.append(Probe(operation, text, variables, expected))

    def decide(
        visible: bool,
        permitted: bool,
        target_id: str,
        granted: tuple[Any, ...],
        bulk: bool = False,
    ) -> tuple[Any, ...]:
        if not visible:
            return ("bulk", ((target_id, "NOT_FOUND"),)) if bulk else ("not_found", target_id)
        if permitted:
            return granted
        return ("bulk", ((target_id, "FORBIDDEN"),)) if bulk else ("error", "FORBIDDEN")

    learners = [lf.id for lf in facts.learners]
    records = [r.id for r in facts.records]
    evidence = [e.id for e in facts.evidence]
    seen_learners, seen_records = model.learners(who), model.records(who)

    if model.holds(who, "allocateAssessor"):
        for pk in pick(learners, seen_learners):
            target = gid("Learner", pk or MISSING_PK)
            lf = None if pk is None else model.learner[pk]
            visible, permitted = (
                lf is not None and pk in seen_learners,
                lf is not None and model.may_allocate(who, lf),
            )
            add(
                "allocateAssessor",
                f'allocateAssessor(input: {{learnerId: $t, assessorId: $u, expiresAt: "{PAST}"}})',
                {"t": target, "u": missing_user},
                decide(visible, permitted, target, ("invalid", "expiresAt")),
            )
            add(
                "deallocateAssessor",
                "deallocateAssessor(input: {learnerId: $t, assessorId: $u})",
                {"t": target, "u": missing_user},
                decide(visible, permitted, target, ("not_found", missing_user)),
            )
    found += subject_probes(check)
    if model.holds(who, "createApprenticeRecord"):
        for pk in pick(learners, seen_learners):
            target = gid("Learner", pk or MISSING_PK)
            visible = pk is not None and pk in seen_learners
            permitted = pk is not None and model.may_create_record(who, model.learner[pk])
            add(
                "createApprenticeRecord",
                'createApprenticeRecord(input: {learnerId: $t, programme: " "})',
                {"t": target},
                decide(visible, permitted, target, ("invalid", "programme")),
            )
    for pk in pick(records, seen_records):
        target = gid("ApprenticeRecord", pk or MISSING_PK)
        visible = pk is not None and pk in seen_records
        record = None if pk is None else model.record[pk]
        # DESIGN.md: an archived record is read-only (no assignment changes, no evidence).
        archived = record is not None and not record.live
        read_only: tuple[Any, ...] = ("typed", "RECORD_ARCHIVED")
        if model.holds(who, "submitEvidence"):
            permitted = record is not None and model.may_submit(who, record)
            add(
                "submitEvidence",
                'submitEvidence(input: {recordId: $t, title: " "})',
                {"t": target},
                decide(visible, permitted, target, read_only if archived else ("invalid", "title")),
            )
        if model.holds(who, "assignRecords"):
            permitted = record is not None and model.may_assign(who, record)
            bulk_read_only = ("bulk", ((target, "RECORD_ARCHIVED"),))
            for operation, text in (
                ("assignRecords", "assignRecords(input: {assigneeId: $u, recordIds: [$t]})"),
                ("unassignRecords", "unassignRecords(input: {recordIds: [$t], assigneeId: $u})"),
            ):
                add(
                    operation,
                    text,
                    {"t": target, "u": missing_user},
                    decide(
                        visible,
                        permitted,
                        target,
                        bulk_read_only if archived else ("not_found", missing_user),
                        bulk=True,
                    ),
                )
            add(
                "assignTrainingCoordinator",
                "assignTrainingCoordinator(input: {recordId: $t, coordinatorId: $u})",
                {"t": target, "u": missing_user},
                decide(
                    visible,
                    permitted,
                    target,
                    read_only if archived else ("not_found", missing_user),
                ),
            )
    if model.holds(who, "signOffEvidence"):
        seen_evidence = model.evidence(who)
        for pk in pick(evidence, seen_evidence):
            target = gid("Evidence", pk or MISSING_PK)
            visible = pk is not None and pk in seen_evidence
            permitted = pk is not None and model.may_decide(who, pk)
            archived = pk is not None and not model.record[model.evidence_record[pk]].live
            add(
                "signOffEvidence",
                "signOffEvidence(input: {evidenceId: $t, decision: REFER})",
                {"t": target},
                decide(
                    visible,
                    permitted,
                    target,
                    ("typed", "RECORD_ARCHIVED") if archived else ("invalid", "comment"),
                ),
            )
    seen_orgs = model.organisations(who)
    for operation, text in (
        (
            "createStaffMember",
            'createStaffMember(input: {organisationId: $t, name: " ", '
            'email: "new@example.org", roles: [ASSESSOR]})',
        ),
        ("createLocation", 'createLocation(input: {organisationId: $t, name: " "})'),
        ("createDepartment", 'createDepartment(input: {organisationId: $t, name: " "})'),
    ):
        if not model.holds(who, operation):
            continue
        for pk in [*(o.id for o in facts.organisations), None]:
            target = gid("Organisation", pk or MISSING_PK)
            visible = pk is not None and pk in seen_orgs
            permitted = pk is not None and model.may_create_in(who, pk)
            add(
                operation,
                text,
                {"t": target},
                decide(visible, permitted, target, ("invalid", "name")),
            )
    found += lifecycle_probes(check, pick, decide)
    found += licence_probes(check, pick, decide)
    for operation, text in (
        ("createLearner", 'createLearner(input: {name: " "})'),
        ("importLearners", "importLearners(input: {learners: []})"),
        ("createCourse", 'createCourse(input: {title: " ", code: "NEW-1"})'),
        (
            "createAutoAllocationRule",
            "createAutoAllocationRule(input: {courseId: $c, scope: LOCATION})",
        ),
        (
            "previewAutoAllocationRule",
            "previewAutoAllocationRule(input: {courseId: $c, scope: LOCATION})",
        ),
        ("createApiKey", 'createApiKey(input: {name: " ", roles: [ADMIN]})'),
        ("createOrganisation", 'createOrganisation(input: {name: " ", slug: "new-one"})'),
        (
            "createExternalAssessor",
            'createExternalAssessor(input: {name: " ", email: "new@example.org"})',
        ),
    ):
        if not model.holds(who, operation):
            continue
        if "$c" in text:
            add(operation, text, {"c": gid("Course", facts.courses[0])}, ("invalid", "locationId"))
        else:
            field = {"importLearners": "learners", "createCourse": "title"}.get(operation, "name")
            add(operation, text, {}, ("invalid", field))
    return found


Pick = Callable[[Sequence[int], frozenset[int]], list[int | None]]
Decide = Callable[..., tuple[Any, ...]]


def lifecycle_probes(check: Check, pick: Pick, decide: Decide) -> list[Probe]:
    """Changing learners and staff, deactivating staff, archiving and restoring records:
    each on targets where the permitted outcome is a typed error or a repeat answered
    `unchanged` (nothing changes)."""
    facts, model, who = check.facts, check.model, check.who
    found: list[Probe] = []
    org = who.organisation_id
    if model.holds(who, "updateLearner"):
        seen = model.learners(who)
        for pk in pick([lf.id for lf in facts.learners], seen):
            target = gid("Learner", pk or MISSING_PK)
            permitted = pk is not None and model.may_create_record(who, model.learner[pk])
            found.append(
                Probe(
                    "updateLearner",
                    'updateLearner(input: {learnerId: $t, name: " "})',
                    {"t": target},
                    decide(pk is not None and pk in seen, permitted, target, ("invalid", "name")),
                )
            )
    users = sorted(facts.users)
    staff_seen = model.staff(who)
    if model.holds(who, "updateStaffMember"):
        for pk in pick(users, staff_seen):
            target = gid("User", pk or MISSING_PK)
            permitted = pk is not None and model.may_change_staff(who, pk)
            found.append(
                Probe(
                    "updateStaffMember",
                    'updateStaffMember(input: {userId: $t, name: " "})',
                    {"t": target},
                    decide(
                        pk is not None and pk in staff_seen, permitted, target, ("invalid", "name")
                    ),
                )
            )
    if model.holds(who, "deactivateStaffMember"):
        # Only people already deactivated here: deactivating them again changes nothing.
        gone = frozenset(u for u, o in model.deactivated if o == org) & staff_seen
        for pk in pick([u for u in users if u not in staff_seen or u in gone], gone):
            target = gid("User", pk or MISSING_PK)
            permitted = pk is not None and model.may_change_staff(who, pk)
            outcome: tuple[Any, ...] = ("granted", "StaffMemberDeactivated")
            if (
                pk is not None
                and SUPER_ADMIN_ROLE in model.roles_of(who, pk)
                and SUPER_ADMIN_ROLE not in who.roles
            ):
                outcome = ("error", "FORBIDDEN")
            found.append(
                Probe(
                    "deactivateStaffMember",
                    "deactivateStaffMember(input: {userId: $t})",
                    {"t": target},
                    decide(pk is not None and pk in staff_seen, permitted, target, outcome),
                )
            )
    if model.holds(who, "archiveApprenticeRecord"):
        seen_records = model.records(who)
        for operation, live, outcome in (
            ("archiveApprenticeRecord", False, ("granted", "ApprenticeRecordArchived")),
            ("restoreApprenticeRecord", True, ("granted", "ApprenticeRecordRestored")),
        ):
            # archive what is archived, restore what is live: both done already, unchanged
            candidates = [r.id for r in facts.records if r.live == live or r.id not in seen_records]
            visible = frozenset(pk for pk in seen_records if model.record[pk].live == live)
            for pk in pick(candidates, visible):
                target = gid("ApprenticeRecord", pk or MISSING_PK)
                permitted = pk is not None and model.may_create_record(
                    who, model.learner[model.record[pk].learner_id]
                )
                found.append(
                    Probe(
                        operation,
                        f"{operation}(input: {{recordId: $t}})",
                        {"t": target},
                        decide(pk is not None and pk in visible, permitted, target, outcome),
                    )
                )
    return found


def licence_probes(check: Check, pick: Pick, decide: Decide) -> list[Probe]:
    """Allocating, recalling, launching and completing licences, deleting rules, revoking keys,
    setting pools: a made-up second item (or an already-final target, answered `unchanged`)
    keeps every probe from changing anything."""
    facts, model, who = check.facts, check.model, check.who
    found: list[Probe] = []
    course = facts.courses[0]
    missing_learner, missing_licence = gid("Learner", MISSING_PK), gid("Licence", MISSING_PK)
    if model.holds(who, "allocateLicences"):
        seen = model.learners(who)
        for pk in pick([lf.id for lf in facts.learners], seen):
            target = gid("Learner", pk or MISSING_PK)
            items = [(missing_learner, "NOT_FOUND")]
            if pk is None:
                items = [(missing_learner, "NOT_FOUND")]
            elif pk not in seen:
                items.append((target, "NOT_FOUND"))
            elif not model.may_allocate_licences(who, model.learner[pk]):
                items.append((target, "FORBIDDEN"))
            # one holding an active licence already is no offender: unchanged
            found.append(
                Probe(
                    "allocateLicences",
                    "allocateLicences(input: {courseId: $c, learnerIds: [$t, $m]})",
                    {"c": gid("Course", course), "t": target, "m": missing_learner},
                    ("bulk", tuple(sorted(items))),
                )
            )
    seen_licences = model.licences(who)
    every_licence = [x.id for x in facts.licences]
    if model.holds(who, "recallLicences"):
        for pk in pick(every_licence, seen_licences):
            target = gid("Licence", pk or MISSING_PK)
            items = [(missing_licence, "NOT_FOUND")]
            if pk is not None:
                x = model.licence[pk]
                if pk not in seen_licences:
                    items.append((target, "NOT_FOUND"))
                elif not model.may_allocate_licences(who, model.learner[x.learner_id]):
                    items.append((target, "FORBIDDEN"))
                elif model.launched(pk):
                    items.append((target, "LICENCE_IN_USE"))
                elif x.status.value not in ("ACTIVE", "RECALLED"):  # recalled: unchanged
                    items.append((target, "INVALID"))
            found.append(
                Probe(
                    "recallLicences",
                    "recallLicences(input: {licenceIds: [$t, $m]})",
                    {"t": target, "m": missing_licence},
                    ("bulk", tuple(sorted(items))),
                )
            )
    if model.holds(who, "markLicenceLaunched"):
        # Only recalled licences: launching one is a typed error.
        recalled = [x.id for x in facts.licences if x.status.value == "RECALLED"]
        candidates = [pk for pk in every_licence if pk in recalled or pk not in seen_licences]
        visible = frozenset(pk for pk in seen_licences if pk in recalled)
        for pk in pick(candidates, visible):
            target = gid("Licence", pk or MISSING_PK)
            permitted = pk is not None and model.may_launch(who, pk)
            found.append(
                Probe(
                    "markLicenceLaunched",
                    "markLicenceLaunched(input: {licenceId: $t})",
                    {"t": target},
                    decide(
                        pk is not None and pk in visible,
                        permitted,
                        target,
                        ("invalid", "licenceId"),
                    ),
                )
            )
    if model.holds(who, "markLicenceCompleted"):
        # Recalled licences (a typed state error) and completed ones (a quiet success that
        # writes nothing): neither changes anything.
        final = {
            x.id: x.status.value
            for x in facts.licences
            if x.status.value in ("RECALLED", "COMPLETED")
        }
        candidates = [pk for pk in every_licence if pk in final or pk not in seen_licences]
        visible = frozenset(pk for pk in seen_licences if pk in final)
        for pk in pick(candidates, visible):
            target = gid("Licence", pk or MISSING_PK)
            permitted = pk is not None and model.may_complete(who, pk)
            state: tuple[Any, ...] = ("typed", "LICENCE_NOT_ACTIVE")
            if pk is not None and final.get(pk) == "COMPLETED":
                state = ("granted", "LicenceCompleted")
            found.append(
                Probe(
                    "markLicenceCompleted",
                    "markLicenceCompleted(input: {licenceId: $t})",
                    {"t": target},
                    decide(pk is not None and pk in visible, permitted, target, state),
                )
            )
    if model.holds(who, "deleteAutoAllocationRule"):
        # Deleted rules (deleting again changes nothing) and rules the caller cannot see.
        seen_rules = model.rules(who)
        deleted = frozenset(pk for pk in seen_rules if model.rule[pk].deleted)
        candidates = [r.id for r in facts.rules if r.deleted or r.id not in seen_rules]
        for pk in pick(candidates, deleted):
            target = gid("AutoAllocationRule", pk or MISSING_PK)
            found.append(
                Probe(
                    "deleteAutoAllocationRule",
                    "deleteAutoAllocationRule(input: {ruleId: $t})",
                    {"t": target},
                    decide(
                        pk is not None and pk in deleted,
                        True,
                        target,
                        ("granted", "AutoAllocationRuleDeleted"),
                    ),
                )
            )
    if model.holds(who, "revokeApiKey"):
        # Revoked keys (revoking again changes nothing) and keys the caller cannot see.
        seen_keys = model.api_keys(who)
        revoked = frozenset(pk for pk in seen_keys if model.api_key[pk].revoked)
        candidates = [k.id for k in facts.api_keys if k.revoked or k.id not in seen_keys]
        for pk in pick(candidates, revoked):
            target = gid("ApiKey", pk or MISSING_PK)
            found.append(
                Probe(
                    "revokeApiKey",
                    "revokeApiKey(input: {apiKeyId: $t})",
                    {"t": target},
                    decide(
                        pk is not None and pk in revoked, True, target, ("granted", "ApiKeyRevoked")
                    ),
                )
            )
    if model.holds(who, "updateWebhookEndpoint"):
        # Visible endpoints (refused input: nothing changes) and those the caller cannot see.
        seen_hooks = model.webhook_endpoints(who)
        hooks = [w.id for w in facts.webhook_endpoints]
        for pk in pick(hooks, seen_hooks):
            target = gid("WebhookEndpoint", pk or MISSING_PK)
            shown = pk is not None and pk in seen_hooks
            found.append(
                Probe(
                    "updateWebhookEndpoint",
                    "updateWebhookEndpoint(input: {webhookEndpointId: $t, events: []})",
                    {"t": target},
                    decide(shown, True, target, ("invalid", "events")),
                )
            )
            if shown:
                continue  # deleting or rotating a visible one would change it
            for operation in ("deleteWebhookEndpoint", "rotateWebhookSecret"):
                found.append(
                    Probe(
                        operation,
                        f"{operation}(input: {{webhookEndpointId: $t}})",
                        {"t": target},
                        ("not_found", target),
                    )
                )
    if model.holds(who, "createWebhookEndpoint"):
        found.append(
            Probe(
                "createWebhookEndpoint",
                'createWebhookEndpoint(input: {url: "https://hooks.example.org/", events: []})',
                {},
                ("invalid", "events"),
            )
        )
    if model.holds(who, "redeliverWebhook"):
        # Deliveries waiting to be sent (redelivering one changes nothing) and those the caller
        # cannot see.
        seen_deliveries = model.webhook_deliveries(who)
        waiting = frozenset(d.id for d in facts.webhook_deliveries if d.pending) & seen_deliveries
        candidates = [
            d.id for d in facts.webhook_deliveries if d.id in waiting or d.id not in seen_deliveries
        ]
        for pk in pick(candidates, waiting):
            target = gid("WebhookDelivery", pk or MISSING_PK)
            found.append(
                Probe(
                    "redeliverWebhook",
                    "redeliverWebhook(input: {deliveryId: $t})",
                    {"t": target},
                    decide(
                        pk is not None and pk in waiting,
                        True,
                        target,
                        ("granted", "WebhookRedelivered"),
                    ),
                )
            )
    if model.holds(who, "setLicencePool"):
        for pk in [*(o.id for o in facts.organisations), None]:
            target = gid("Organisation", pk or MISSING_PK)
            found.append(
                Probe(
                    "setLicencePool",
                    "setLicencePool(input: {organisationId: $t, courseId: $c, seatsTotal: -1})",
                    {"t": target, "c": gid("Course", course)},
                    decide(
                        pk is not None and pk in model.organisations(who),
                        True,
                        target,
                        ("invalid", "seatsTotal"),
                    ),
                )
            )
    if model.holds(who, "setOrganisationIdentityProvider"):
        for pk in [*(o.id for o in facts.organisations), None]:
            target = gid("Organisation", pk or MISSING_PK)
            found.append(
                Probe(
                    "setOrganisationIdentityProvider",
                    "setOrganisationIdentityProvider(input: {organisationId: $t, "
                    'issuer: "not a URL", audience: "caseload"})',
                    {"t": target},
                    decide(
                        pk is not None and pk in model.organisations(who),
                        True,
                        target,
                        ("invalid", "issuer"),
                    ),
                )
            )
    return found


def subject_probes(check: Check) -> list[Probe]:
    """`Allocation.viewerCan.deallocate` and `Assignment.viewerCan.unassign` against what the
    mutation answers on that very object, where it changes nothing: deallocating an allocation
    already ended (unchanged; not when the pair has an open one, which it would end), and
    unassigning the assignee in the other role (no row of that role ends; not when they hold
    it on the record)."""
    facts, model, who = check.facts, check.model, check.who
    found: list[Probe] = []
    if model.holds(who, "deallocateAssessor"):
        open_pairs = {(a.learner_id, a.assessor_id) for a in facts.allocations if not a.ended}
        for a in facts.allocations:
            if not a.ended or (a.learner_id, a.assessor_id) in open_pairs:
                continue
            found.append(
                Probe(
                    "deallocateAssessor",
                    "deallocateAssessor(input: {learnerId: $l, assessorId: $u})",
                    {"l": gid("Learner", a.learner_id), "u": gid("User", a.assessor_id)},
                    FLAG_ONLY,
                    subject=gid("Allocation", a.id),
                    label="deallocateAssessor on Allocation",
                )
            )
    if model.holds(who, "unassignRecords"):
        held = {(a.record_id, a.user_id, a.role.value) for a in facts.assignments if not a.ended}
        for x in facts.assignments:
            other = "TRAINING_COORDINATOR" if x.role.value == "ASSESSOR" else "ASSESSOR"
            if (x.record_id, x.user_id, other) in held:
                continue
            found.append(
                Probe(
                    "unassignRecords",
                    f"unassignRecords(input: {{recordIds: [$r], assigneeId: $u, role: {other}}})",
                    {"r": gid("ApprenticeRecord", x.record_id), "u": gid("User", x.user_id)},
                    FLAG_ONLY,
                    subject=gid("Assignment", x.id),
                    label="unassignRecords on Assignment",
                )
            )
    return found


def operation_text(batch: Sequence[Probe]) -> tuple[str, dict[str, Any]]:
    """One mutation operation with an alias per probe; variables renamed per alias."""
    definitions: list[str] = []
    fields: list[str] = []
    variables: dict[str, Any] = {}
    for k, probe in enumerate(batch):
        text = probe.text
        for name, value in sorted(probe.variables.items()):
            text = text.replace(f"${name}", f"${name}{k}")
            variables[f"{name}{k}"] = value
            definitions.append(f"${name}{k}: ID!")
        fields.append(f"a{k}: {text} {outcome_selection(probe.operation)}")
    head = f"({', '.join(definitions)})" if definitions else ""
    return f"mutation Probe{head} {{ {' '.join(fields)} }}", variables


async def run_probes(check: Check, batch: Sequence[Probe]) -> list[tuple[Any, ...]] | None:
    query, variables = operation_text(batch)
    result = await check.caller(query, **variables)
    if result.status != 200:
        check.add("actions", f"HTTP {result.status} {result.body}")
        return None
    if result.data is None:
        if len(batch) == 1 and result.errors:
            return [outcome_of(None, result.errors[0])]
        return None  # a non-null root field failed: the caller splits the batch
    errors = {tuple(e.get("path") or ()): e for e in result.errors}
    return [outcome_of(result.data[f"a{k}"], errors.get((f"a{k}",))) for k in range(len(batch))]


async def check_actions(check: Check) -> None:
    """Typed outcomes go in batches; each expected FORBIDDEN (a top-level error, which nulls
    the whole answer of a mutation operation) goes alone, a few per operation."""
    every = probes(check)
    typed = [p for p in every if not p.forbidden]
    forbidden: list[Probe] = []
    for operation in ACTION_ROLES:
        forbidden += [p for p in every if p.forbidden and p.operation == operation][
            :FORBIDDEN_PROBES_PER_OPERATION
        ]
    pending: list[Sequence[Probe]] = batches(typed) + [[p] for p in forbidden]
    while pending:
        batch = pending.pop(0)
        outcomes = await run_probes(check, batch)
        if outcomes is None and len(batch) > 1:
            pending[:0] = [[p] for p in batch]  # find which one answered a top-level error
            continue
        if outcomes is None:
            outcomes = [("null",)]
        for probe, got in zip(batch, outcomes, strict=True):
            if probe.key is not None:
                check.outcomes[probe.key] = got
            if probe.expected == FLAG_ONLY:
                continue  # compared with the flag only (check_capabilities)
            if got != probe.expected:
                target = ", ".join(readable(v) for v in probe.variables.values()) or "no target"
                check.add(
                    f"{probe.operation}({target})", f"answered {got}, expected {probe.expected}"
                )
            if got[0] == "granted" and probe.expected[0] != "granted":
                check.add(probe.operation, "a probe was granted: the world changed under the check")


def small_pages_for(principals: Sequence[Who]) -> Callable[[Who], bool]:
    """A few principals of each kind page through their lists in small pages."""
    chosen: dict[str, Who] = {}
    for who in principals:
        key = who.kind + ("+".join(sorted(who.roles)) if who.kind == "STAFF" else "")
        chosen.setdefault(key, who)
    picked = set(chosen.values())
    return lambda who: who in picked


# --- capabilities ---------------------------------------------------------------------------

# Mutations whose probes tell what a flag says (several mutations share one permission).
OPERATION_FLAGS: dict[str, tuple[str, str]] = {
    operation: key for key, operation in FLAG_OPERATIONS.items() if key[0] != "Course"
} | {
    "deallocateAssessor": ("Learner", "allocateAssessor"),
    "unassignRecords": ("ApprenticeRecord", "assign"),
    "assignTrainingCoordinator": ("ApprenticeRecord", "assign"),
    "deallocateAssessor on Allocation": ("Allocation", "deallocate"),
    "unassignRecords on Assignment": ("Assignment", "unassign"),
}
# Answers that refuse the target itself: the flag must then be false.
STATE_ERRORS = {"RECORD_ARCHIVED", "LICENCE_NOT_ACTIVE", "EVIDENCE_LOCKED"}
BULK_REFUSALS = {"FORBIDDEN", "NOT_FOUND", "RECORD_ARCHIVED", "LICENCE_IN_USE", "INVALID"}


def accepted(got: tuple[Any, ...], target: str) -> bool:
    """Whether a probe's answer accepted its target (an input error on other fields is no
    refusal of the target): FORBIDDEN, NOT_FOUND for it, or a state error are refusals."""
    if got == ("error", "FORBIDDEN") or got == ("not_found", target):
        return False
    if got[0] == "typed" and got[1] in STATE_ERRORS:
        return False
    if got == ("invalid", "licenceId"):  # "Only an active licence can be launched."
        return False
    if got[0] == "bulk":
        return not any(i == target and code in BULK_REFUSALS for i, code in got[1])
    return bool(got[0] != "error")


def accepted_itself(got: tuple[Any, ...]) -> bool:
    """Whether a probe of an object named by other ids (an allocation by its learner and
    assessor, an assignment by its record and person) accepted it: any refusal of those ids
    refuses it."""
    if got[0] in ("error", "not_found", "invalid", "null"):
        return False
    if got[0] == "typed" and got[1] in STATE_ERRORS:
        return False
    if got[0] == "bulk":
        return not any(code in BULK_REFUSALS for _, code in got[1])
    return True


def _can(type_name: str) -> str:
    return f"viewerCan {{ {' '.join(CAPABILITY_FLAGS[type_name])} }}"


NESTED_CAPABILITIES = f"""query NestedCapabilities {{
  learners(first: {PAGE}) {{ edges {{ node {{ id {_can("Learner")}
    allocations(includeEnded: true) {{ id {_can("Allocation")} }}
    evidence {{ id {_can("Evidence")} }}
    licences {{ id {_can("Licence")} }} }} }} }}
  apprenticeRecords(first: {PAGE}) {{ edges {{ node {{ id {_can("ApprenticeRecord")}
    assignments(includeEnded: true) {{ id {_can("Assignment")}
      user {{ id {_can("User")} }} }} }} }} }}
}}"""


async def check_nested_capabilities(check: Check) -> None:
    """`viewerCan` of the objects shown inside lists (a page's learners' allocations,
    evidence and licences; its records' assignments and their assignees) equals the model's,
    as on the same objects asked by id."""
    data = await check.ask(NESTED_CAPABILITIES)
    if data is None:
        return

    def walk(node: dict[str, Any], type_name: str, fields: dict[str, str]) -> None:
        _, pk = decode_id(node["id"])
        expected = capabilities(check.model, check.who, type_name, pk)
        if node["viewerCan"] != expected:
            check.add(
                f"nested {type_name}.viewerCan({readable(node['id'])})",
                f"answered {node['viewerCan']}, model {expected}",
            )
        for field_name, inner in fields.items():
            value = node.get(field_name)
            for item in value if isinstance(value, list) else [value] if value else []:
                walk(item, inner, {"user": "User"} if inner == "Assignment" else {})

    learner_fields = {"allocations": "Allocation", "evidence": "Evidence", "licences": "Licence"}
    for edge in data["learners"]["edges"]:
        walk(edge["node"], "Learner", learner_fields)
    for edge in data["apprenticeRecords"]["edges"]:
        walk(edge["node"], "ApprenticeRecord", {"assignments": "Assignment"})


async def check_capabilities(check: Check) -> None:
    """`viewerCan` on every object the principal sees equals the model's Actions table and what
    the probed mutations answered on it; `Viewer.can` equals the held actions."""
    who, model = check.who, check.model
    held = viewer_can(model, who)
    data = await check.ask("{ viewer { can { " + " ".join(held) + " } } }")
    if data is not None and data["viewer"]["can"] != held:
        check.add("viewer.can", f"answered {data['viewer']['can']}, model {held}")
    visible = model.visible(who)
    answered: dict[str, dict[str, bool]] = {}
    for type_name, flags in CAPABILITY_FLAGS.items():
        selection = f"... on {type_name} {{ viewerCan {{ {' '.join(flags)} }} }}"
        for batch in batches(sorted(visible[type_name])):
            ids = [gid(type_name, pk) for pk in batch]
            query = (
                "{ "
                + " ".join(
                    f"a{k}: node(id: {json.dumps(i)}) {{ {selection} }}" for k, i in enumerate(ids)
                )
                + " }"
            )
            data = await check.ask(query)
            if data is None:
                continue
            for k, (pk, i) in enumerate(zip(batch, ids, strict=True)):
                node = data[f"a{k}"]
                if node is None:
                    continue  # check_nodes reports a visible object answered null
                answered[i] = node["viewerCan"]
                expected = capabilities(model, who, type_name, pk)
                if node["viewerCan"] != expected:
                    check.add(
                        f"{type_name}.viewerCan({readable(i)})",
                        f"answered {node['viewerCan']}, model {expected}",
                    )
    await check_nested_capabilities(check)
    # what the mutations answered on the same targets
    for (operation, target), got in check.outcomes.items():
        if operation not in OPERATION_FLAGS or target not in answered:
            continue
        type_name, flag = OPERATION_FLAGS[operation]
        said = answered[target][flag]
        did = accepted_itself(got) if " on " in operation else accepted(got, target)
        if " on " in operation:
            TALLY[f"capabilities: {type_name}.{flag} compared with {operation.split()[0]}"] += 1
        if operation == "signOffEvidence" and did and not said:
            # A REFER without a comment is refused as input before decided evidence is
            # found locked: no answer about the state.
            _, pk = decode_id(target)
            if model.evidence_row[pk].status != "SUBMITTED":
                continue
        if operation == "updateStaffMember" and did and not said:
            # A blank name is refused as input before a member deactivated here is.
            _, pk = decode_id(target)
            if (pk, who.organisation_id) in model.deactivated:
                continue
        if said != did:
            check.add(
                f"{type_name}.viewerCan.{flag}({readable(target)})",
                f"says {said}, but {operation} answered {got}",
            )
