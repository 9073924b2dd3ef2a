"""`signoff serve` on PostgreSQL (SIGNOFF_DB=postgresql://…): two server processes share one database (requests and
the model plane), and a vote made elsewhere wakes an agent waiting on either. Every other CLI command on a
PostgreSQL URL: tests/integration/test_pg_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from mcp import Client

from signoff.storage import Status, Verdict
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.support import ask, http_server, signoff, status_of, wait_during

pytestmark = pytest.mark.slow


async def test_two_http_servers_on_one_postgresql_database_share_requests_and_wake_on_a_vote_made_elsewhere(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    pg_env = {**env, "SIGNOFF_DB": pg_url}
    with anyio.fail_after(90):
        async with (
            http_server(pg_env, tmp_path / "a.log") as url_a,
            http_server(pg_env, tmp_path / "b.log") as url_b,
            Client(url_a) as agent_on_a,
            Client(url_b) as agent_on_b,
        ):
            created = await ask(agent_on_a, confidence=0.3)
            assert created["status"] == "pending"
            request_id = created["request_id"]
            seen = status_of(await agent_on_b.call_tool("get_status", {"request_id": request_id}))
            assert seen["status"] == "pending" and seen["payload_sha256"] == created["payload_sha256"]

            reviewer_host = await PostgresStore.open(pg_url)  # a third host, where a reviewer votes
            try:
                reviewers = ApprovalService(reviewer_host)
                waited, _ = await wait_during(
                    agent_on_b, request_id, lambda: reviewers.vote(request_id, "alice", Verdict.APPROVE, None)
                )
                assert waited.status["status"] == "approved"
                assert waited.status["votes"][0]["reviewer"] == "alice"
                assert waited.seconds_after_action < 10
                on_a = status_of(await agent_on_a.call_tool("get_status", {"request_id": request_id}))
                assert on_a["status"] == "approved"
                assert (await verify_store(reviewer_host)).ok
            finally:
                await reviewer_host.close()

            registered = await agent_on_a.call_tool(
                "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://fraud/1"}
            )
            assert not registered.is_error, registered.content
            listed = await agent_on_b.call_tool("list_models", {})  # the model plane is on the shared database too
            assert not listed.is_error and "fraud" in str(listed.structured_content), listed.content
    assert "postgresql://signoff@" in (tmp_path / "a.log").read_text()  # the log names the database it serves


async def test_reviewers_decide_and_auditors_verify_with_the_cli_on_postgresql(
    env: dict[str, str], pg_url: str
) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        agents = ApprovalService(store)
        approve = await agents.request_approval(Draft(action="refunds.issue", summary="refund A-17", payload={"n": 1}))
        reject = await agents.request_approval(Draft(action="db.drop", summary="drop users", payload={"t": "users"}))
    finally:
        await store.close()
    env = {**env, "SIGNOFF_DB": pg_url}
    listed = await signoff(env, "review", "list", "--json")
    assert listed.returncode == 0, listed
    assert {r["request_id"] for r in json.loads(listed.stdout)} == {approve.id, reject.id}
    shown = await signoff(env, "review", "show", approve.id[:12])
    assert shown.returncode == 0 and "refund A-17" in shown.stdout, shown
    assert (await signoff(env, "review", "approve", approve.id, "--as", "alice")).returncode == 0
    rejected = await signoff(env, "review", "reject", reject.id, "--as", "bob", "--comment", "not today")
    assert rejected.returncode == 0, rejected
    again = await signoff(env, "review", "approve", reject.id, "--as", "carol")
    assert again.returncode == 1 and "bob" in again.stderr, again  # the loser is told who decided
    verified = await signoff(env, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified

    store = await PostgresStore.open(pg_url)
    try:
        assert (await store.get(approve.id)).status is Status.APPROVED  # type: ignore[union-attr]
        assert (await store.get(reject.id)).status is Status.REJECTED  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_serve_on_an_unreachable_postgresql_says_so_in_one_line_without_the_password(
    env: dict[str, str],
) -> None:
    url = "postgresql://signoff:s3cret@127.0.0.1:1/signoff?connect_timeout=5"
    with anyio.fail_after(60):
        ran = await signoff({**env, "SIGNOFF_DB": url}, "serve")
    assert ran.returncode == 1, ran
    assert "cannot open the PostgreSQL database postgresql://signoff:***@127.0.0.1:1" in ran.stderr, ran
    assert "s3cret" not in ran.stderr and ran.stderr.count("\n") == 1
