"""DESIGN.md's tables as data, against the compiled policy, in both directions (no database).

tests/policies/design_table.csv is written from DESIGN.md ("Reads" and "Actions"). Each of
its rows must equal what `PolicyStore().grants` holds for that (role, resource, action), and
the policy may grant nothing the table does not list.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from policies.enforcer import PolicyStore
from policies.vocabulary import Action, Resource, Role, Scope

TABLE_PATH = Path(__file__).with_name("design_table.csv")


@dataclass(frozen=True)
class Cell:
    line: int
    role: str
    resource: str
    action: str
    scopes: frozenset[str]
    design: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.role, self.resource, self.action)

    def __str__(self) -> str:
        return f"{self.role}, {self.resource}, {self.action}"


def read_table(path: Path = TABLE_PATH) -> list[Cell]:
    lines = [
        (number, text)
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if text.strip() and not text.startswith("#")
    ]
    header, *rows = csv.reader(text for _, text in lines)
    assert header == ["role", "resource", "action", "scopes", "design"], header
    cells = []
    for (number, _), row in zip(lines[1:], rows, strict=True):
        role, resource, action, scopes, design = row
        words = frozenset(scopes.split())
        assert words and (words == {"none"} or "none" not in words), (number, row)
        cells.append(Cell(number, role, resource, action, words - {"none"}, design))
    return cells


CELLS = read_table()
STORE = PolicyStore()
VOCABULARY = {
    "role": {r.value for r in Role},
    "resource": {r.value for r in Resource},
    "action": {a.value for a in Action},
    "scope": {s.value for s in Scope},
}


def missing_words(cell: Cell) -> list[str]:
    """Words of the cell the vocabulary does not have, as `kind word`."""
    found = [
        f"{kind} {word}"
        for kind, word in (
            ("role", cell.role),
            ("resource", cell.resource),
            ("action", cell.action),
        )
        if word not in VOCABULARY[kind]
    ]
    return found + [f"scope {s}" for s in sorted(cell.scopes) if s not in VOCABULARY["scope"]]


def granted(cell: Cell, store: PolicyStore = STORE) -> set[str]:
    key = (Role(cell.role), Resource(cell.resource), Action(cell.action))
    return {s.value for s in store.grants.get(key, frozenset())}


def check(cell: Cell, store: PolicyStore = STORE) -> None:
    lacking = [w for w in missing_words(cell) if w.startswith("scope ")]
    assert not lacking, (
        f"line {cell.line}: DESIGN.md ({cell.design}) grants {cell} {sorted(cell.scopes)}, "
        f"but the vocabulary has no {', '.join(lacking)}: the policy cannot say it"
    )
    held = granted(cell, store)
    assert held == set(cell.scopes), (
        f"line {cell.line}: DESIGN.md ({cell.design}) says {cell} → "
        f"{sorted(cell.scopes) or 'none'}; policy.csv grants {sorted(held) or 'none'}"
    )


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_policy_grants_what_design_says(cell: Cell) -> None:
    check(cell)


def check_nothing_unlisted(store: PolicyStore = STORE) -> None:
    listed = {c.key for c in CELLS}
    extra = [
        f"{role.value}, {resource.value}, {action.value} → {sorted(s.value for s in scopes)}"
        for (role, resource, action), scopes in store.grants.items()
        if scopes and (role.value, resource.value, action.value) not in listed
    ]
    assert not extra, "policy.csv grants cells DESIGN.md's tables do not have:\n" + "\n".join(extra)


def test_policy_grants_nothing_the_table_does_not_list() -> None:
    check_nothing_unlisted()


def test_the_table_is_complete_and_well_formed() -> None:
    keys = [c.key for c in CELLS]
    assert len(keys) == len(set(keys)), "a cell is written twice"
    for cell in CELLS:
        assert not [w for w in missing_words(cell) if not w.startswith("scope ")], (
            f"line {cell.line}: a cell must use the vocabulary's words: {cell}"
        )
    # Every (resource, action) the table names is written for every role.
    pairs = {(c.resource, c.action) for c in CELLS}
    for resource, action in pairs:
        roles = {c.role for c in CELLS if (c.resource, c.action) == (resource, action)}
        assert roles == VOCABULARY["role"], (resource, action, VOCABULARY["role"] - roles)
    # Every resource of the vocabulary is read by somebody's row, and every action appears.
    assert {r for r, a in pairs if a == "read"} >= VOCABULARY["resource"]
    assert {a for _, a in pairs} >= VOCABULARY["action"]


def test_super_admin_holds_everything_admin_holds() -> None:
    by_key = {c.key: c for c in CELLS}
    for cell in CELLS:
        if cell.role == Role.ADMIN.value:
            mine = by_key[(Role.SUPER_ADMIN.value, cell.resource, cell.action)]
            assert mine.scopes >= cell.scopes, cell


def widened_store(tmp_path: Path, row: str, wider: str) -> PolicyStore:
    """The real policy with one row of policy.csv replaced."""
    from policies.enforcer import POLICY_PATH, load_enforcer

    text = POLICY_PATH.read_text()
    assert row in text.splitlines(), f"policy.csv has no row {row!r}"
    widened = tmp_path / "policy.csv"
    widened.write_text(text.replace(row, wider))
    return PolicyStore(load_enforcer(policy=widened))


def test_a_widened_row_fails_the_comparison(tmp_path: Path) -> None:
    """The comparison the table's tests run can fail: a widened row and an added one are caught."""
    store = widened_store(
        tmp_path,
        "p, ASSESSOR, assignment, read, assigned",
        "p, ASSESSOR, assignment, read, organisation",
    )
    failures = []
    for cell in CELLS:
        try:
            check(cell, store)
        except AssertionError as refused:
            failures.append(str(refused))
    assert len(failures) == 1 and "ASSESSOR, assignment, read" in failures[0], failures
    check_nothing_unlisted(store)  # a widened scope is not a new cell

    added = widened_store(
        tmp_path,
        "p, ASSESSOR, assignment, read, assigned",
        "p, ASSESSOR, assignment, read, assigned\np, ASSESSOR, api_key, read, organisation",
    )
    with pytest.raises(AssertionError, match="ASSESSOR, api_key, read"):
        for cell in CELLS:
            check(cell, added)
        check_nothing_unlisted(added)
