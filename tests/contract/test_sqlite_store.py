"""What only the SQLite store promises: durability, migrations, an append-only log, cross-connection wake-ups."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from signoff.storage import Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.migrations import available, statements
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


async def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = await SqliteStore.open(path)
    request = await add(store)
    await store.close()
    reopened = await SqliteStore.open(path)
    try:
        assert await reopened.get(request.id) == request
    finally:
        await reopened.close()


async def test_migrations_run_from_empty_to_latest_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with anyio.create_task_group() as tg:  # several processes may start at once
        for _ in range(3):
            tg.start_soon(_open_and_close, path)
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        pragmas = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == [m.version for m in available()]
    assert pragmas == "wal"


async def _open_and_close(path: Path) -> None:
    store = await SqliteStore.open(path)
    await store.close()


def test_migration_splitter_keeps_trigger_bodies_whole() -> None:
    script = "-- c\nCREATE TABLE t (a);\nCREATE TRIGGER x BEFORE DELETE ON t\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n"
    assert len(statements(script)) == 2
    with pytest.raises(ValueError, match="unterminated"):
        statements("CREATE TABLE t (a)")


async def test_the_event_log_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = await SqliteStore.open(path)
    await add(store)
    await store.close()
    with sqlite3.connect(path) as db:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE events SET data = '{}' WHERE seq = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM events WHERE seq = 1")


async def test_a_waiter_sees_a_decision_made_through_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    waiter_store = await SqliteStore.open(path)
    decider_store = await SqliteStore.open(path)
    try:
        request = await add(waiter_store)
        token = await waiter_store.change_token()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(decider_store.update, request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
                await waiter_store.wait_for_change(token, timeout=30)
        seen = await waiter_store.get(request.id)
        assert seen is not None and seen.status is Status.APPROVED
    finally:
        await waiter_store.close()
        await decider_store.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the write-ahead log is watched with inotify")
async def test_another_connections_commit_wakes_a_waiter_without_waiting_for_the_poll(tmp_path: Path) -> None:
    """On Linux the write-ahead log is watched: the waiter below polls once an hour, and still sees the commit."""
    path = tmp_path / "x.db"
    waiter_store = await SqliteStore.open(path, poll_interval=3600)
    decider_store = await SqliteStore.open(path)
    try:
        request = await add(waiter_store)
        token = await waiter_store.change_token()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(decider_store.update, request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
                await waiter_store.wait_for_change(token, timeout=3600)
        seen = await waiter_store.get(request.id)
        assert seen is not None and seen.status is Status.APPROVED
    finally:
        await waiter_store.close()
        await decider_store.close()


async def test_many_waiters_share_one_poll_and_all_see_another_connections_commit(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    waiter_store = await SqliteStore.open(path, poll_interval=0.01)
    try:
        request = await add(waiter_store)
        returned: list[int] = []

        async def wait(i: int) -> None:
            await waiter_store.wait_for_change(await waiter_store.change_token(), timeout=60)
            returned.append(i)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(wait, i)
                await anyio.wait_all_tasks_blocked()
                polls_before = waiter_store._commits.polls
                # another process's commit, as far as the store can tell
                with closing(sqlite3.connect(path, isolation_level=None)) as other:
                    other.execute("UPDATE requests SET note = 'x' WHERE id = ?", (request.id,))
        assert sorted(returned) == list(range(40))
        # One poll (or a few, if the commit fell between polls) told all 40; a poll per waiter would be 40 or more.
        assert waiter_store._commits.polls - polls_before < 10
    finally:
        await waiter_store.close()


async def test_when_the_polling_waiter_leaves_another_takes_over(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    waiter_store = await SqliteStore.open(path, poll_interval=0.01)
    try:
        request = await add(waiter_store)
        short_done = anyio.Event()

        async def short_wait() -> None:  # starts first, so it polls; its wait ends with nothing changed
            await waiter_store.wait_for_change(await waiter_store.change_token(), timeout=0.05)
            short_done.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(short_wait)
                await anyio.wait_all_tasks_blocked()
                long_token = await waiter_store.change_token()
                long_returned = anyio.Event()

                async def long_wait() -> None:  # returns only if someone polls after the short waiter left
                    await waiter_store.wait_for_change(long_token, timeout=60)
                    long_returned.set()

                tg.start_soon(long_wait)
                await short_done.wait()
                with closing(sqlite3.connect(path, isolation_level=None)) as other:
                    other.execute("UPDATE requests SET note = 'y' WHERE id = ?", (request.id,))
                await long_returned.wait()  # fails after 30 s (fail_after) if nobody took the polling over
    finally:
        await waiter_store.close()


async def test_the_novelty_migration_forgets_actions_that_were_only_asked_for_never_approved(tmp_path: Path) -> None:
    """Before it, an action became known for an agent when a request was created; the migration keeps only the
    (agent, action) pairs with an approved request, so an existing database stops undoing a person's "no"."""
    path = tmp_path / "before.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        for migration in [m for m in available() if "novelty_from_approved" not in m.name]:
            for statement in statements(migration.sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.version, migration.name))
        rows = (("r1", "bot", "rejected"), ("r2", None, "approved"), ("r3", "x", "cancelled"))
        for request_id, agent, status in rows:
            db.execute(
                "INSERT INTO requests (id, action, summary, payload, payload_sha256, flags, agent_id, status, "
                "triggers, approvals_required, priority, created_at, expires_at) "
                "VALUES (?, 'data.export', 's', '{}', 'h', '[]', ?, ?, '[]', 1, 'normal', 't', 't')",
                (request_id, agent, status),
            )
            db.execute("INSERT INTO agent_actions VALUES (?, 'data.export')", (agent or "",))
    store = await SqliteStore.open(path)
    try:
        assert not (await store.action_history("data.export", "bot", [])).seen_from_agent
        assert not (await store.action_history("data.export", "x", [])).seen_from_agent
        assert (await store.action_history("data.export", None, [])).seen_from_agent
    finally:
        await store.close()
