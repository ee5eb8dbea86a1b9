"""The compiled read path answers exactly what the standard executor answers.

Generated documents over the schema, asked by every principal of a generated world, each sent
to two apps on the same database: one answering compilable queries with one SQL statement,
one with the compiled path turned off. The response bodies must be identical, byte for byte;
and enough of the pairs must really have gone through the compiled path.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)

from db.models import (
    AssignmentRole,
    EvidenceStatus,
    LicenceStatus,
    Organisation,
    RecordStatus,
    RuleScope,
    User,
)
from schema import schema
from server.app import create_app
from server.services import Services
from tests.conftest import Backend, make_settings
from tests.factories import World
from tests.helpers import gid
from tests.test_field_modes import STANDARD_LISTS

SEED = int(os.environ.get("CASELOAD_DIFFERENTIAL_SEED", "20261130"))
DOCUMENTS_PER_PRINCIPAL = 40
MIN_COMPILED_PAIRS = 500
# Of those, pairs whose document asks for one object by id (`learner(id:)`, `node(id:)`), and
# of those, pairs answering an object (not null).
MIN_OBJECT_PAIRS = 200
MIN_FOUND_OBJECT_PAIRS = 60
# Pairs whose document has @include/@skip (on literals or variables).
MIN_CONDITIONAL_PAIRS = 150
# Pairs whose document selects a field that once made documents fall back.
MIN_PAIRS_WITH = {"pool": 50, "roles": 20, "caseloadCount": 20, "deactivatedAt": 20}

# Fields the compiled path does not gather: documents that pick one fall back whole.
FALLBACK_FIELDS = {"access"}
SEARCHES = ["a", "Le", "zz", "%", "_", "\\", " ", "o'n", "Z", "ë"]


@dataclass
class Principal:
    user: User
    organisation: Organisation | None
    label: str


@dataclass
class Facts:
    principals: list[Principal]
    ids: dict[str, list[str]]  # type name → global ids of the world (and some made up)


async def build_world(world: World, rng: random.Random) -> Facts:
    principals: list[Principal] = []
    ids: dict[str, list[str]] = {
        k: []
        for k in (
            "Location",
            "Department",
            "User",
            "Learner",
            "ApprenticeRecord",
            "Organisation",
            "Evidence",
            "Allocation",
            "Assignment",
            "Licence",
        )
    }
    externals = [await world.external_assessor(name=f"Ext {n}") for n in range(2)]
    support = await world.support()
    principals += [Principal(e, None, "external") for e in externals]
    principals.append(Principal(support, None, "support"))
    courses = [await world.course(title=f"Course {c}") for c in "ABC"]
    ids["Course"] = [gid("Course", c.id) for c in courses] + [gid("Course", 10**9)]
    for o in range(2):
        org = await world.organisation()
        ids["Organisation"].append(gid("Organisation", org.id))
        locations = [await world.location(org) for _ in range(2)]
        departments = [await world.department(org) for _ in range(2)]
        ids["Location"] += [gid("Location", u.id) for u in locations]
        ids["Department"] += [gid("Department", u.id) for u in departments]
        pools = [await world.pool(org, c, 100) for c in courses]
        await world.rule(org, courses[0])
        await world.rule(org, courses[1], deleted=True)
        await world.rule(org, courses[2], RuleScope.LOCATION, location=locations[0])
        await world.api_key(org, "ADMIN", name=f"Feed {o}")
        await world.api_key(org, "MANAGER", name=f"Old feed {o}", revoked=True)
        staff = {
            "ADMIN": await world.staff(org, "ADMIN"),
            "SENIOR_ASSESSOR": await world.staff(org, "SENIOR_ASSESSOR"),
            "MANAGER": await world.staff(org, "MANAGER", location=locations[0]),
            "MANAGER_BOTH": await world.staff(
                org, "MANAGER", location=locations[1], department=departments[0]
            ),
        }
        assessors = [await world.staff(org, "ASSESSOR", name=f"Assessor {o}{n}") for n in range(3)]
        coordinator = await world.staff(org, "TRAINING_COORDINATOR")
        if o == 0:  # who reads API keys
            staff["SUPER_ADMIN"] = await world.staff(org, "SUPER_ADMIN")
        for role, person in staff.items():
            principals.append(Principal(person, org, role))
        principals += [Principal(a, org, "ASSESSOR") for a in assessors[:2]]
        principals.append(Principal(coordinator, org, "TRAINING_COORDINATOR"))
        ids["User"] += [gid("User", p.id) for p in [*staff.values(), *assessors, coordinator]]
        for n in range(14):
            sign_in = await world.staff(org, "LEARNER") if n % 5 == 0 else None
            learner = await world.learner(
                org,
                name=f"{rng.choice(['Ann', 'ann', 'Ëva', 'Zed', 'Li'])} Learner{o}{n}",
                location=rng.choice([*locations, None]),
                department=rng.choice([*departments, None]),
                user=sign_in,
            )
            if sign_in is not None and n % 10 == 0:
                principals.append(Principal(sign_in, org, "LEARNER"))
            ids["Learner"].append(gid("Learner", learner.id))
            for r in range(rng.randint(0, 2)):
                live = RecordStatus.ARCHIVED if rng.random() < 0.15 else RecordStatus.LIVE
                record = await world.record(learner, programme=f"Programme {r}", status=live)
                ids["ApprenticeRecord"].append(gid("ApprenticeRecord", record.id))
                if rng.random() < 0.6:
                    assignment = await world.assign(record, rng.choice(assessors))
                    ids["Assignment"].append(gid("Assignment", assignment.id))
                if rng.random() < 0.2:
                    await world.assign(record, rng.choice(assessors), ended=True)
                if rng.random() < 0.3:
                    await world.assign(record, coordinator, AssignmentRole.TRAINING_COORDINATOR)
                if rng.random() < 0.5:
                    evidence = await world.evidence(record, title=f"Evidence {r}")
                    ids["Evidence"].append(gid("Evidence", evidence.id))
                    if rng.random() < 0.3:
                        await world.decide(evidence, EvidenceStatus.SIGNED_OFF, staff["ADMIN"])
            if rng.random() < 0.3:
                expires = rng.choice([None, timedelta(days=3), timedelta(days=-3)])
                allocation = await world.allocate(
                    learner,
                    rng.choice(externals),
                    expires_at=None if expires is None else datetime.now(UTC) + expires,
                    ended=rng.random() < 0.2,
                )
                ids["Allocation"].append(gid("Allocation", allocation.id))
            for pool in rng.sample(pools, rng.randint(0, 2)):
                # active (no expiry, expiring later, or past its expiry: it reads EXPIRED),
                # recalled, completed, or stored as expired
                held, expiry = rng.choice(
                    [
                        (LicenceStatus.ACTIVE, None),
                        (LicenceStatus.ACTIVE, timedelta(days=3)),
                        (LicenceStatus.ACTIVE, timedelta(days=-3)),
                        (LicenceStatus.RECALLED, None),
                        (LicenceStatus.COMPLETED, None),
                        (LicenceStatus.EXPIRED, timedelta(days=-5)),
                    ]
                )
                licence = await world.licence(
                    pool,
                    learner,
                    status=held,
                    expires_at=None if expiry is None else datetime.now(UTC) + expiry,
                )
                ids["Licence"].append(gid("Licence", licence.id))
    ids["User"] += [gid("User", e.id) for e in externals] + [gid("User", 10**9)]
    ids["Learner"].append(gid("Learner", 10**9))
    ids["Location"].append("not-an-id")
    ids["ApprenticeRecord"].append(gid("ApprenticeRecord", 10**9))
    return Facts(principals, ids)


def literal(value: Any, kind: Any) -> str:
    """A filter value written into the document: enum values bare, anything else as JSON."""
    inner = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    if isinstance(inner, GraphQLList):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value) if isinstance(inner, GraphQLEnumType) else json.dumps(value)


def _raw_id(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Ids that name no object: malformed, of no Node type, out of range, of a type without `node`.
MADE_UP_IDS = [
    "not-an-id",
    "",
    "=",
    _raw_id("Nothing:1"),
    _raw_id("Learner:0"),
    _raw_id("Learner:01"),
    _raw_id("Learner:x"),
    _raw_id(f"Learner:{2**63}"),
    _raw_id("LicencePool:1"),
    _raw_id("Viewer:1"),
]


class Documents:
    """Random documents over every list of the schema and what hangs off them."""

    def __init__(self, rng: random.Random, facts: Facts) -> None:
        self.rng = rng
        self.facts = facts
        self.types = schema._schema.type_map
        self.fragments: list[str] = []
        # The document's condition variables: a value, or "true"/"false" for a default the
        # request leaves to the declaration.
        self.conditions: dict[str, bool | str] = {}

    def directive(self) -> str:
        """Now and then @include or @skip, on a literal or a variable (given or defaulted)."""
        rng = self.rng
        if rng.random() > 0.12:
            return ""
        kind = rng.choice(["include", "skip"])
        if rng.random() < 0.3:
            return f" @{kind}(if: {rng.choice(['true', 'false'])})"
        name = f"c{rng.randint(0, 2)}"
        choices: list[bool | str] = [True, False, "true", "false"]
        self.conditions.setdefault(name, rng.choice(choices))
        return f" @{kind}(if: ${name})"

    def selection(self, type_name: str, depth: int) -> str:
        gql_type = self.types[type_name]
        assert isinstance(gql_type, GraphQLObjectType)
        names = list(gql_type.fields)
        chosen = self.rng.sample(names, self.rng.randint(1, min(5, len(names))))
        if "id" in names and self.rng.random() < 0.7 and "id" not in chosen:
            chosen.insert(0, "id")
        parts = []
        for name in chosen:
            field = gql_type.fields[name]
            if name in FALLBACK_FIELDS and self.rng.random() < 0.8:
                continue
            inner = field.type
            while isinstance(inner, GraphQLNonNull | GraphQLList):
                inner = inner.of_type
            alias = f"x{self.rng.randint(0, 9)}_{name}: " if self.rng.random() < 0.15 else ""
            arguments = ""
            if name == "licences" and self.rng.random() < 0.7:
                arguments = self.licence_arguments()
            if name in ("allocations", "assignments") and self.rng.random() < 0.5:
                arguments = f"(includeEnded: {self.rng.choice(['true', 'false'])})"
            if isinstance(inner, GraphQLScalarType) or not isinstance(inner, GraphQLObjectType):
                parts.append(f"{alias}{name}{self.directive()}")
            elif depth < 3:
                parts.append(
                    f"{alias}{name}{arguments}{self.directive()} "
                    f"{{ {self.selection(inner.name, depth + 1)} }}"
                )
        if self.rng.random() < 0.2:
            parts.append("__typename")
        if self.rng.random() < 0.1:
            parts.append(f"...{self.directive()} on Node {{ id }}")
        if self.rng.random() < 0.1 and type_name == "Learner":
            self.fragments.append("fragment L on Learner { name initials }")
            parts.append(f"...L{self.directive()}")
        return " ".join(parts) or "__typename"

    def licence_arguments(self) -> str:
        """A learner's licences narrowed: the filter (fixed by the document) or the former
        status argument; now and then an id that is malformed or names another learner."""
        rng = self.rng
        status = rng.choice([s.value for s in LicenceStatus])
        if rng.random() < 0.3:
            return f"(status: {status})"
        options = {
            "status": status,
            "courseId": json.dumps(rng.choice(self.facts.ids["Course"])),
            "learnerId": json.dumps(rng.choice(self.facts.ids["Learner"])),
        }
        chosen = [f"{k}: {v}" for k, v in options.items() if rng.random() < 0.4]
        return f"(filter: {{{', '.join(chosen)}}})"

    def value(self, name: str, kind: Any) -> Any:
        """A value for a filter field or argument, from its name and type: ids of the world
        (and made-up and malformed ones), enum values, searches, booleans, times."""
        rng = self.rng
        kind = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
        if isinstance(kind, GraphQLList):
            item = (
                kind.of_type.of_type if isinstance(kind.of_type, GraphQLNonNull) else kind.of_type
            )
            return rng.sample(list(item.values), rng.randint(1, 2))
        if isinstance(kind, GraphQLEnumType):
            return rng.choice(list(kind.values))
        if kind.name == "Boolean":
            return rng.random() < 0.5
        if kind.name == "DateTime":
            return (datetime.now(UTC) + timedelta(days=rng.choice([-400, -1, 0, 1]))).isoformat()
        if kind.name == "ID":
            owner = ID_ARGUMENTS.get(name)
            if owner is None:
                owner = rng.choice(sorted(self.facts.ids))
            return rng.choice(self.facts.ids[owner])
        return rng.choice(SEARCHES)

    def arguments(self, field: GraphQLField) -> tuple[str, dict[str, Any], str | None]:
        """A list's arguments: paging and order, its required arguments, a filter written in
        the document or given as a variable (then also its type's name)."""
        rng = self.rng
        args: list[str] = []
        variables: dict[str, Any] = {}
        size = rng.choice([0, 1, 2, 5, 50])
        paging = rng.random()
        if paging < 0.6:
            args.append(f"first: {size}")
        elif paging < 0.85:
            args.append(f"last: {size}")
        if rng.random() < 0.4:
            order = named(field.args["orderBy"].type)
            sort = rng.choice(list(named(order.fields["field"].type).values))
            direction = rng.choice(["", ", direction: ASC", ", direction: DESC"])
            args.append(f"orderBy: [{{field: {sort}{direction}}}]")
        for name, argument in field.args.items():
            if isinstance(argument.type, GraphQLNonNull):
                args.append(f"{name}: {json.dumps(self.value(name, argument.type))}")
            elif name == "search" and rng.random() < 0.2:
                args.append(f"search: {json.dumps(rng.choice(SEARCHES))}")
        declaration = None
        if "filter" in field.args:
            kind = named(field.args["filter"].type)
            chosen = {
                name: self.value(name, f.type)
                for name, f in kind.fields.items()
                if rng.random() < 0.3
            }
            if chosen and rng.random() < 0.5:
                variables["f"] = chosen
                args.append("filter: $f")
                declaration = kind.name
            elif chosen:
                written = ", ".join(
                    f"{k}: {literal(v, kind.fields[k].type)}" for k, v in chosen.items()
                )
                args.append(f"filter: {{{written}}}")
        return ", ".join(args), variables, declaration

    def any_id(self, type_name: str | None = None) -> str:
        """An id of the world (visible or not to the caller, of either organisation), of
        `type_name` mostly, or one made up."""
        rng = self.rng
        if rng.random() < 0.15:
            return rng.choice(MADE_UP_IDS)
        if type_name is None or rng.random() < 0.15:
            type_name = rng.choice(sorted(k for k, v in self.facts.ids.items() if v))
        return rng.choice(self.facts.ids[type_name])

    def by_id(self, n: int, field: str) -> tuple[str, dict[str, Any], str | None]:
        """`learner(id:)` or `node(id:)`: the root, its variables and its declaration."""
        rng = self.rng
        id_ = self.any_id("Learner" if field == "learner" else None)
        if field == "node" and rng.random() < 0.2:
            id_ = rng.choice(self.facts.ids["Course"])
        variables: dict[str, Any] = {}
        declaration = None
        if rng.random() < 0.5:
            argument = f"${field}{n}"
            variables[f"{field}{n}"] = id_
            declaration = f"${field}{n}: ID!"
        else:
            argument = json.dumps(id_)
        if field == "learner":
            selection = self.selection("Learner", 1)
        else:
            parts = []
            if rng.random() < 0.5:
                parts.append("id")
            if rng.random() < 0.3:
                parts.append("__typename")
            types = sorted(k for k in self.facts.ids if k in self.types)
            for type_name in rng.sample(types, rng.randint(1, 3)):
                parts.append(
                    f"... on {type_name}{self.directive()} {{ {self.selection(type_name, 1)} }}"
                )
            if rng.random() < 0.2:
                parts.append("... on Node { id }")
            if rng.random() < 0.3:  # the Eligible screen's course
                parts.append("... on Course { title pool { seatsAvailable seatsTotal } }")
            if rng.random() < 0.2:
                self.fragments.append("fragment R on ApprenticeRecord { programme status }")
                parts.append(f"...R{self.directive()}")
            selection = " ".join(parts)
        alias = f"o{n}: " if rng.random() < 0.3 else ""
        return (
            f"{alias}{field}(id: {argument}){self.directive()} {{ {selection} }}",
            variables,
            declaration,
        )

    def document(self) -> tuple[str, dict[str, Any]]:
        self.fragments = []
        self.conditions = {}
        roots = []
        variables: dict[str, Any] = {}
        declarations = []
        lists = list_roots()
        chosen: list[str] = []
        for _ in range(self.rng.randint(1, 2)):
            # a root by id about as often as before the lists grew from two to all of them
            by_id = self.rng.random() < 0.4
            pool = ["learner", "node"] if by_id else [*sorted(lists), *PLAIN_LISTS]
            chosen.append(self.rng.choice([f for f in pool if f not in chosen]))
        for n, name in enumerate(chosen):
            if name in ("learner", "node"):
                root, more, declaration = self.by_id(n, name)
                roots.append(root)
                variables.update(more)
                if declaration is not None:
                    declarations.append(declaration)
                continue
            if name in PLAIN_LISTS:
                course = self.value("courseId", self.types["ID"])
                narrowed = ""
                if name == "autoAllocationRules" and self.rng.random() < 0.5:
                    narrowed = f"(courseId: {json.dumps(course)})"
                selection = self.selection(PLAIN_LISTS[name], 1)
                roots.append(f"{name}{narrowed} {{ {selection} }}")
                continue
            field = lists[name]
            args, more, kind = self.arguments(field)
            if more:
                variable = f"f{n}"
                args = args.replace("$f", f"${variable}")
                variables[variable] = more["f"]
                declarations.append(f"${variable}: {kind}")
            node = node_type(field)
            connection = []
            if self.rng.random() < 0.6:
                connection.append(f"totalCount{self.directive()}")
            if self.rng.random() < 0.9:
                edge = [f"cursor{self.directive()}"] if self.rng.random() < 0.5 else []
                edge.append(f"node{self.directive()} {{ {self.selection(node, 1)} }}")
                connection.append(f"edges{self.directive()} {{ {' '.join(edge)} }}")
            if self.rng.random() < 0.5:
                connection.append(
                    f"pageInfo{self.directive()} "
                    "{ hasNextPage hasPreviousPage startCursor endCursor }"
                )
            alias = f"r{n}: " if self.rng.random() < 0.3 else ""
            root = f"{alias}{name}({args})".replace("()", "")
            roots.append(f"{root}{self.directive()} {{ {' '.join(connection) or 'totalCount'} }}")
        for name, value in self.conditions.items():
            if isinstance(value, bool):
                declarations.append(f"${name}: Boolean!")
                variables[name] = value
            else:
                declarations.append(f"${name}: Boolean = {value}")
        header = f"query Q({', '.join(declarations)})" if declarations else "query Q"
        fragments = " ".join(dict.fromkeys(self.fragments))
        return f"{header} {{ {' '.join(roots)} }} {fragments}", variables


# Which kind of object an id argument or filter field names.
ID_ARGUMENTS = {
    "locationId": "Location",
    "departmentId": "Department",
    "assignedTo": "User",
    "assigneeId": "User",
    "actorId": "User",
    "learnerId": "Learner",
    "recordId": "ApprenticeRecord",
    "courseId": "Course",
}


# The lists that are not paged, by the type of their items.
PLAIN_LISTS = {"autoAllocationRules": "AutoAllocationRule", "apiKeys": "ApiKey"}


def named(kind: Any) -> Any:
    """The named type under lists and non-nulls (typed loosely: tests read its parts)."""
    return get_named_type(kind)


def list_roots() -> dict[str, GraphQLField]:
    """Every list of the schema that compiles: the Query fields whose type is a connection
    (not the change feed, which the standard executor answers by design)."""
    query = schema._schema.query_type
    assert query is not None
    return {
        name: field
        for name, field in query.fields.items()
        if named(field.type).name.endswith("Connection") and f"Query.{name}" not in STANDARD_LISTS
    }


def node_type(field: GraphQLField) -> str:
    connection = named(field.type)
    edge = named(connection.fields["edges"].type)
    return str(named(edge.fields["node"].type).name)


@pytest.fixture
async def apps(backend: Backend) -> AsyncIterator[dict[bool, httpx.AsyncClient]]:
    clients: dict[bool, httpx.AsyncClient] = {}
    built = []
    for compiled in (True, False):
        services = Services.build(make_settings(backend.url, compiled_reads=compiled))
        built.append(services)
        app = create_app(services=services)
        clients[compiled] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://caseload.test"
        )
    yield clients
    for client in clients.values():
        await client.aclose()
    for services in built:
        await services.aclose()


