"""``Store.claim_once`` on every engine: a key is claimed once, across every process on the database (of claims
racing on one key from two stores, as two replicas would, exactly one wins), held until its ``forget_after``, and
deleted by a later claim once past it. The Slack HTTP endpoint claims each signed request's signature with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from signoff.storage import Store
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from tests.rows import query

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
HOLD = timedelta(minutes=10)


async def test_a_key_is_claimed_once_while_its_claim_holds(store: Store) -> None:
    assert await store.claim_once("slack-signature:v0=aa", T0, T0 + HOLD)
    assert not await store.claim_once("slack-signature:v0=aa", T0 + timedelta(seconds=1), T0 + HOLD * 2)
    assert not await store.claim_once("slack-signature:v0=aa", T0 + HOLD - timedelta(microseconds=1), T0 + HOLD * 2)
    assert await store.claim_once("slack-signature:v0=bb", T0, T0 + HOLD)  # another key is its own


async def test_a_claim_past_its_forget_after_is_forgotten_and_the_key_may_be_claimed_again(store: Store) -> None:
    assert await store.claim_once("k", T0, T0 + HOLD)
    assert await store.claim_once("k", T0 + HOLD, T0 + HOLD * 2)  # at forget_after: forgotten
    assert not await store.claim_once("k", T0 + HOLD + timedelta(seconds=1), T0 + HOLD * 3)  # the new claim holds


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store, str | None]]:
    """Two stores on one database, as two replicas (or two processes on one SQLite file) hold them, and the
    database (None: memory, one process, so both are the same store)."""
    if request.param == "memory":
        shared = MemoryStore()
        yield shared, shared, None
        return
    database: str
    if request.param == "sqlite":
        database = str(tmp_path / "signoff.db")
        opened: list[Store] = [await SqliteStore.open(database), await SqliteStore.open(database)]
    else:
        from signoff.storage.approvals.postgres import PostgresStore  # psycopg: the optional `postgres` extra

        database = str(request.getfixturevalue("pg_url"))
        opened = [await PostgresStore.open(database), await PostgresStore.open(database)]
    try:
        yield opened[0], opened[1], database
    finally:
        for store in opened:
            await store.close()


async def test_replicas_racing_on_one_key_admit_exactly_one(replicas: tuple[Store, Store, str | None]) -> None:
    first, second, _ = replicas

    async def race(key: str) -> list[bool]:
        won: list[bool] = []
        start = anyio.Event()

        async def claim(store: Store) -> None:
            await start.wait()
            won.append(await store.claim_once(key, T0, T0 + HOLD))

        async with anyio.create_task_group() as group:
            for n in range(16):
                group.start_soon(claim, first if n % 2 else second)
            start.set()
        return won

    for key in ("slack-signature:v0=01", "slack-signature:v0=02", "slack-signature:v0=03"):
        won = await race(key)
        assert sorted(won) == [False] * 15 + [True], won


async def test_claims_past_their_forget_after_are_deleted_not_kept(replicas: tuple[Store, Store, str | None]) -> None:
    """The table does not grow with every request Slack ever sent: a claim deletes the claims already forgettable,
    whichever replica made them."""
    first, second, database = replicas
    for n in range(5):
        assert await first.claim_once(f"old-{n}", T0, T0 + HOLD)
    assert await second.claim_once("young", T0 + timedelta(minutes=5), T0 + HOLD * 2)
    assert await second.claim_once("new", T0 + HOLD, T0 + HOLD * 3)
    if database is not None:
        left = query(database, "SELECT key FROM once_claims ORDER BY key")
        assert left == [("new",), ("young",)]
    assert await first.claim_once("old-0", T0 + HOLD, T0 + HOLD * 3)  # forgotten on either store
    assert not await first.claim_once("young", T0 + HOLD, T0 + HOLD * 3)
