"""Connections, cursors, filters and bad query input."""

from __future__ import annotations

import pytest

from db.models import AssignmentRole, RecordStatus
from tests.factories import World
from tests.helpers import Api, gid

LEARNERS = """query($first: Int, $after: String, $filter: LearnerFilter) {
  learners(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id name } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""

RECORDS = """query($filter: RecordFilter) {
  apprenticeRecords(first: 500, filter: $filter) {
    totalCount edges { node { id status assignments { role user { id initials } } } }
  }
}"""


async def test_pages_walk_the_whole_list_in_name_order(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    names = [f"{first} {n}" for n, first in enumerate(["Zed", "amy", "Bob", "Amy", "Cat"] * 5)]
    for name in names:
        await world.learner(org, name=name)
    call = api.as_(admin, org)

    seen, after, pages = [], None, 0
    while True:
        page = (await call(LEARNERS, first=7, after=after)).ok()["learners"]
        assert page["totalCount"] == 25
        seen += [e["node"]["name"] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 4
    assert len(seen) == len(set(seen)) == 25
    default = (await call(LEARNERS)).ok()["learners"]
    assert [e["node"]["name"] for e in default["edges"]] == seen  # database collation order


async def test_cursor_is_stable_when_rows_are_added_before_it(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    for name in ["Bea", "Cal", "Dee", "Eve"]:
        await world.learner(org, name=name)
    call = api.as_(admin, org)
    first = (await call(LEARNERS, first=2)).ok()["learners"]
    await world.learner(org, name="Aaron")  # sorts before the cursor
    rest = (await call(LEARNERS, first=10, after=first["pageInfo"]["endCursor"])).ok()["learners"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["Dee", "Eve"]


@pytest.mark.parametrize("first", [-1, 501, 10_000])
async def test_first_out_of_range(api: Api, world: World, first: int) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    result = await api.as_(admin, org)(LEARNERS, first=first)
    assert result.data is None
    assert result.errors[0]["extensions"] == {"code": "INVALID", "field": "first"}


async def test_first_500_and_zero_are_allowed(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org)
    call = api.as_(admin, org)
    assert len((await call(LEARNERS, first=500)).ok()["learners"]["edges"]) == 1
    zero = (await call(LEARNERS, first=0)).ok()["learners"]
    assert zero["edges"] == [] and zero["totalCount"] == 1


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJhIl0", "WyJhIiwgImIiXQ"])
async def test_foreign_cursor_is_invalid(api: Api, world: World, cursor: str) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    result = await api.as_(admin, org)(LEARNERS, after=cursor)
    assert result.errors[0]["extensions"] == {"code": "INVALID", "field": "after"}


async def test_malformed_and_wrong_type_ids_find_nothing(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    call = api.as_(admin, org)
    for bad in [
        "",
        "%%%",
        "TGVhcm5lcjp4",
        gid("User", admin.id),
        gid("Learner", 10**9),
        gid("Nope", 1),
    ]:
        result = await call(
            "query($id: ID!) { learner(id: $id) { id } node(id: $id) { id } }", id=bad
        )
        assert result.data == {"learner": None, "node": None} or bad == gid("User", admin.id)
    ok = await call("query($id: ID!) { learner(id: $id) { id } }", id=gid("Learner", learner.id))
    assert ok.ok() == {"learner": {"id": gid("Learner", learner.id)}}


async def test_node_resolves_every_visible_type(api: Api, world: World) -> None:
    org = await world.organisation()
    leeds, care = await world.location(org), await world.department(org)
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, location=leeds, department=care)
    record = await world.record(learner)
    assignment = await world.assign(record, admin)
    evidence = await world.evidence(record)
    external = await world.external_assessor()
    allocation = await world.allocate(learner, external)
    call = api.as_(admin, org)
    for type_name, pk in [
        ("Organisation", org.id),
        ("Location", leeds.id),
        ("Department", care.id),
        ("User", admin.id),
        ("User", external.id),
        ("Learner", learner.id),
        ("ApprenticeRecord", record.id),
        ("Assignment", assignment.id),
        ("Evidence", evidence.id),
        ("Allocation", allocation.id),
    ]:
        result = await call(
            "query($id: ID!) { node(id: $id) { __typename id } }", id=gid(type_name, pk)
        )
        assert result.ok()["node"] == {"__typename": type_name, "id": gid(type_name, pk)}


async def test_learner_filters(api: Api, world: World) -> None:
    org = await world.organisation()
    leeds, york = await world.location(org), await world.location(org)
    care = await world.department(org)
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    ann = await world.learner(org, name="Ann Lee", location=leeds, department=care)
    bob = await world.learner(org, name="Bob Ray", location=york)
    cy = await world.learner(org, name="Cy Ng")
    await world.assign(await world.record(ann), assessor)
    await world.assign(await world.record(bob), coordinator, AssignmentRole.TRAINING_COORDINATOR)
    await world.assign(await world.record(cy), assessor, ended=True)
    call = api.as_(admin, org)

    async def names(**filter: object) -> list[str]:
        data = (await call(LEARNERS, filter=filter)).ok()["learners"]
        assert data["totalCount"] == len(data["edges"])
        return [e["node"]["name"] for e in data["edges"]]

    assert await names(search="ray") == ["Bob Ray"]
    assert await names(search="%") == []
    assert await names(locationId=gid("Location", leeds.id)) == ["Ann Lee"]
    assert await names(departmentId=gid("Department", care.id)) == ["Ann Lee"]
    assert await names(assignedTo=gid("User", assessor.id)) == ["Ann Lee"]
    assert await names(unassigned=True) == ["Bob Ray", "Cy Ng"]
    assert await names(unassigned=False) == ["Ann Lee"]
    assert await names(locationId=gid("Department", care.id)) == []
    bad = await call(LEARNERS, filter={"locationId": "%%"})
    assert bad.errors[0]["extensions"]["code"] == "INVALID"


async def test_record_filters_and_assignee_data(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR", name="Alex Stone")
    ann = await world.learner(org, name="Ann Lee")
    live = await world.record(ann, "Care Level 2")
    archived = await world.record(ann, "Care Level 3", status=RecordStatus.ARCHIVED)
    await world.assign(live, assessor)
    await world.assign(archived, assessor, ended=True)
    call = api.as_(admin, org)

    async def ids(**filter: object) -> list[str]:
        return [
            e["node"]["id"]
            for e in (await call(RECORDS, filter=filter)).ok()["apprenticeRecords"]["edges"]
        ]

    # the live records view: LIVE unless the filter asks for ARCHIVED
    assert await ids() == [gid("ApprenticeRecord", live.id)]
    assert await ids(status="LIVE") == [gid("ApprenticeRecord", live.id)]
    assert await ids(status="ARCHIVED") == [gid("ApprenticeRecord", archived.id)]
    assert await ids(unassigned=True) == []
    assert await ids(unassigned=True, status="ARCHIVED") == [gid("ApprenticeRecord", archived.id)]
    assert await ids(assigneeId=gid("User", assessor.id)) == [gid("ApprenticeRecord", live.id)]
    assert await ids(learnerId=gid("Learner", ann.id), search="level 3") == []
    assert await ids(learnerId=gid("Learner", ann.id), search="level 3", status="ARCHIVED") == [
        gid("ApprenticeRecord", archived.id)
    ]
    assert len(await ids(search="ann")) == 1
    rows = (await call(RECORDS)).ok()["apprenticeRecords"]["edges"]
    rows += (await call(RECORDS, filter={"status": "ARCHIVED"})).ok()["apprenticeRecords"]["edges"]
    by_id = {r["node"]["id"]: r["node"]["assignments"] for r in rows}
    assert by_id[gid("ApprenticeRecord", live.id)] == [
        {"role": "ASSESSOR", "user": {"id": gid("User", assessor.id), "initials": "AS"}}
    ]
    assert by_id[gid("ApprenticeRecord", archived.id)] == []
    # the status is an enum: a value it does not have is refused before anything runs
    bad = await call(RECORDS, filter={"status": "DELETED"})
    assert bad.errors[0]["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "ApprenticeRecordStatus" in bad.errors[0]["message"]


async def test_staff_drop_down_and_directory(api: Api, world: World) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN", name="Ada Admin")
    assessor = await world.staff(org, "ASSESSOR", name="Alex Stone")
    senior = await world.staff(org, "SENIOR_ASSESSOR", name="Sana Iqbal")
    await world.staff(other, "ASSESSOR", name="Other Org")
    external = await world.external_assessor(name="Jo Marsh")
    unallocated = await world.external_assessor(name="Kim Free")
    learner = await world.learner(org)
    await world.allocate(learner, external)
    query = """query($filter: StaffFilter) {
      staff(filter: $filter) { totalCount edges { node { name roles } } }
    }"""

    def names(result: object) -> list[str]:
        return [e["node"]["name"] for e in result.ok()["staff"]["edges"]]  # type: ignore[attr-defined]

    call = api.as_(admin, org)
    assert names(await call(query)) == ["Ada Admin", "Alex Stone", "Sana Iqbal"]
    assert names(await call(query, filter={"roles": ["ASSESSOR", "SENIOR_ASSESSOR"]})) == [
        "Alex Stone",
        "Sana Iqbal",
    ]
    assert names(await call(query, filter={"search": "stone"})) == ["Alex Stone"]
    assert names(await api.as_(assessor, org)(query)) == ["Alex Stone"]
    assert names(await api.as_(external)(query)) == []

    directory = "{ externalAssessors { totalCount edges { node { name isExternalAssessor } } } }"

    def people(result: object) -> list[str]:
        return [e["node"]["name"] for e in result.ok()["externalAssessors"]["edges"]]  # type: ignore[attr-defined]

    assert people(await api.as_(await world.support())(directory)) == ["Jo Marsh", "Kim Free"]
    assert people(await call(directory)) == ["Jo Marsh", "Kim Free"]
    assert people(await api.as_(senior, org)(directory)) == ["Jo Marsh"]
    assert people(await api.as_(assessor, org)(directory)) == []
    assert people(await api.as_(unallocated)(directory)) == []


def test_statuses_and_sources_are_enums_with_every_value_described() -> None:
    from graphql import GraphQLEnumType, GraphQLNonNull, get_named_type

    from schema import schema

    types = schema._schema.type_map
    for owner, field, enum_name, values in (
        ("ApprenticeRecord", "status", "ApprenticeRecordStatus", {"LIVE", "ARCHIVED"}),
        ("RecordFilter", "status", "ApprenticeRecordStatus", {"LIVE", "ARCHIVED"}),
        ("Licence", "source", "LicenceSource", {"MANUAL", "RULE"}),
        ("Licence", "status", "LicenceStatus", {"ACTIVE", "RECALLED", "COMPLETED", "EXPIRED"}),
    ):
        declared = types[owner].fields[field].type
        enum = get_named_type(declared)
        assert isinstance(enum, GraphQLEnumType) and enum.name == enum_name, (owner, field)
        assert isinstance(declared, GraphQLNonNull) == (owner != "RecordFilter"), (owner, field)
        assert set(enum.values) == values
        assert enum.description and all(v.description for v in enum.values.values()), enum_name
