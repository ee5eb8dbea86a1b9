"""The change policy's check (schema/changes.py): a breaking change passes only where the
released SDL deprecated what goes."""

from __future__ import annotations

from schema.changes import refused_changes

RELEASED = """
type Query {
  learners(first: Int, search: String @deprecated(reason: "Use filter.")): [Learner!]!
  old: Int @deprecated(reason: "Use new.")
  kept: Int
}
type Learner { id: ID! status: Status! name: String! }
enum Status { LIVE ARCHIVED GONE @deprecated(reason: "Never set.") }
input Filter { search: String assignedTo: ID @deprecated(reason: "Use assigneeId.") }
type Mutation { go(input: Filter): Int }
"""


def changed(old: str, new: str) -> str:
    assert old in RELEASED
    return RELEASED.replace(old, new)


def test_removing_what_was_deprecated_passes() -> None:
    for old, new in (
        ('old: Int @deprecated(reason: "Use new.")', "new: Int"),
        (', search: String @deprecated(reason: "Use filter.")', ""),
        (' GONE @deprecated(reason: "Never set.")', ""),
        (' assignedTo: ID @deprecated(reason: "Use assigneeId.")', " assigneeId: ID"),
    ):
        assert refused_changes(RELEASED, changed(old, new)) == [], (old, new)
    assert refused_changes(RELEASED, RELEASED) == []


def test_breaking_what_was_not_deprecated_fails() -> None:
    for old, new, kind in (
        ("  kept: Int\n", "", "FIELD_REMOVED"),
        ("learners(first: Int, ", "learners(", "ARG_REMOVED"),
        ("LIVE ARCHIVED", "LIVE", "VALUE_REMOVED_FROM_ENUM"),
        ("name: String!", "name: Int!", "FIELD_CHANGED_KIND"),
        ("status: Status!", "status: String!", "FIELD_CHANGED_KIND"),
        ("input Filter { search: String", "input Filter { search: String!", "FIELD_CHANGED_KIND"),
    ):
        refused = refused_changes(RELEASED, changed(old, new))
        assert [r.kind for r in refused] == [kind], (old, new, refused)


def test_the_schema_keeps_the_released_contract() -> None:
    """CI's gate: schema/schema.graphql against schema/released.graphql, the SDL as released."""
    from schema.changes import CURRENT, RELEASED

    assert RELEASED.exists(), "schema/released.graphql is the contract as released"
    refused = refused_changes(RELEASED.read_text(), CURRENT.read_text())
    assert not refused, (
        "breaking changes the released schema did not deprecate first (deprecate, release, "
        "then remove; see CHANGELOG.md):\n"
        + "\n".join(f"{r.kind}: {r.description}" for r in refused)
    )
