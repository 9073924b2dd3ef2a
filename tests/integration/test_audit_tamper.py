"""The audit log: SQLite refuses edits, and `signoff audit verify` catches edits made around the triggers."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.integration.support import ask, events, signoff_each, stdio_params

pytestmark = pytest.mark.slow


async def record_some_activity(env: dict[str, str], db: Path) -> None:
    """A policy approval, a human approval and a human rejection, then the server exits."""
    async with Client(stdio_params(env)) as client:
        await ask(client, confidence=0.95)
        approve_id = (await ask(client, confidence=0.3))["request_id"]
        reject_id = (await ask(client, confidence=0.3, payload={"amount": 9000}))["request_id"]
    approve, reject = await signoff_each(
        env,
        ("review", "approve", approve_id, "--as", "alice"),
        ("review", "reject", reject_id, "--as", "bob", "--comment", "too much"),
    )
    assert approve.returncode == 0 and reject.returncode == 0, (approve, reject)
    assert len(events(db)) >= 9


def copy_db(source: Path, target: Path) -> Path:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


async def test_tampering_is_refused_or_detected(env: dict[str, str], db: Path, tmp_path: Path) -> None:
    with anyio.fail_after(60):
        await record_some_activity(env, db)
        before = events(db)
        seqs = [row[0] for row in before]
        middle = seqs[len(seqs) // 2]

        with closing(sqlite3.connect(db)) as conn:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute("UPDATE events SET data = '{}' WHERE seq = ?", (middle,))
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute("DELETE FROM events WHERE seq = ?", (middle,))
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute("DELETE FROM events")
            conn.rollback()
        assert events(db) == before

        edited = copy_db(db, tmp_path / "edited.db")
        with closing(sqlite3.connect(edited)) as conn:
            conn.execute("DROP TRIGGER events_append_only_update")
            data = json.loads(conn.execute("SELECT data FROM events WHERE seq = ?", (middle,)).fetchone()[0])
            data["tampered"] = True
            conn.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(data), middle))
            conn.commit()

        removed = copy_db(db, tmp_path / "removed.db")
        with closing(sqlite3.connect(removed)) as conn:
            conn.execute("DROP TRIGGER events_append_only_delete")
            conn.execute("DELETE FROM events WHERE seq = ?", (middle,))
            conn.commit()

        intact, after_edit, after_delete = await signoff_each(
            env,
            ("audit", "verify"),
            ("audit", "verify", "--db", str(edited)),
            ("audit", "verify", "--db", str(removed)),
        )

    assert intact.returncode == 0, intact
    assert intact.stdout.startswith(f"ok: {len(before)} events"), intact

    assert after_edit.returncode == 1, after_edit
    assert f"#{middle}:" in after_edit.stderr, after_edit
    assert "changed" in after_edit.stderr, after_edit

    assert after_delete.returncode == 1, after_delete
    assert f"expected event {middle} " in after_delete.stderr, after_delete
    assert "removed" in after_delete.stderr, after_delete
