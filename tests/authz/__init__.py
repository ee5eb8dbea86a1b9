"""The authorisation proof: generated worlds, DESIGN.md's reference model, and the checks."""

from __future__ import annotations

from collections import Counter

# What this run checked, printed at the end of the run (tests/conftest.py).
TALLY: Counter[str] = Counter()
# Lines worth reading at the end of the run (e.g. which policy mutants were run).
NOTES: list[str] = []
