"""Proof: two server processes and eight reviewers racing on one database decide every request exactly once.

Two real ``signoff serve`` processes (stdio) share one database (an SQLite file, or one PostgreSQL database). Fifty
agent tasks create requests at once, split across the two servers; some requests need two approvals. As each request
is created, two or three of eight reviewers vote on it through the CLI (each vote its own process) at the same time;
then the agent reads the verdict through the *other* server. Every request must be decided exactly once, no client
or reviewer may see "database is locked" or an unexpected error, no row may be lost or duplicated, and the audit
chain must verify.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import Client
from mcp.types import CallToolResult, TextContent

from tests.integration.support import Ran, base_env, signoff, stdio_params
from tests.rows import query

pytestmark = pytest.mark.slow

AGENTS = 50
REVIEWERS = 8
CONFIG = """
[[rules]]
name = "two approvers"
action = "race.quorum"
outcome = "review"
approvals_required = 2
"""

Ballot = tuple[str, str]  #: (request_id, verdict)


@dataclass(slots=True)
class Countdown:
    """Sets ``done`` once ``left`` ticks have happened."""

    left: int
    done: anyio.Event = field(default_factory=anyio.Event)

    def tick(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


@dataclass(slots=True)
class Race:
    """Everything the clients and reviewers saw."""

    created: dict[str, dict[str, Any]] = field(default_factory=dict)  #: request_id -> status at creation
    final: dict[str, str] = field(default_factory=dict)  #: request_id -> the verdict the agent read
    ballots: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  #: id -> sent
    votes: list[tuple[str, str, str, Ran]] = field(default_factory=list)  #: (request_id, reviewer, verdict, CLI run)
    voted: dict[str, Countdown] = field(default_factory=dict)  #: request_id -> its ballots still to run
    tool_errors: list[str] = field(default_factory=list)


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def status_or_error(race: Race, result: CallToolResult, what: str) -> dict[str, Any] | None:
    if result.is_error or result.structured_content is None:
        race.tool_errors.append(f"{what}: {text_of(result)}")
        return None
    content: dict[str, Any] = result.structured_content
    return content


async def agent(
    index: int, creator: Client, reader: Client, race: Race, reviewers: list[MemoryObjectSendStream[Ballot]]
) -> None:
    """Create one request on ``creator``, hand it to two or three reviewers at once, then read it on ``reader``."""
    rng = random.Random(index)
    quorum = index % 5 < 2
    arguments = {
        "action": "race.quorum" if quorum else "race.single",
        "summary": f"race request {index}",
        "payload": {"index": index},
        "agent_id": f"agent-{index}",
        "expires_in_seconds": 600,
    }
    created = status_or_error(race, await creator.call_tool("request_approval", arguments), f"create {index}")
    if created is None:
        return
    request_id: str = created["request_id"]
    race.created[request_id] = created
    chosen = rng.sample(range(REVIEWERS), 3 if quorum else 2)
    vetoer = rng.choice(chosen) if rng.random() < 0.2 else None
    voted = race.voted[request_id] = Countdown(len(chosen))
    for number in chosen:
        verdict = "reject" if number == vetoer else "approve"
        race.ballots[request_id].append((f"reviewer{number}", verdict))
        await reviewers[number].send((request_id, verdict))
    await voted.done.wait()
    seen = status_or_error(race, await reader.call_tool("get_status", {"request_id": request_id}), "get_status")
    if seen is not None:
        race.final[request_id] = seen["status"]


async def reviewer(
    name: str, ballots: MemoryObjectReceiveStream[Ballot], env: dict[str, str], limit: anyio.CapacityLimiter, race: Race
) -> None:
    async with ballots:
        async for request_id, verdict in ballots:
            args = ["review", verdict, request_id, "--as", name]
            if verdict == "reject":
                args += ["--comment", f"{name} says no"]
            async with limit:
                ran = await signoff(env, *args)
            race.votes.append((request_id, name, verdict, ran))
            race.voted[request_id].tick()


async def test_two_servers_and_eight_reviewers_decide_every_request_exactly_once(database: str, tmp_path: Path) -> None:
    db, config = database, tmp_path / "signoff.toml"
    config.write_text(CONFIG)
    env = base_env(db, SIGNOFF_CONFIG=str(config))
    race = Race()
    limit = anyio.CapacityLimiter(REVIEWERS)
    streams = [anyio.create_memory_object_stream[Ballot](AGENTS) for _ in range(REVIEWERS)]

    # a guard against a hang, not a speed limit: ~130 CLI processes, 1.5 s each on a loaded 2-core machine
    with anyio.fail_after(600):
        async with Client(stdio_params(env)) as one, Client(stdio_params(env)) as two:
            async with anyio.create_task_group() as everyone:
                for number, (_, receive) in enumerate(streams):
                    everyone.start_soon(reviewer, f"reviewer{number}", receive, env, limit, race)
                senders = [send for send, _ in streams]
                async with anyio.create_task_group() as agents:
                    for index in range(AGENTS):
                        creator, reader = (one, two) if index % 2 == 0 else (two, one)
                        agents.start_soon(agent, index, creator, reader, race, senders)
                for send in senders:
                    await send.aclose()
        verify = await signoff(env, "audit", "verify")

    # Nobody saw an error they should not have: not the agents, not the reviewers.
    assert race.tool_errors == []
    for *_, ran in race.votes:
        assert "locked" not in ran.stderr and "Traceback" not in ran.stderr, ran
        if ran.returncode != 0:  # a late vote: told who decided, and nothing changed
            assert ran.returncode == 1 and "nothing was changed" in ran.stderr, ran
            assert "already approved" in ran.stderr or "already rejected" in ran.stderr, ran
    assert len(race.votes) == sum(len(b) for b in race.ballots.values()), "a reviewer's vote was never run"

    # No lost or duplicated row: exactly the acknowledged requests, and exactly the acknowledged votes.
    assert len(race.created) == AGENTS
    stored = {r[0]: r[1:] for r in query(db, "SELECT id, status, approvals_required, decided_by FROM requests")}
    assert set(stored) == set(race.created)
    vote_rows = query(db, "SELECT request_id, reviewer, verdict FROM votes")
    assert len(vote_rows) == len(set((r[0], r[1]) for r in vote_rows)), "a reviewer's vote was stored twice"
    accepted = {(r, name, verdict) for r, name, verdict, ran in race.votes if ran.returncode == 0}
    assert set(vote_rows) == accepted, "the votes stored are not the votes the CLI acknowledged"

    # Every request decided exactly once, consistently with its votes, and the agents read that verdict.
    decided = Counter(r[0] for r in query(db, "SELECT request_id FROM events WHERE kind = 'decided'"))
    votes_of: dict[str, list[str]] = defaultdict(list)
    for request_id, _, verdict in vote_rows:
        votes_of[request_id].append(verdict)
    for request_id, (status, required, decided_by) in stored.items():
        assert decided[request_id] == 1, f"{request_id} has {decided[request_id]} decided events"
        assert status in ("approved", "rejected") and decided_by == "human", (request_id, status)
        verdicts = votes_of[request_id]
        if status == "approved":
            assert verdicts == ["approve"] * required, (request_id, verdicts)
        else:
            assert verdicts.count("reject") == 1 and verdicts.count("approve") < required, (request_id, verdicts)
        assert race.final[request_id] == status, f"{request_id}: the agent read {race.final[request_id]}"
    assert verify.returncode == 0, verify
