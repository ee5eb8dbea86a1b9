"""schema/schema.graphql is the committed contract; drift fails here."""

from __future__ import annotations

from pathlib import Path

from schema import schema

SNAPSHOT = Path(__file__).resolve().parents[1] / "schema" / "schema.graphql"


def test_committed_sdl_matches_the_schema() -> None:
    current = schema.as_str() + "\n"
    assert SNAPSHOT.exists(), "run `make schema` to write schema/schema.graphql"
    assert SNAPSHOT.read_text() == current, (
        "The schema changed: review it, then run `make schema` and commit schema/schema.graphql."
    )
