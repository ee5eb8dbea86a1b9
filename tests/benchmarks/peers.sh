#!/usr/bin/env bash
# Caseload side by side with PostGraphile, plain Strawberry and hand-written SQL on 100,000
# learners: the peers harness (PEERS, default ../shared/peers next to this checkout) copied to
# a temporary directory, tests/benchmarks/peers.patch applied (licences copied into Caseload's
# tables, Caseload's q1/q2 documents, a two-worker Caseload, CPU and RSS summed over worker
# processes, Caseload's CPU profile by package), Caseload installed from a clone of this
# checkout's HEAD, every peer's answers checked against the harness's oracle, then the load
# run. Arguments go to the harness's
# bench.py; the default is the side-by-side run of the README. Needs what the harness's
# README says: root, PostgreSQL 15 cluster 15/main, Node.js >= 20, wrk (installed when missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
peers="${PEERS:-$repo/../shared/peers}"
[ -f "$peers/run.sh" ] || { echo "peers.sh: no harness at $peers (set PEERS=<the peers folder>)" >&2; exit 2; }

work="${PEERS_WORK:-$(mktemp -d /tmp/caseload-peers.XXXXXX)}"
if [ ! -d "$work/peers" ]; then
  cp -r "$peers" "$work/peers"
  chmod -R u+w "$work/peers"
  patch -s -p1 -d "$work/peers" < "$here/peers.patch"
  git clone -q "$repo" "$work/caseload-src"
fi
echo "peers.sh: harness in $work/peers, Caseload $(git -C "$work/caseload-src" rev-parse --short HEAD)"

cd "$work/peers"
CASELOAD_SRC="$work/caseload-src" ./run.sh check
if [ "$#" -eq 0 ]; then
  set -- --peers caseload,caseload-w2,raw-json,strawberry-dataloader,postgraphile-v4,postgraphile-v5 \
    --queries q1n,q2n,q1,q2 --conns 16,64 --duration 9 --warmup 2 --reps 2
fi
.venv/bin/python bench.py "$@"
echo "peers.sh: table in $work/peers/results/latest.md"
