# Two commands on a fresh machine (Python 3.11+ and make):
#   make serve   set up, migrate a local SQLite file, seed the demo, serve GraphiQL on :8000
#   make test    set up with dev extras, then lint, types and the whole suite (SQLite + PostgreSQL,
#                and GraphiQL in headless Chromium, installed with apt-get when missing)

PYTHON ?= python3
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint types pytest browser bench bench-neighbours peers mutants explore schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	CASELOAD_DEBUG=true $(BIN)/caseload serve --demo --port $(PORT)

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy .

# The authorisation proof first, stopping at its first failure, so that a widened policy row
# fails the run within minutes (on $(WORKERS) processes, pytest-xdist: two xdist_groups of
# about equal length, each half of SQLite's visibility proof beside PostgreSQL's or beside
# the policy mutants, tests/authz/__init__.py); then the rest of the suite on $(WORKERS)
# processes; then, one at a time, the tests that bound wall-clock time (marked `alone`).
# Both later steps run even when the first of them fails; the run fails if either did. The
# rest runs on one process more than the machine's cores: a third of its time is spent
# waiting (servers starting, receivers, timeouts), and a third process fills it (329 s
# instead of 375 s on 2 cores).
PROOF   := tests/api/test_visibility.py tests/api/test_policy_mutants.py
WORKERS ?= 2
REST_WORKERS ?= 3
REST    := $(PROOF:%=--ignore=%)

pytest: $(STAMP) browser
	$(BIN)/pytest -x -n $(WORKERS) --dist loadgroup $(PROOF)
	@status=0; \
	$(BIN)/pytest -n $(REST_WORKERS) --dist load -m "not alone" $(REST) || status=$$?; \
	$(BIN)/pytest -m alone $(REST) || status=$$?; \
	exit $$status

# Debian's chromium for tests/browser (never a browser download of a tool's own). Where it
# cannot be installed (not root, no apt-get, no registry) the browser test skips and says so.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium with apt-get for the GraphiQL browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends chromium fonts-liberation; } >/dev/null 2>&1 \
	      || echo "could not install chromium: the GraphiQL browser test will be skipped"; \
	  else \
	    echo "chromium is missing and cannot be installed here (needs root and apt-get):" \
	      "the GraphiQL browser test will be skipped"; \
	  fi; }

bench: $(STAMP)
	$(BIN)/pytest tests/benchmarks -p no:cacheprovider -o addopts="" -s

# One server, one well-behaved assessor, four noisy neighbours, on PostgreSQL with 100,000
# learners (seeded once); PASS/FAIL per target. Settings: tests/benchmarks/neighbours/__init__.py.
bench-neighbours: $(STAMP)
	$(BIN)/python -m tests.benchmarks.neighbours

# Side by side with PostGraphile, plain Strawberry and hand-written SQL on 100,000 learners
# (PEERS=<the peers harness>, default ../shared/peers; needs root, PostgreSQL 15, Node.js, wrk).
peers:
	tests/benchmarks/peers.sh

# Every policy mutant (CI runs a rotating dozen), and a check that the listed equivalents survive.
mutants: $(STAMP)
	CASELOAD_MUTANTS=all $(BIN)/pytest tests/api/test_policy_mutants.py -p no:cacheprovider

# Other generated worlds and operations than CI's: SEED=N (default: random), PAIRS=N.
explore: $(STAMP)
	CASELOAD_HYPOTHESIS_SEED=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	CASELOAD_PAIRS=$${PAIRS:-600} \
	$(BIN)/pytest tests/api/test_visibility.py tests/api/test_fuzz.py -p no:cacheprovider

schema: $(STAMP)
	$(BIN)/caseload schema export > schema/schema.graphql
	$(BIN)/caseload schema repeats --readme README.md

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
