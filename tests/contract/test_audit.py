"""The audit check: the chain, the rows agents act on, anchors, and tampering by someone with the file."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from signoff.storage import Conflict, EventKind, NewEvent, Status, Store, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import GENESIS_HASH, EncodedEvent, link, verify_store
from signoff.storage.canonical import canonical_json
from signoff.storage.codec import event_row
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Path]:
    """A database with some history: an approved, a rejected and a pending request."""
    path = tmp_path / "audit.db"
    store = await SqliteStore.open(path)
    try:
        approved, rejected = await add(store), await add(store)
        await add(store)
        await store.update(approved.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
        await store.update(rejected.id, lifecycle.vote("bob", Verdict.REJECT, "no", T0))
    finally:
        await store.close()
    yield path


async def verified(path: Path, anchors: dict[int, str] | None = None) -> object:
    store = await SqliteStore.open(path)
    try:
        return await verify_store(store, anchors)
    finally:
        await store.close()


def tamper(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in statements:
            conn.execute(statement)


async def test_an_untouched_database_verifies(db: Path) -> None:
    report = await verified(db)
    assert report.ok and report.events_checked == 10 and report.head_seq == 10  # type: ignore[attr-defined]


def test_decided_requests_votes_and_events_refuse_changes(db: Path) -> None:
    refused = [
        "UPDATE requests SET status = 'approved' WHERE status = 'rejected'",
        "UPDATE requests SET payload = '{}'",
        "UPDATE requests SET policy_version = 'forged'",
        "DELETE FROM requests",
        "UPDATE votes SET verdict = 'approve'",
        "DELETE FROM votes",
        "INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) "
        "VALUES (0, 'voted', 'x', 'x', '{}', 'x', 'x')",
    ]
    for statement in refused:
        with pytest.raises(sqlite3.DatabaseError, match=r"cannot|start at 1"):
            tamper(db, statement)


@pytest.mark.parametrize(
    ("statements", "where", "reason"),
    [
        (
            ["DROP TRIGGER events_append_only_update", "UPDATE events SET data = '{not json' WHERE seq = 7"],
            "event 7",
            "cannot be read",
        ),
        (
            ["DROP TRIGGER events_append_only_update", "UPDATE events SET at = 'yesterday' WHERE seq = 4"],
            "event 4",
            "cannot be read",
        ),
        (
            [  # two events swapped: each keeps its own hash, but neither follows the one before it any more
                "DROP TRIGGER events_append_only_update",
                "UPDATE events SET seq = -5 WHERE seq = 5",
                "UPDATE events SET seq = 5 WHERE seq = 6",
                "UPDATE events SET seq = 6 WHERE seq = -5",
            ],
            "event 5",
            "its prev_hash does not match the previous event",
        ),
        (
            [
                "DROP TRIGGER events_seq_positive",
                "INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) "
                "SELECT 0, 'voted', request_id, at, '{}', prev_hash, 'forged' FROM events WHERE seq = 1",
            ],
            "event 0",
            "expected event 1",
        ),
        (
            [
                "DROP TRIGGER requests_decisions_final",
                "UPDATE requests SET status = 'approved' WHERE status = 'rejected'",
            ],
            "request",
            "row says approved but its events say rejected",
        ),
        (
            ["DROP TRIGGER requests_policy_version_fixed", "UPDATE requests SET policy_version = 'forged'"],
            "request",
            "row says forged but its events say None",
        ),
        (
            ["DROP TRIGGER votes_append_only_delete", "DELETE FROM votes WHERE reviewer = 'alice'"],
            "request",
            "votes differ",
        ),
        (
            ["DROP TRIGGER requests_never_deleted", "DELETE FROM requests WHERE status = 'pending'"],
            "request",
            "no row",
        ),
    ],
)
async def test_tampering_is_named(db: Path, statements: list[str], where: str, reason: str) -> None:
    tamper(db, *statements)
    report = await verified(db)
    assert not report.ok  # type: ignore[attr-defined]
    if where.startswith("event"):
        assert report.first_bad_seq == int(where.split()[1])  # type: ignore[attr-defined]
    else:
        assert report.request_id is not None  # type: ignore[attr-defined]
    assert reason in report.reason  # type: ignore[attr-defined]


def rewrite_from(path: Path, seq: int, change: dict[str, object]) -> None:
    """What a careful attacker does: change an event, then recompute every hash from there on."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER events_append_only_update")
        rows = conn.execute("SELECT seq, kind, request_id, at, data, prev_hash FROM events ORDER BY seq").fetchall()
        prev = GENESIS_HASH
        for number, kind, request_id, at, data, _ in rows:
            body = json.loads(data)
            if number == seq:
                body.update(change)
                data = canonical_json(body)
            digest = hashlib.sha256(
                f"{prev}{canonical_json([number, kind, request_id, at, body])}".encode()
            ).hexdigest()
            conn.execute(
                "UPDATE events SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?", (data, prev, digest, number)
            )
            prev = digest


