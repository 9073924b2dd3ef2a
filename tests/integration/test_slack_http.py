"""POST /slack/interactions on the HTTP transport: only requests Slack signed, recently, and once, count."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
import uvicorn
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from signoff.notifiers import SlackHttpEndpoint, SlackInteractions
from signoff.notifiers.slack_blocks import APPROVE_ACTION
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import ApprovalRequest, Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.errors import DatabaseUnavailable
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.slack import FakeSlack, click
from tests.waits import stored_when

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
POLICY = '[slack]\napprovers = ["U0ALICE"]\n'


@asynccontextmanager
async def http_server(
    tmp_path: Path, fake: FakeSlack | None = None, policy: str = POLICY
) -> AsyncIterator[tuple[str, SqliteStore]]:
    """signoff's HTTP app on a loopback socket bound before it starts, and a store on the same database."""
    fake = fake or await FakeSlack().start()
    (tmp_path / "policy.toml").write_text(policy)
    settings = Settings(
        db_path=tmp_path / "signoff.db",
        config_path=tmp_path / "policy.toml",
        slack_bot_token="xoxb-test",
        slack_signing_secret=SECRET,
        slack_channel="#approvals",
        slack_api_url=fake.api_url,
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = uvicorn.Server(uvicorn.Config(build_server(settings).streamable_http_app(), log_level="warning"))
    store = await SqliteStore.open(settings.db_path)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [listener])
            yield f"http://127.0.0.1:{listener.getsockname()[1]}/slack/interactions", store
            server.should_exit = True
    finally:
        await store.close()
        await fake.stop()
        listener.close()


