"""A signed Slack request counts once across replicas: two `signoff serve --transport http` processes on one database
(an SQLite file, and PostgreSQL) with the same signing secret. A click captured on its way to one is refused by the
other with 401 and changes nothing; the same request sent to both at once is taken by exactly one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx2
import pytest

from signoff.notifiers.slack_blocks import APPROVE_ACTION
from signoff.server.config import Settings
from signoff.server.stores import open_store
from signoff.storage import ApprovalRequest, EventKind, Status, Store
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.slack import FakeSlack, click
from tests.integration.support import base_env, http_process
from tests.integration.test_slack_http import SECRET, signed
from tests.rows import is_postgres, query
from tests.waits import stored_when

pytestmark = pytest.mark.slow

#: two approvals needed: the first click leaves the request pending, so a replay of it would have something to do
POLICY = """
[slack]
approvers = ["U0ALICE", "U0BOB"]

[[rules]]
name = "deploys"
action = "deploy.*"
outcome = "review"
approvals_required = 2
"""


@asynccontextmanager
async def two_replicas(database: str, tmp_path: Path, fake: FakeSlack) -> AsyncIterator[tuple[list[str], Store]]:
    """Two servers on ``database``, Slack's interactivity URL of each, and a store on the same database."""
    (tmp_path / "policy.toml").write_text(POLICY)
    env = base_env(
        database,
        SIGNOFF_CONFIG=str(tmp_path / "policy.toml"),
        SIGNOFF_SLACK_BOT_TOKEN="xoxb-test",
        SIGNOFF_SLACK_SIGNING_SECRET=SECRET,
        SIGNOFF_SLACK_CHANNEL="#approvals",
        SIGNOFF_SLACK_API_URL=fake.api_url,
    )
    async with AsyncExitStack() as stack:
        urls = []
        for n in (1, 2):  # one after the other: the first migrates the database
            port, _ = await stack.enter_async_context(http_process(env, tmp_path / f"replica-{n}.log", deadline=60))
            urls.append(f"http://127.0.0.1:{port}/slack/interactions")
        store = await open_store(Settings.from_env(env))
        stack.push_async_callback(store.close)
        yield urls, store


def approve_body(request_id: str, user_id: str, username: str) -> str:
    payload = click(
        user_id=user_id, username=username, action_id=APPROVE_ACTION, request_id=request_id, channel="C0A", ts="1.0"
    )
    return urlencode({"payload": json.dumps(payload)})


async def votes_of(store: Store, request_id: str, count: int) -> ApprovalRequest:
    """The request once it has ``count`` votes (the servers record a click in the background, after the ack)."""
    return await stored_when(store, request_id, lambda request: len(request.votes) >= count)


def refusals(database: str) -> list[tuple[object, ...]]:
    return query(database, "SELECT request_id, data FROM events WHERE kind = ?", EventKind.REFUSED.value)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_request_replayed_to_another_replica_is_refused_and_changes_nothing(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = str(request.getfixturevalue("pg_url")) if engine == "postgresql" else str(tmp_path / "signoff.db")
    assert is_postgres(database) == (engine == "postgresql")
    fake = await FakeSlack().start()
    try:
        async with two_replicas(database, tmp_path, fake) as ([first, second], store), httpx2.AsyncClient() as http:
            policy = Policy(parse_policy_config(POLICY))
            pending = await ApprovalService(store, policy).request_approval(
                Draft(action="deploy.prod", summary="Ship v2", payload={"version": "2.0.0"})
            )
            assert pending.status is Status.PENDING and pending.approvals_required == 2

            alice = approve_body(pending.id, "U0ALICE", "alice")
            captured = signed(alice)
            taken = await http.post(first, content=alice, headers=captured)
            assert taken.status_code == 200, taken.text
            voted = await votes_of(store, pending.id, 1)

            replayed = await http.post(second, content=alice, headers=captured)
            assert replayed.status_code == 401, f"another replica took a replayed request: {replayed.status_code}"
            assert replayed.json() == {"error": "this request was already received"}
            assert await store.get(pending.id) == voted  # no second vote, no decision

            # Bob's click, sent to both replicas at once (a retrying proxy, an attacker racing it): taken once
            bob = approve_body(pending.id, "U0BOB", "bob")
            headers = signed(bob)
            statuses: list[int] = []

            async def send(url: str) -> None:
                statuses.append((await http.post(url, content=bob, headers=headers)).status_code)

            async with anyio.create_task_group() as group:
                group.start_soon(send, first)
                group.start_soon(send, second)
            assert sorted(statuses) == [200, 401]
            final = await votes_of(store, pending.id, 2)
    finally:
        await fake.stop()
    assert final.status is Status.APPROVED
    assert [v.reviewer for v in final.votes] == ["U0ALICE", "U0BOB"]
    # Alice's replay was never taken for a second click: nobody was refused, nobody was told "you already voted"
    assert refusals(database) == []
    assert fake.of("chat.postEphemeral") == []
