"""Noisy neighbours: one well-behaved caller's latency while four others misbehave.

`make bench-neighbours` (or `.venv/bin/python -m tests.benchmarks.neighbours`). One
`caseload serve` process with default settings on a PostgreSQL database holding the bench
preset (100,000 learners), made and seeded on first use. An assessor with the fullest
caseload reads a page of 50 learners, one request at a time with 50 ms between them: first
alone, then while four neighbours run at once —
  1. an admin sending thirty-alias counts (searches that match nothing, a 1,000-character
     search, unassigned learners and records, licence-eligible learners), three at a time;
  2. an API key sending forty pages at once, then pausing for a second;
  3. a senior assessor sending documents never seen before (twenty nested pages each);
  4. callers without credentials sending one-megabyte bodies.
Each attack document is also sent alone, once, and timed with what PostgreSQL shows of its
statements. Prints a table and PASS/FAIL for the targets, writes the results as JSON, and
exits 1 when a target is missed.

Environment:
  CASELOAD_BENCH_DATABASE_URL   the benchmark's own database (default
                                postgresql://postgres@127.0.0.1:5432/caseload_bench_neighbours);
                                created when missing, seeded once; statements still running
                                in it after a phase are cancelled
  CASELOAD_BENCH_PORT           the server's port (default: one the system offers)
  CASELOAD_BENCH_OUT            the JSON file (default var/bench-neighbours/<time>.json;
                                the server's log beside it)
  CASELOAD_BENCH_QUIET_SECONDS  the victim alone (default 20)
  CASELOAD_BENCH_ATTACK_SECONDS the victim with its neighbours (default 30)
"""
