"""Idempotency keys: a mutation request performed at most once per principal and key.

The claim is the first statement of the mutation's own transaction: a row per (principal,
key), inserted with ON CONFLICT DO NOTHING. A second request with the same key waits on the
unique index (PostgreSQL) or the write lock (SQLite) until the first commits or rolls back;
then it finds the first's answer, kept in the same transaction as its effects, or — if the
first rolled back — claims the key itself. No answer is ever kept without its effects, or
effects without their answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from db.models import IdempotencyKey
from db.queries import insert_skipping_conflicts
from db.session import Database

# Expired keys deleted by each claim, at most: the purge costs one index probe when there
# are none, and never blocks on another transaction's purge (SKIP LOCKED).
PURGE_BATCH = 100


@dataclass(frozen=True)
class Claimed:
    """This request performs the operation; keep its answer under `id`."""

    id: int


@dataclass(frozen=True)
class Kept:
    """An earlier request with this key and body was performed; this was its answer."""

    answer: str


@dataclass(frozen=True)
class Reused:
    """The key was used for another body."""


async def claim(
    db: Database,
    *,
    principal: str,
    key: str,
    fingerprint: str,
    now: datetime,
    ttl: timedelta,
) -> Claimed | Kept | Reused:
    insert = insert_skipping_conflicts(
        db.dialect, IdempotencyKey, index_elements=["principal", "key"]
    ).returning(IdempotencyKey.id)
    row = {
        "principal": principal,
        "key": key,
        "fingerprint": fingerprint,
        "created_at": now,
        "expires_at": now + ttl,
    }
    for _ in range(2):
        claimed = (await db.execute(insert.values(row))).scalar_one_or_none()
        if claimed is not None:
            await purge(db, now)
            return Claimed(claimed)
        found = (
            await db.execute(
                select(IdempotencyKey).where(
                    IdempotencyKey.principal == principal, IdempotencyKey.key == key
                )
            )
        ).scalar_one_or_none()
        if found is None:
            continue  # purged by another request in the meantime
        if found.expires_at <= now:
            await db.execute(
                delete(IdempotencyKey)
                .where(IdempotencyKey.id == found.id, IdempotencyKey.expires_at <= now)
                .execution_options(synchronize_session=False)
            )
            continue
        if found.fingerprint != fingerprint:
            return Reused()
        if found.answer is None:
            raise RuntimeError("an idempotency key was committed without its answer")
        return Kept(found.answer)
    raise RuntimeError("an idempotency key could be neither claimed nor found")


async def keep(db: Database, claimed: Claimed, answer: str) -> None:
    """Keep the answer, in the transaction that claimed the key and made the changes."""
    await db.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed.id)
        .values(answer=answer)
        .execution_options(synchronize_session=False)
    )


async def purge(db: Database, now: datetime) -> None:
    expired = (
        select(IdempotencyKey.id)
        .where(IdempotencyKey.expires_at < now)
        .order_by(IdempotencyKey.expires_at)
        .limit(PURGE_BATCH)
    )
    if db.dialect == "postgresql":
        expired = expired.with_for_update(skip_locked=True)
    await db.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.id.in_(expired.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
