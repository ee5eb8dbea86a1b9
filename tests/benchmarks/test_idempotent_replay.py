"""Benchmark: a retried mutation answered from its Idempotency-Key, in process.

Run with `make bench`. Prints the p50 latency of the first request (performed: the claim, the
change, its audit event and the kept answer, one transaction) and of its retries (the kept
answer, byte for byte), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import time

from tests.factories import World
from tests.helpers import Api

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
CREATE_LEARNER = """mutation($name: String!) {
  createLearner(input: {name: $name}) { __typename ... on LearnerCreated { learner { id name } } }
}"""


async def test_idempotent_replay_latency(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    auth = {"Authorization": f"Bearer {api.token(admin, org)}"}

    async def post(key: str, name: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        response = await api.client.post(
            "/graphql",
            json={"query": CREATE_LEARNER, "variables": {"name": name}},
            headers={**auth, "Idempotency-Key": key},
        )
        return (time.perf_counter() - t0) * 1000, response.content

    await post("warm", "Warm")
    performed, replayed = [], []
    for n in range(ROUNDS):
        took, first = await post(f"k-{n}", f"Learner {n}")
        performed.append(took)
        took, again = await post(f"k-{n}", f"Learner {n}")
        assert again == first
        replayed.append(took)
    print(
        f"\n[{api.settings.database_url.split(':')[0]}] performed p50="
        f"{statistics.median(performed):.1f}ms replayed p50={statistics.median(replayed):.1f}ms"
    )
