"""Two server processes on one database: what one records, the other sees, including while it waits."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from mcp import Client

from signoff.storage.migrations import available
from tests.integration.support import ask, signoff, signoff_each, status_of, stdio_params, wait_during

pytestmark = pytest.mark.slow


async def test_two_servers_share_decisions_and_cancellations(env: dict[str, str]) -> None:
    with anyio.fail_after(90):
        async with Client(stdio_params(env)) as a, Client(stdio_params(env)) as b:
            created = await ask(a, confidence=0.3)
            assert created["status"] == "pending"
            request_id = created["request_id"]
            seen = status_of(await b.call_tool("get_status", {"request_id": request_id}))
            assert seen["status"] == "pending" and seen["payload_sha256"] == created["payload_sha256"]

            waited, approve = await wait_during(
                b, request_id, lambda: signoff(env, "review", "approve", request_id, "--as", "alice")
            )
            assert approve.returncode == 0, approve
            assert waited.status["status"] == "approved"
            assert waited.status["votes"][0]["reviewer"] == "alice"
            assert waited.seconds_after_action < 10
            assert status_of(await a.call_tool("get_status", {"request_id": request_id}))["status"] == "approved"

            withdrawn_id = (await ask(a, confidence=0.3, summary="Pay invoice 1043 to ACME Ltd"))["request_id"]

            async def cancel_in_a() -> dict[str, object]:
                return status_of(
                    await a.call_tool("cancel_request", {"request_id": withdrawn_id, "reason": "plan changed"})
                )

            waited, cancelled = await wait_during(b, withdrawn_id, cancel_in_a)
            assert cancelled["status"] == "cancelled"
            assert waited.status["status"] == "cancelled"
            assert "plan changed" in waited.status["message"]
            assert waited.seconds_after_action < 10

            late = await signoff(env, "review", "approve", withdrawn_id, "--as", "alice")
            assert late.returncode != 0 and "cancelled" in late.stderr, late

    verify = await signoff(env, "audit", "verify")
    assert verify.returncode == 0, verify


async def test_processes_starting_together_on_a_new_database_all_work(env: dict[str, str], db: Path) -> None:
    """Several processes creating and migrating the same new file at once: none fails, the schema is made once."""
    with anyio.fail_after(60):
        runs = await signoff_each(env, *[("init",)] * 4)
    for ran in runs:
        assert ran.returncode == 0, ran
        assert str(db) in ran.stdout
    listed = await signoff(env, "review", "list", "--json")
    assert listed.returncode == 0 and listed.json() == [], listed
    with closing(sqlite3.connect(db)) as conn:
        applied = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert applied == [(m.version,) for m in available()]
