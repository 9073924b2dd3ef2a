"""The model link of a request (model, version, decision_id) in every Store, and people's outcomes per version."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from signoff.storage import DecidedBy, HumanOutcomes, Status, Store, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals import lifecycle
from tests.factories import T0, add

LINK = {"model": "fraud", "model_version": "v1", "model_decision_id": "dec_1_42_0000abcd"}


async def test_the_link_is_stored_and_people_outcomes_are_counted_per_version(store: Store) -> None:
    linked = await add(store, **LINK)
    assert await store.get(linked.id) == linked and linked.model_decision_id == "dec_1_42_0000abcd"
    rejected, changed = await add(store, **LINK), await add(store, **LINK)
    await add(store, **LINK, status=Status.APPROVED, decided_by=DecidedBy.POLICY, created_at=T0, decided_at=T0)
    await add(store, model="fraud", model_version="v2")
    await add(store, model="other", model_version="v1")
    await add(store)
    await store.update(rejected.id, lifecycle.vote("alice", Verdict.REJECT, "no", T0))
    await store.update(changed.id, lifecycle.vote("alice", Verdict.APPROVE, None, T0, approved_payload={"amount": 1}))
    found = await store.human_outcomes("fraud", T0, T0 + timedelta(days=1))
    assert found == {
        "v1": HumanOutcomes(version="v1", requests=4, to_people=3, decided_by_people=2, rejected=1, changed=1),
        "v2": HumanOutcomes(version="v2", requests=1, to_people=1, decided_by_people=0, rejected=0, changed=0),
    }
    assert found["v1"].rejected_share == 0.5 and found["v2"].rejected_share is None
    assert await store.human_outcomes("fraud", T0 + timedelta(days=1), T0 + timedelta(days=2)) == {}
    assert (await verify_store(store)).ok


async def test_the_link_is_fixed_and_audit_verify_catches_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "link.db"
    store = await SqliteStore.open(path)
    try:
        await add(store, **LINK)
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.DatabaseError, match="cannot be changed"):
        conn.execute("UPDATE requests SET model_version = 'v2'")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER requests_model_link_fixed")
        conn.execute("UPDATE requests SET model_version = 'v2'")
    store = await SqliteStore.open(path)
    try:
        report = await verify_store(store)
    finally:
        await store.close()
    assert not report.ok and "model_version" in f"{report.column} {report.reason}"