async def test_the_compiled_path_answers_exactly_as_the_standard_one(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    rng = random.Random(SEED)
    facts = await build_world(world, rng)
    documents = Documents(rng, facts)
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    settings = compiled_app.state.services.settings
    from server.tokens import mint_token

    pairs = object_pairs = found_objects = conditional_pairs = 0
    with_field = dict.fromkeys(MIN_PAIRS_WITH, 0)
    differences: list[str] = []
    for principal in facts.principals:
        token = mint_token(
            settings,
            email=principal.user.email,
            org=principal.organisation.slug if principal.organisation else None,
        )
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(DOCUMENTS_PER_PRINCIPAL):
            query, variables = documents.document()
            body = {"query": query, "variables": variables}
            before = reads.answered
            fast = await apps[True].post("/graphql", json=body, headers=headers)
            slow = await apps[False].post("/graphql", json=body, headers=headers)
            pairs += reads.answered - before
            conditional = "@include" in query or "@skip" in query
            conditional_pairs += reads.answered > before and conditional
            for name in with_field:
                with_field[name] += reads.answered > before and f" {name} " in query
            if reads.answered > before and ("learner(id:" in query or "node(id:" in query):
                object_pairs += 1
                data = fast.json().get("data") or {}
                found_objects += any(
                    isinstance(v, dict) and not {"edges", "totalCount", "pageInfo"} & v.keys()
                    for v in data.values()
                )
            if (fast.status_code, fast.content) != (slow.status_code, slow.content):
                differences.append(
                    f"{principal.label} {principal.user.email}: {query} {variables}\n"
                    f"  compiled: {fast.content[:3000]!r}\n  standard: {slow.content[:3000]!r}"
                )
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:3])
    print(
        f"seed {SEED}: {pairs} (document, principal) pairs answered by the compiled path, "
        f"{object_pairs} of them by id ({found_objects} finding an object), "
        f"{conditional_pairs} with @include/@skip, with fields: {with_field}"
    )
    assert pairs >= MIN_COMPILED_PAIRS, pairs
    assert object_pairs >= MIN_OBJECT_PAIRS, object_pairs
    assert found_objects >= MIN_FOUND_OBJECT_PAIRS, found_objects
    assert conditional_pairs >= MIN_CONDITIONAL_PAIRS, conditional_pairs
    assert all(with_field[k] >= n for k, n in MIN_PAIRS_WITH.items()), with_field
    assert reads.failed == 0  # no statement the database refused, answered by the other path


