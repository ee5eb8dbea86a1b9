"""Deny by default: every field that runs code is guarded or explicitly public."""

from __future__ import annotations

from graphql import GraphQLObjectType
from strawberry.types.field import StrawberryField

from schema import schema
from schema.permissions import Guard, Public

# Fields that run code but are projections of an already-guarded parent.
PROJECTIONS = {
    ("LearnerConnection", "totalCount"),
    ("ApprenticeRecordConnection", "totalCount"),
    ("UserConnection", "totalCount"),
    ("CourseConnection", "totalCount"),
    ("LicenceConnection", "totalCount"),
    ("AuditEventConnection", "totalCount"),
    ("EvidenceConnection", "totalCount"),
    ("OrganisationConnection", "totalCount"),
    ("WebhookDeliveryConnection", "totalCount"),
    ("Licence", "status"),  # the row's status as of the request's time
    ("Change", "cursor"),  # the change's own position, from its row
}
# Root fields any signed-in caller may use; what they return is scoped inside.
PUBLIC = {
    ("Query", "viewer"),
    ("Query", "node"),
    ("Viewer", "memberships"),  # the caller's own
    ("Viewer", "can"),
    # The change feed: each change shown only where its subject is visible to the reader (its
    # table's scope in SQL); its actor through the staff scope, its key through the key scope,
    # its subject as that subject's own read.
    ("Query", "changes"),
    ("Subscription", "changes"),  # the same rule, per event, when it is delivered
    ("Change", "actor"),
    ("Change", "apiKey"),
    ("Change", "subject"),
    # What the caller may do with an object they were shown: decided by the same scopes.
    *(
        (t, "viewerCan")
        for t in (
            "Learner",
            "ApprenticeRecord",
            "Evidence",
            "Licence",
            "Course",
            "ApiKey",
            "AutoAllocationRule",
            "User",
            "Allocation",
            "Assignment",
        )
    ),
}


def _fields() -> list[tuple[str, str, StrawberryField]]:
    found = []
    for type_name, graphql_type in schema._schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = field.extensions.get("strawberry-definition")
            assert isinstance(definition, StrawberryField), (type_name, field_name)
            found.append((type_name, field_name, definition))
    return found


def classify(type_name: str, field_name: str, field: StrawberryField) -> str:
    guards = [e for e in field.extensions if isinstance(e, Guard)]
    public = [e for e in field.extensions if isinstance(e, Public)]
    if guards:
        return "guarded"
    if public:
        return "public" if (type_name, field_name) in PUBLIC else "unlisted public"
    if type_name in ("Query", "Mutation"):
        return "unguarded root"
    if field.base_resolver is not None:
        return "projection" if (type_name, field_name) in PROJECTIONS else "unguarded resolver"
    return "attribute"


def test_every_field_is_guarded_or_listed() -> None:
    bad = [
        f"{t}.{f}: {kind}"
        for t, f, field in _fields()
        if (kind := classify(t, f, field))
        in ("unlisted public", "unguarded root", "unguarded resolver")
    ]
    assert not bad, "\n".join(bad)


def test_every_mutation_is_guarded_by_a_create_or_change_action() -> None:
    for t, f, field in _fields():
        if t == "Mutation":
            (guard,) = [e for e in field.extensions if isinstance(e, Guard)]
            assert guard.action.value != "read", f


def test_the_walk_sees_the_whole_schema() -> None:
    names = {(t, f) for t, f, _ in _fields()}
    assert ("Query", "learners") in names and ("Learner", "records") in names
    assert ("Mutation", "createLearner") in names
    assert classify("Query", "x", StrawberryField(python_name="x")) == "unguarded root"
