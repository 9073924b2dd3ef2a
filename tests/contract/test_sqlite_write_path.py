"""The SQLite write path: transaction bodies run on the writer's thread, and the waiting ones commit together.

What must hold: the bodies waiting at one moment share one transaction (one fsync), yet a body that fails
undoes only its own writes; when the shared transaction itself is lost, every caller in it is told; a
cancelled caller's write still has a known outcome; ``transaction()`` (the aiosqlite path the model store
uses) and ``write()`` take turns; and the hash-chained log stays linked under concurrent writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.storage.sqlite_db import SqliteDatabase
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


async def open_with_table(path: Path) -> SqliteDatabase:
    db = await SqliteDatabase.open(path)
    await db.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    return db


class HeldLock:
    """Holds ``db``'s write lock (through ``transaction()``) from ``hold`` until ``release``: writes queue behind it."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._released = anyio.Event()

    async def hold(self) -> None:
        async with self._db.transaction():
            await self._released.wait()

    def release(self) -> None:
        self._released.set()


def keys(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT k FROM t"))


async def test_waiting_writes_share_one_transaction_and_a_failing_one_rolls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    db = await open_with_table(path)
    outside = sqlite3.connect(path, check_same_thread=False)  # sees only what is committed
    seen_committed: dict[str, int] = {}
    outcomes: dict[str, str] = {}

    def body(key: str) -> Callable[[sqlite3.Connection], None]:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t (k) VALUES (?)", (key,))
            seen_committed[key] = outside.execute("SELECT count(*) FROM t").fetchone()[0]
            if key == "bad":
                raise ValueError("refused")

        return run

    async def write(key: str) -> None:
        try:
            await db.write(body(key))
            outcomes[key] = "ok"
        except ValueError as exc:
            outcomes[key] = str(exc)

    try:
        lock = HeldLock(db)

        async with anyio.create_task_group() as tg:
            tg.start_soon(lock.hold)
            await wait_all_tasks_blocked()
            for key in ("a", "b", "bad", "c"):
                tg.start_soon(write, key)
            await wait_all_tasks_blocked()  # all four are queued behind the held lock
            lock.release()
    finally:
        outside.close()
        await db.close()
    assert outcomes == {"a": "ok", "b": "ok", "bad": "refused", "c": "ok"}
    assert seen_committed == {"a": 0, "b": 0, "bad": 0, "c": 0}, "they did not share one transaction"
    assert keys(path) == ["a", "b", "c"]


async def test_when_the_shared_transaction_is_lost_every_caller_in_it_is_told(tmp_path: Path) -> None:
    path = tmp_path / "lost.db"
    db = await open_with_table(path)
    errors: dict[str, str] = {}

    def insert(key: str) -> Callable[[sqlite3.Connection], object]:
        return lambda c: c.execute("INSERT INTO t (k) VALUES (?)", (key,))

    def lose_everything(c: sqlite3.Connection) -> None:
        c.execute("ROLLBACK")  # what SQLite itself does on some I/O errors
        raise sqlite3.OperationalError("disk I/O error")

    async def write(key: str, body: Callable[[sqlite3.Connection], object]) -> None:
        try:
            await db.write(body)
        except sqlite3.OperationalError as exc:
            errors[key] = str(exc)

    try:
        lock = HeldLock(db)

        async with anyio.create_task_group() as tg:
            tg.start_soon(lock.hold)
            await wait_all_tasks_blocked()
            tg.start_soon(write, "a", insert("a"))
            tg.start_soon(write, "lost", lose_everything)
            tg.start_soon(write, "c", insert("c"))
            await wait_all_tasks_blocked()
            lock.release()
        await db.write(insert("after"))  # the connection is usable again
    finally:
        await db.close()
    assert errors == {"a": "disk I/O error", "lost": "disk I/O error", "c": "disk I/O error"}
    assert keys(path) == ["after"]


async def test_a_cancelled_caller_still_commits_and_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = await open_with_table(path)
    finished = False
    try:
        lock = HeldLock(db)

        async def write_then_note() -> None:
            nonlocal finished
            try:
                await db.write(lambda c: c.execute("INSERT INTO t (k) VALUES ('kept')"))
            finally:
                finished = True

        async def cancel_the_caller_then_release(scope: anyio.CancelScope) -> None:
            await wait_all_tasks_blocked()  # the write waits for the lock
            scope.cancel()
            await wait_all_tasks_blocked()  # had the caller returned on cancellation, it would have by now
            returned_early = finished
            lock.release()  # before asserting: a failure must not leave the lock held (the test would hang)
            assert not returned_early, "the cancelled caller returned before its write's outcome was known"

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lock.hold)
                await wait_all_tasks_blocked()
                with anyio.CancelScope() as scope:
                    tg.start_soon(cancel_the_caller_then_release, scope)
                    await write_then_note()
        assert finished
    finally:
        await db.close()
    assert keys(path) == ["kept"]


async def test_transaction_and_write_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    db = await open_with_table(path)

    async def through_transaction(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t (k) VALUES (?)", (f"tx{i:02}",))

    async def through_write(i: int) -> None:
        await db.write(lambda c: c.execute("INSERT INTO t (k) VALUES (?)", (f"w{i:02}",)))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(through_transaction, i)
                    tg.start_soon(through_write, i)
    finally:
        await db.close()
    assert keys(path) == sorted([f"tx{i:02}" for i in range(20)] + [f"w{i:02}" for i in range(20)])


@pytest.mark.parametrize("stores", [1, 2])
async def test_the_chain_stays_linked_under_concurrent_writers(tmp_path: Path, stores: int) -> None:
    """Many writers at once, in one store (grouped commits) or two (two connections racing for the lock)."""
    path = tmp_path / "chain.db"
    opened = [await SqliteStore.open(path) for _ in range(stores)]
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    store = opened[i % stores]

                    async def create_and_decide(store: SqliteStore = store, i: int = i) -> None:
                        request = await add(store, summary=f"request {i}")
                        if i % 2:
                            await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))

                    tg.start_soon(create_and_decide)
        report = await verify_store(opened[0])
        assert report.ok, report
        assert report.events_checked == 40 * 2 + 20 * 2
    finally:
        for store in opened:
            await store.close()


async def test_savepoint_journals_stay_in_memory(tmp_path: Path) -> None:
    """Each body runs in a savepoint; with the default temp_store its sub-journal is a temporary file, which made
    every INSERT of a request 1.5-4x slower (bench/README.md, finding F6)."""
    db = await SqliteDatabase.open(tmp_path / "m.db")
    try:
        assert await db.write(lambda c: c.execute("PRAGMA temp_store").fetchone()[0]) == 2  # MEMORY
    finally:
        await db.close()
