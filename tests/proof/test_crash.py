"""Proof: kill -9 in the middle of a load loses nothing that was acknowledged.

``signoff serve --transport http`` runs on a database (an SQLite file, or PostgreSQL) while agents (each with its
own MCP client) create, read and cancel requests and reviewers vote through the CLI. Five times, once enough has
been acknowledged, the server is killed with SIGKILL mid-load. After each kill: SQLite's ``PRAGMA integrity_check``
is ok, every request a client saw acknowledged is stored with the status it last saw (or a later one, if it was
pending), every acknowledged vote is stored, and ``signoff audit verify`` passes. After each restart the requests
that were pending are still pending. At the end, the notifications that were queued are all delivered (the console
notifier is the default): by the restarted server, except those the killed server had claimed, which wait out its
lease (two minutes): those are delivered by the server's own worker code with a clock moved past the lease.
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.types import CallToolResult, TextContent

from signoff.notifiers import ConsoleNotifier
from signoff.server.workers import deliver_due
from signoff.storage import Store
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService
from tests.fakes.clock import FakeClock
from tests.integration.support import REPO, SIGNOFF, Ran, base_env, free_port, signoff, wait_for_port
from tests.rows import is_postgres, query

pytestmark = pytest.mark.slow

ROUNDS = 5
AGENT_TASKS = 4
VOTER_TASKS = 2
ACKS_BEFORE_KILL = 12  #: acknowledged requests per round before the kill
CONFIG = """
[[rules]]
name = "two approvers"
action = "crash.quorum"
outcome = "review"
approvals_required = 2
"""
TERMINAL = {"approved", "rejected", "expired", "cancelled"}


@dataclass(slots=True)
class Seen:
    """What clients were told, across all rounds."""

    status: dict[str, str] = field(default_factory=dict)  #: request_id -> the last status a client was told
    votes: set[tuple[str, str, str]] = field(default_factory=set)  #: (request_id, reviewer, verdict) acknowledged
    problems: list[str] = field(default_factory=list)  #: anything a client was told that it should not have been
    round_acks: int = 0
    enough: anyio.Event = field(default_factory=anyio.Event)  #: set when this round has acknowledged enough
    new_pending: anyio.Event = field(default_factory=anyio.Event)  #: set (and replaced) on each new pending request
    killed: bool = False

    def acknowledge(self, content: dict[str, Any]) -> None:
        self.status[content["request_id"]] = content["status"]
        if content["status"] == "pending":
            self.new_pending.set()
            self.new_pending = anyio.Event()

    def pending(self) -> list[str]:
        return sorted(request_id for request_id, status in self.status.items() if status == "pending")


@dataclass(frozen=True, slots=True)
class Served:
    url: str
    process: Process


@asynccontextmanager
async def server(env: dict[str, str], log: Path) -> AsyncIterator[Served]:
    """``signoff serve --transport http`` on a free port; stopped on the way out if the test has not killed it."""
    port = free_port()
    with log.open("wb") as out:
        process = await anyio.open_process(
            [str(SIGNOFF), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=str(REPO),
        )
    async with process:
        try:
            await wait_for_port(port, process, log)
            yield Served(f"http://127.0.0.1:{port}/mcp", process)
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()
                    with anyio.move_on_after(10):
                        await process.wait()
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def agent(number: int, url: str, seen: Seen) -> None:
    """Create requests without pause (a third approved by policy, some needing two approvals), now and then
    re-read or cancel one; every answer is recorded as acknowledged. Ends when the server dies."""
    rng = random.Random(number)
    try:
        async with Client(url) as client:
            for index in range(10_000):
                kind = rng.choice(["auto", "single", "quorum"])
                arguments: dict[str, Any] = {
                    "action": "crash.quorum" if kind == "quorum" else "crash.single",
                    "summary": f"agent {number} request {index}",
                    "payload": {"agent": number, "index": index},
                    "agent_id": f"agent-{number}",
                    "expires_in_seconds": 3600,
                }
                if kind == "auto":
                    arguments["confidence"] = 0.99
                await call(client, seen, "request_approval", arguments)
                seen.round_acks += 1
                if seen.round_acks >= ACKS_BEFORE_KILL:
                    seen.enough.set()
                pending = seen.pending()
                if pending and rng.random() < 0.3:
                    request_id = rng.choice(pending)
                    if rng.random() < 0.5:
                        await call(client, seen, "get_status", {"request_id": request_id})
                    else:
                        await call(client, seen, "cancel_request", {"request_id": request_id, "reason": "not needed"})
    except* (httpx2.TransportError, anyio.ClosedResourceError, anyio.BrokenResourceError):
        assert seen.killed, "the client lost its connection while the server was running"


async def call(client: Client, seen: Seen, tool: str, arguments: dict[str, Any]) -> None:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = text_of(result)
        if not (tool == "cancel_request" and "nothing was changed" in text):  # decided meanwhile: expected
            seen.problems.append(f"{tool} {arguments}: {text}")
        return
    seen.acknowledge(result.structured_content)


async def voter(number: int, env: dict[str, str], seen: Seen) -> None:
    """Vote through the CLI on pending requests, one process at a time, until cancelled."""
    rng = random.Random(1000 + number)
    name = f"reviewer{number}"
    while True:
        while not seen.pending():
            await seen.new_pending.wait()
        request_id = rng.choice(seen.pending())
        verdict = "reject" if rng.random() < 0.2 else "approve"
        args = ["review", verdict, request_id, "--as", name, *(["--comment", "no"] if verdict == "reject" else [])]
        ran = await signoff(env, *args)
        record_vote(seen, request_id, name, verdict, ran)


def record_vote(seen: Seen, request_id: str, name: str, verdict: str, ran: Ran) -> None:
    if "locked" in ran.stderr or "Traceback" in ran.stderr:
        seen.problems.append(repr(ran))
    if ran.returncode == 0:
        seen.votes.add((request_id, name, verdict))
        if " is now " in ran.stdout:
            seen.status[request_id] = ran.stdout.split(" is now ")[1].split()[0]
    elif not ("nothing was changed" in ran.stderr or "already voted" in ran.stderr):
        seen.problems.append(repr(ran))


async def check_after_kill(db: str, env: dict[str, str], seen: Seen) -> None:
    if not is_postgres(db):
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
    stored = dict(query(db, "SELECT id, status FROM requests"))
    for request_id, status in seen.status.items():
        assert request_id in stored, f"acknowledged request {request_id} was lost"
        if status != "pending":
            assert stored[request_id] == status, f"{request_id} was acknowledged {status}, is {stored[request_id]}"
        seen.status[request_id] = stored[request_id]  # the new baseline: nothing may change it behind our back
    votes = set(query(db, "SELECT request_id, reviewer, verdict FROM votes"))
    assert seen.votes <= votes, f"acknowledged votes were lost: {seen.votes - votes}"
    verify = await signoff(env, "audit", "verify")
    assert verify.returncode == 0, verify


async def still_pending_after_restart(url: str, pending: list[str]) -> None:
    async with Client(url) as client:
        for request_id in pending:
            result = await client.call_tool("get_status", {"request_id": request_id})
            assert not result.is_error and result.structured_content is not None, text_of(result)
            assert result.structured_content["status"] == "pending", (request_id, result.structured_content)


def leased_by_the_dead(db: str, killed_at: datetime) -> set[str]:
    """Requests whose next notification the killed server had claimed: they wait out its lease (by design)."""
    rows = query(db, "SELECT request_id, next_attempt_at FROM outbox WHERE delivered_at IS NULL")
    return {request_id for request_id, due in rows if datetime.fromisoformat(due) > killed_at}


async def delivered_except(db: str, leased: set[str], process: Process, log: Path, deadline: float) -> None:
    """Wait until every queued notification is delivered, but those behind a dead server's lease.

    The pause between looks doubles as a watch on the server.
    """
    with anyio.fail_after(deadline):
        while {r for (r,) in query(db, "SELECT request_id FROM outbox WHERE delivered_at IS NULL")} - leased:
            with anyio.move_on_after(0.1):
                await process.wait()
            assert process.returncode is None, f"the server died:\n{log.read_text()}"


async def deliver_after_the_lease(db: str) -> None:
    """Deliver what a dead server had leased, with the server's own worker code and a clock past the lease."""
    rows = query(db, "SELECT next_attempt_at FROM outbox WHERE delivered_at IS NULL")
    if not rows:
        return
    clock = FakeClock(max(datetime.fromisoformat(due) for (due,) in rows) + timedelta(seconds=1))
    store: Store = await PostgresStore.open(db) if is_postgres(db) else await SqliteStore.open(Path(db))
    try:
        service = ApprovalService(store, clock=clock)
        for _ in range(100):
            if query(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == [(0,)]:
                break
            await deliver_due(service, ConsoleNotifier())
    finally:
        await store.close()


async def test_kill_9_mid_load_loses_nothing_acknowledged(database: str, tmp_path: Path) -> None:
    db, config = database, tmp_path / "signoff.toml"
    config.write_text(CONFIG)
    env = base_env(db, SIGNOFF_CONFIG=str(config), SIGNOFF_LOG_LEVEL="WARNING")
    seen = Seen()
    pending_at_kill: list[str] = []
    killed_at = datetime.now(UTC)

    with anyio.fail_after(170):
        for number in range(ROUNDS):
            seen.round_acks, seen.enough, seen.killed = 0, anyio.Event(), False
            async with server(env, tmp_path / f"server{number}.log") as served:
                await still_pending_after_restart(served.url, pending_at_kill)
                async with anyio.create_task_group() as load:
                    for agent_number in range(AGENT_TASKS):
                        load.start_soon(agent, agent_number, served.url, seen)
                    for voter_number in range(VOTER_TASKS):
                        load.start_soon(voter, voter_number, env, seen)
                    await seen.enough.wait()
                    seen.killed = True
                    served.process.send_signal(signal.SIGKILL)
                    await served.process.wait()
                    killed_at = datetime.now(UTC)
                    load.cancel_scope.cancel()
            await check_after_kill(db, env, seen)
            pending_at_kill = seen.pending()

        leased = leased_by_the_dead(db, killed_at)
        log = tmp_path / "final.log"
        async with server(env, log) as served:
            await still_pending_after_restart(served.url, pending_at_kill)
            await delivered_except(db, leased, served.process, log, deadline=30)
        await deliver_after_the_lease(db)

    assert seen.problems == []
    assert len(seen.status) >= ROUNDS * ACKS_BEFORE_KILL
    notified = {r for (r,) in query(db, "SELECT DISTINCT request_id FROM events WHERE kind = 'notified'")}
    assert set(pending_at_kill) <= notified, "a pending request was never shown to reviewers"
    assert query(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == [(0,)], "a notification was lost"
    queued = {r for (r,) in query(db, "SELECT DISTINCT request_id FROM outbox")}
    assert queued <= notified
    verify = await signoff(env, "audit", "verify")
    assert verify.returncode == 0, verify
