"""The authorisation proof: generated worlds, DESIGN.md's reference model, and the checks."""

from __future__ import annotations

from collections import Counter

# What this run checked, printed at the end of the run (tests/conftest.py).
TALLY: Counter[str] = Counter()
# Lines worth reading at the end of the run (e.g. which policy mutants were run).
NOTES: list[str] = []

# `make pytest` runs the proof on two processes (pytest-xdist, `--dist loadgroup`), one
# xdist_group each, of about equal length: SQLite's visibility proof (the longest: 4 to 5
# minutes in one process) in two parts of about equal work, one beside PostgreSQL's
# visibility proof, the other beside the policy mutants (their baseline world and its checks
# once, then the mutants); those two take about 1.5 minutes each.
PROCESS = {
    "visibility-sqlite-1": "proof-1",
    "visibility-postgresql-1": "proof-1",
    "visibility-sqlite-2": "proof-2",
    "policy-mutants": "proof-2",
}