CONDITIONAL = """query C($a: Boolean!, $b: Boolean!, $c: Boolean = false, $d: Boolean = true) {
  learners(first: 5) @include(if: $d) { totalCount @skip(if: $a)
    edges { node { id name @include(if: $a) ... on Learner @skip(if: $b) { initials }
      records @include(if: $c) { programme } } } }
  learner(id: $id) @skip(if: $c) { name @include(if: $b) } }"""


async def test_one_document_is_planned_per_combination_of_its_conditions(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    """The same document with other condition values answers by another plan; at most
    MAX_CONDITION_PLANS are kept per operation, the other combinations go to the standard
    executor (and answer the same)."""
    from schema.compiled import MAX_CONDITION_PLANS
    from server.tokens import mint_token

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Ann Conditional")
    await world.record(learner, programme="Programme C")
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    token = mint_token(compiled_app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}
    query = CONDITIONAL.replace("query C(", "query C($id: ID!, ")
    combinations = [
        {"a": a, "b": b, "c": c, "d": d}
        for a in (True, False)
        for b in (True, False)
        for c in (False, True)
        for d in (True, False)
    ]
    answered: list[bool] = []
    for values in [*combinations, *combinations]:  # each combination twice: kept plans
        body = {"query": query, "variables": {"id": gid("Learner", learner.id), **values}}
        before = reads.answered
        fast = await apps[True].post("/graphql", json=body, headers=headers)
        slow = await apps[False].post("/graphql", json=body, headers=headers)
        assert fast.content == slow.content, (values, fast.content, slow.content)
        answered.append(reads.answered > before)
    # Planned in the order asked; a combination that skips both roots gathers nothing.
    expected = [
        n < MAX_CONDITION_PLANS and not (v["c"] and not v["d"]) for n, v in enumerate(combinations)
    ]
    assert answered == expected + expected


async def test_the_statements_kept_for_one_document_are_bounded(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    """Ids of other types choose other statements (a shape per type of each `node(id:)`); an
    operation keeps at most MAX_STATEMENTS of them and answers the others all the same."""
    from schema.compiled import MAX_STATEMENTS
    from server.tokens import mint_token

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    record = await world.record(learner)
    ids = [
        gid("Learner", learner.id),
        gid("ApprenticeRecord", record.id),
        gid("User", admin.id),
        gid("Organisation", org.id),
        gid("Course", 10**9),
    ]
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    token = mint_token(compiled_app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}
    query = (
        "query N($a: ID!, $b: ID!, $c: ID!) { a: node(id: $a) { id } b: node(id: $b) { id } "
        "c: node(id: $c) { id __typename } }"
    )
    before = reads.answered
    for a in ids:
        for b in ids:
            for c in ids:
                body = {"query": query, "variables": {"a": a, "b": b, "c": c}}
                fast = await apps[True].post("/graphql", json=body, headers=headers)
                slow = await apps[False].post("/graphql", json=body, headers=headers)
                assert fast.content == slow.content
    assert reads.answered - before == len(ids) ** 3
    operation = reads.documents.kept.get(query).plans[None]
    assert len(operation.statements) == MAX_STATEMENTS < len(ids) ** 3


async def test_a_root_is_compiled_once_for_every_document_that_asks_it(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    """Thirty `node(id:)` aliases with one selection compile one fragment (resolvers/compiled.py
    Fragment), which another document asking the same root reuses; each alias still answers
    its own id through its own scope, as the standard executor does."""
    from server.tokens import mint_token

    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    mine = [await world.learner(org, name=f"Learner {n}") for n in range(28)]
    for learner in mine[:3]:
        await world.record(learner, programme=f"Programme of {learner.name}")
    theirs = await world.learner(other, name="Not Visible")
    ids = [gid("Learner", x.id) for x in [*mine, theirs]] + [gid("Learner", 10**9)]
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    token = mint_token(compiled_app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}
    selection = "{ ... on Learner { id name records { programme } } }"

    async def ask(query: str, variables: dict[str, str]) -> httpx.Response:
        before = reads.answered
        body = {"query": query, "variables": variables}
        fast = await apps[True].post("/graphql", json=body, headers=headers)
        slow = await apps[False].post("/graphql", json=body, headers=headers)
        assert reads.answered == before + 1, fast.content
        assert fast.content == slow.content, (fast.content, slow.content)
        return fast

    definitions = ", ".join(f"$i{k}: ID!" for k in range(len(ids)))
    aliases = " ".join(f"a{k}: node(id: $i{k}) {selection}" for k in range(len(ids)))
    kept = len(reads.fragments)
    answer = await ask(
        f"query Many({definitions}) {{ {aliases} }}", {f"i{k}": i for k, i in enumerate(ids)}
    )
    assert len(reads.fragments) == kept + 1
    data = answer.json()["data"]
    assert [data[f"a{k}"] and data[f"a{k}"]["name"] for k in range(len(ids))] == [
        *(x.name for x in mine),
        None,
        None,
    ]
    assert data["a0"]["records"] == [{"programme": f"Programme of {mine[0].name}"}]

    hits = reads.fragments.hits
    await ask(f"query One($id: ID!) {{ x: node(id: $id) {selection} }}", {"id": ids[1]})
    assert len(reads.fragments) == kept + 1
    assert reads.fragments.hits == hits + 1
    assert reads.fragments.budget == compiled_app.state.services.settings.document_cache_bytes // 4


async def test_more_roots_than_a_function_takes_arguments_still_compile(
    backend: Backend, world: World
) -> None:
    """Past 100 roots (PostgreSQL's most function arguments; SQLite's json_array takes 127)
    the statement gathers arrays of 100 (resolvers/compiled.py ROOTS_PER_ARRAY): with the
    alias limit raised, 250 `node(id:)` aliases are one compiled read, answered in order."""
    from server.tokens import mint_token

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learners = [await world.learner(org, name=f"Learner {n:03}") for n in range(5)]
    ids = [gid("Learner", learners[n % 5].id) for n in range(249)] + [gid("Learner", 10**9)]
    limits = {"max_aliases": 1000, "max_tokens": 20_000, "max_cost": 10_000_000}
    answers = []
    for compiled in (True, False):
        services = Services.build(make_settings(backend.url, compiled_reads=compiled, **limits))
        app = create_app(services=services)
        token = mint_token(services.settings, email=admin.email, org=org.slug)
        definitions = ", ".join(f"$i{k}: ID!" for k in range(len(ids)))
        aliases = " ".join(
            f"a{k}: node(id: $i{k}) {{ ... on Learner {{ name }} }}" for k in range(len(ids))
        )
        body = {
            "query": f"query Many({definitions}) {{ {aliases} }}",
            "variables": {f"i{k}": i for k, i in enumerate(ids)},
        }
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://caseload.test"
            ) as client:
                response = await client.post(
                    "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
                )
            answers.append(response.content)
            if compiled:
                assert app.state.compiled_reads.answered == 1
                assert app.state.compiled_reads.failed == 0
        finally:
            await services.aclose()
    assert answers[0] == answers[1]
    data = json.loads(answers[0])["data"]
    assert [data[f"a{k}"] and data[f"a{k}"]["name"] for k in range(len(ids))] == [
        *(f"Learner {n % 5:03}" for n in range(249)),
        None,
    ]


async def test_the_fragments_kept_state_no_less_than_they_hold(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    """The fragment cache is bounded by the sizes its entries state: once their documents are
    gone, what clearing it frees (tracemalloc) must not exceed what they stated."""
    import gc
    import itertools
    import tracemalloc

    from server.tokens import mint_token

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    token = mint_token(compiled_app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}
    nested = [
        "records { id programme status }",
        "allocations { id expiresAt assessor { id name } }",
        "licences { id status course { id title } }",
        "evidence { id title status }",
        "assessors { id name initials }",
        "location { id name }",
    ]
    selections = [
        " ".join(["id name initials email createdAt", *combo])
        for n in range(1, len(nested) + 1)
        for combo in itertools.combinations(nested, n)
    ][:40]
    variables = {"id": gid("Learner", learner.id)}

    async def ask(selection: str) -> None:
        query = f"query($id: ID!) {{ node(id: $id) {{ ... on Learner {{ {selection} }} }} }}"
        answer = await apps[True].post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert "errors" not in answer.json(), answer.json()

    await ask(selections[0])  # the caller seen, imports and caches warmed
    reads.fragments.clear()
    gc.collect()
    tracemalloc.start()
    try:
        for selection in selections:
            await ask(selection)
        kept, stated = len(reads.fragments), reads.fragments.size
        reads.documents.kept.clear()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        reads.fragments.clear()
        gc.collect()
        freed = before - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept == len(selections)
    assert freed <= stated, (freed / kept, stated / kept)


DEEP = """query Deep($id: ID!) { node(id: $id) { ... on Learner { viewerCan { update }
  records { viewerCan { assign archive } assignments(includeEnded: true) { viewerCan { unassign }
    user { viewerCan { update deactivate } } } } } } }"""


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_statement_sqlite_cannot_parse_is_not_tried_again(
    apps: dict[bool, httpx.AsyncClient], world: World
) -> None:
    """A document whose statement is deeper than SQLite's parser holds is answered by the
    standard executor, and from then on without trying the statement again."""
    from server.tokens import mint_token

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    learner = await world.learner(org)
    await world.assign(await world.record(learner), assessor)
    compiled_app = apps[True]._transport.app  # type: ignore[attr-defined]
    reads = compiled_app.state.compiled_reads
    token = mint_token(compiled_app.state.services.settings, email=admin.email, org=org.slug)
    body = {"query": DEEP, "variables": {"id": gid("Learner", learner.id)}}
    headers = {"Authorization": f"Bearer {token}"}
    answers = []
    for _ in range(3):
        fast = await apps[True].post("/graphql", json=body, headers=headers)
        slow = await apps[False].post("/graphql", json=body, headers=headers)
        assert fast.content == slow.content
        answers.append(fast.json())
    assert answers[0]["data"]["node"]["records"][0]["assignments"][0]["viewerCan"] == {
        "unassign": True
    }
    assert (reads.failed, reads.answered) == (1, 0)