def signed(body: str, *, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def approve_body(request_id: str) -> str:
    payload = click(
        user_id="U0ALICE",
        username="alice",
        action_id=APPROVE_ACTION,
        request_id=request_id,
        channel="C0APPROVALS",
        ts="1.0",
    )
    return urlencode({"payload": json.dumps(payload)})


async def pending_request(store: SqliteStore) -> ApprovalRequest:
    return await ApprovalService(store, Policy(parse_policy_config(POLICY))).request_approval(
        Draft(action="deploy.prod", summary="Ship v2", payload={"version": "2.0.0"})
    )


async def decided(store: SqliteStore, request_id: str) -> ApprovalRequest:
    return await stored_when(store, request_id, lambda request: request.status is not Status.PENDING, timeout=15)


async def test_a_signed_click_is_acknowledged_and_recorded(tmp_path: Path) -> None:
    async with http_server(tmp_path) as (url, store), httpx2.AsyncClient() as http:
        request = await pending_request(store)
        body = approve_body(request.id)
        response = await http.post(url, content=body, headers=signed(body))
        assert response.status_code == 200
        final = await decided(store, request.id)
    # recorded under the Slack user id (Slack vouches for it; the username is the user's own choice) ...
    assert final.status is Status.APPROVED and [v.reviewer for v in final.votes] == ["U0ALICE"]


async def test_a_slack_vote_is_recorded_under_the_people_name_of_its_user_id(tmp_path: Path) -> None:
    """... or under the [[people]] name that id belongs to, whatever the clicker's username says."""
    policy = POLICY + '\n[[people]]\nname = "Alice Doe"\naliases = ["U0ALICE"]\n'
    async with http_server(tmp_path, policy=policy) as (url, store), httpx2.AsyncClient() as http:
        request = await pending_request(store)
        payload = click(
            user_id="U0ALICE", username="bob", action_id=APPROVE_ACTION, request_id=request.id, channel="C0A", ts="1.0"
        )
        body = urlencode({"payload": json.dumps(payload)})
        response = await http.post(url, content=body, headers=signed(body))
        assert response.status_code == 200
        final = await decided(store, request.id)
    assert final.status is Status.APPROVED
    assert [(v.reviewer, v.reviewer_ids) for v in final.votes] == [("Alice Doe", ("U0ALICE",))]


async def test_forged_stale_replayed_and_malformed_requests_change_nothing(tmp_path: Path) -> None:
    async with http_server(tmp_path) as (url, store), httpx2.AsyncClient() as http:
        request = await pending_request(store)
        body = approve_body(request.id)
        forged = await http.post(url, content=body, headers=signed(body, secret="not-the-secret"))
        stale = await http.post(url, content=body, headers=signed(body, age=301))
        unsigned = await http.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        tampered = await http.post(url, content=body.replace("U0ALICE", "U0MALLORY"), headers=signed(body))
        garbage = "payload=not-json"
        malformed = await http.post(url, content=garbage, headers=signed(garbage))
        statuses = [r.status_code for r in (forged, stale, unsigned, tampered, malformed)]
        assert statuses == [401, 401, 401, 401, 400]
        assert (await store.get(request.id)).status is Status.PENDING  # type: ignore[union-attr]
        headers = signed(body)
        first = await http.post(url, content=body, headers=headers)
        replayed = await http.post(url, content=body, headers=headers)
        assert (first.status_code, replayed.status_code) == (200, 401)
        final = await decided(store, request.id)
    assert len(final.votes) == 1


async def test_an_empty_reject_reason_is_answered_in_the_modal(tmp_path: Path) -> None:
    view: dict[str, Any] = {
        "callback_id": "signoff_reject_reason",
        "private_metadata": json.dumps({"request_id": "req_x", "channel": "C0APPROVALS"}),
        "state": {"values": {"reason": {"text": {"type": "plain_text_input", "value": ""}}}},
    }
    payload = {"type": "view_submission", "user": {"id": "U0ALICE", "username": "alice"}, "view": view}
    body = urlencode({"payload": json.dumps(payload)})
    async with http_server(tmp_path) as (url, _), httpx2.AsyncClient() as http:
        response = await http.post(url, content=body, headers=signed(body))
    assert response.status_code == 200
    assert response.json()["response_action"] == "errors"


async def test_a_click_that_fails_midway_does_not_take_the_server_down(tmp_path: Path) -> None:
    fake = await FakeSlack().start()
    fake.failing["views.open"] = "expired_trigger_id"
    async with http_server(tmp_path, fake) as (url, store), httpx2.AsyncClient() as http:
        request = await pending_request(store)
        reject = urlencode(
            {"payload": json.dumps(click(user_id="U0ALICE", username="alice", action_id="signoff_reject",
                                         request_id=request.id, channel="C0APPROVALS", ts="1.0"))}
        )  # fmt: skip
        assert (await http.post(url, content=reject, headers=signed(reject))).status_code == 200
        await fake.wait_for(lambda: fake.of("chat.postEphemeral"))
        body = approve_body(request.id)
        assert (await http.post(url, content=body, headers=signed(body))).status_code == 200
        final = await decided(store, request.id)
    assert final.status is Status.APPROVED
    assert "click Reject again" in fake.of("chat.postEphemeral")[0].args["text"]


class DatabaseDown(MemoryStore):
    async def claim_once(self, key: str, now: datetime, forget_after: datetime) -> bool:
        raise DatabaseUnavailable("cannot reach the PostgreSQL database: connection refused")


async def test_a_click_that_cannot_be_checked_against_replays_is_refused_and_not_acted_on() -> None:
    """Fail closed: with the database out of reach, a validly signed click is answered 503 (Slack tells the person
    it failed) and is not handed to the interactions, rather than risking a replay."""
    spawned: list[Mapping[str, Any]] = []
    interactions = SlackInteractions(AsyncWebClient(token="xoxb-test"), DatabaseDown(), None, None, None, None)  # type: ignore[arg-type]  # never called
    endpoint = SlackHttpEndpoint(SECRET, interactions, spawned.append)
    body = approve_body("req_x")
    status, content = await endpoint.handle(body.encode(), signed(body))
    assert status == 503 and content is not None and "nothing was recorded" in content["error"]
    assert spawned == []
