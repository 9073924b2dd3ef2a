"""A payload approved with changes, and claims, in every Store and in the audit check."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from signoff.storage import ActionHistory, Status, Store, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add

CHANGED = {"amount": 7, "memo": "<b>ü</b>"}


async def test_an_approval_with_changes_is_stored_and_read_back(store: Store) -> None:
    request = await add(store, payload={"amount": 5000})
    updated = await store.update(
        request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0, approved_payload=CHANGED)
    )
    assert updated.status is Status.APPROVED and updated.approved_payload == CHANGED
    assert await store.get(request.id) == updated
    assert (await verify_store(store)).ok
    # the action's history (anomaly detection) learns the number that was approved, not the one asked
    history: ActionHistory = await store.action_history(request.action, request.agent_id, ["amount"])
    assert history.values["amount"] == (7.0,)


async def test_a_plain_approval_has_no_approved_payload(store: Store) -> None:
    request = await add(store)
    updated = await store.update(request.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0))
    assert updated.approved_payload is None and not updated.payload_changed
    assert updated.approved_sha256 == updated.payload_sha256


def tamper(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "amended.db"
    store = await SqliteStore.open(path)
    try:
        changed, plain = await add(store, payload={"amount": 5000}), await add(store)
        await add(store)
        await store.update(changed.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0, approved_payload=CHANGED))
        await store.update(plain.id, lifecycle.vote("bob", Verdict.APPROVE, None, T0))
    finally:
        await store.close()
    return path


def test_the_approved_payload_is_set_once_by_the_decision(db: Path) -> None:
    for statement in (
        "UPDATE requests SET approved_payload = '{\"amount\":1}' WHERE approved_payload IS NOT NULL",
        "UPDATE requests SET approved_payload = '{\"amount\":1}' WHERE status = 'approved'",
        "UPDATE requests SET approved_payload = '{\"amount\":1}' WHERE status = 'pending'",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="set once"):
            tamper(db, statement)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE requests SET approved_payload = '{\"amount\":1}' WHERE approved_payload IS NOT NULL",
        "UPDATE requests SET approved_payload = NULL WHERE approved_payload IS NOT NULL",
        "UPDATE requests SET approved_payload = '{}' WHERE status = 'approved' AND approved_payload IS NULL",
    ],
)
async def test_audit_verify_catches_an_sql_edit_of_the_approved_payload(db: Path, statement: str) -> None:
    tamper(db, "DROP TRIGGER requests_approved_payload_once", statement)
    store = await SqliteStore.open(db)
    try:
        report = await verify_store(store)
    finally:
        await store.close()
    assert not report.ok and report.request_id is not None
    assert "approved_payload" in report.reason or report.column == "approved_payload"


async def test_a_claim_is_stored_read_back_and_released(store: Store) -> None:
    request = await add(store)
    claimed = await store.update(request.id, lifecycle.claim("alice", T0, 600))
    assert await store.get(request.id) == claimed
    assert claimed.claim_at(T0) == "alice" and claimed.claim_until is not None
    assert claimed.claim_until - T0 == timedelta(seconds=600)
    released = await store.update(request.id, lifecycle.release("alice", T0))
    assert await store.get(request.id) == released and released.claimed_by is None
    assert (await verify_store(store)).ok