async def test_a_recomputed_chain_passes_alone_but_not_against_an_anchor(db: Path) -> None:
    before = await verified(db)
    anchor = {before.head_seq: before.head_hash}  # type: ignore[attr-defined]
    rewrite_from(db, 9, {"comment": "fine by me"})  # bob's rejection reason...
    tamper(
        db, "DROP TRIGGER votes_append_only_update", "UPDATE votes SET comment = 'fine by me' WHERE reviewer = 'bob'"
    )
    assert (await verified(db)).ok  # type: ignore[attr-defined]  # ...and the row: consistent, so only an anchor tells
    report = await verified(db, anchor)
    assert not report.ok and "anchored" in report.reason  # type: ignore[attr-defined]


async def test_cut_off_newest_events_are_caught_by_an_anchor(db: Path) -> None:
    before = await verified(db)
    tamper(db, "DROP TRIGGER events_append_only_delete", "DELETE FROM events WHERE seq = 10")
    report = await verified(db, {before.head_seq: before.head_hash})  # type: ignore[attr-defined]
    assert not report.ok and "newest events were removed" in report.reason  # type: ignore[attr-defined]


async def test_a_long_log_is_verified_to_its_end(store: Store) -> None:
    for _ in range(520):  # more events than one page of the store's reader
        await add(store)
    report = await verify_store(store)
    assert report.ok and report.events_checked == 1040


async def test_an_approval_is_used_once(store: Store) -> None:
    request = await add(store)
    with pytest.raises(Conflict, match="not approved"):
        await store.update(request.id, lifecycle.consume(T0))
    await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    used = await store.update(request.id, lifecycle.consume(T0))
    assert used.consumed_at == T0 and used.status is Status.APPROVED
    with pytest.raises(Conflict, match="already used"):
        await store.update(request.id, lifecycle.consume(T0))
    assert [e.kind for e in await store.request_events(request.id)].count(EventKind.CONSUMED) == 1
    assert (await verify_store(store)).ok


async def test_writes_cancelled_midway_leave_a_consistent_store(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cancel.db")
    try:
        rng = random.Random(7)
        requests = [await add(store) for _ in range(30)]
        for request in requests:
            with anyio.move_on_after(rng.random() / 500):
                await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
        await add(store)  # the store still takes writes
        report = await verify_store(store)
    finally:
        await store.close()
    assert report.ok


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"amount": 120, "note": "naïve café ☕", "nested": {"b": [1, 2.5, None, True], "a": 'x\n"y"'}},
        {"big": 2**70, "neg": -0.0, "tiny": 1e-300},
    ],
)
@pytest.mark.parametrize(("seq", "prev"), [(1, GENESIS_HASH), (987_654_321, "ab" * 32)])
def test_an_event_encoded_before_the_write_lock_rows_and_hashes_as_linked(
    data: dict[str, object], seq: int, prev: str
) -> None:
    new = NewEvent(kind=EventKind.VOTED, request_id="req_é", at=T0, data=data)
    assert EncodedEvent.of(new).row(seq, prev) == event_row(link(new, seq - 1, prev))
