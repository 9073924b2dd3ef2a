"""Review finding R1: a Slack click votes as the Slack *username*, which the clicker (or another workspace in a
Slack Connect channel) chooses. Only the Slack user id may say who clicked."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx2

from signoff.notifiers.slack_blocks import APPROVE_ACTION
from signoff.storage import EventKind, Status
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.slack import click
from tests.integration.test_slack_http import POLICY, http_server, signed


def click_as(request_id: str, user_id: str, username: str) -> str:
    payload = click(
        user_id=user_id, username=username, action_id=APPROVE_ACTION, request_id=request_id, channel="C0A", ts="1.0"
    )
    return urlencode({"payload": json.dumps(payload)})


async def test_a_slack_user_named_like_an_approver_cannot_vote_as_them(tmp_path: Path) -> None:
    """POLICY names the approver by Slack id (U0ALICE). Mallory (U0MALLORY) sets her Slack username to "u0alice"
    and clicks Approve: her click must be refused and the request stay pending."""
    async with http_server(tmp_path) as (url, store), httpx2.AsyncClient() as http:
        service = ApprovalService(store, Policy(parse_policy_config(POLICY)))
        request = await service.request_approval(Draft(action="deploy.prod", summary="Ship", payload={"v": 2}))
        body = click_as(request.id, "U0MALLORY", "u0alice")
        response = await http.post(url, content=body, headers=signed(body))
        assert response.status_code == 200
        with anyio.fail_after(15):  # the click is handled in the background: wait for its vote or its refusal
            while True:
                token = await store.change_token()
                kinds = {e.kind for e in await store.request_events(request.id)}
                if kinds & {EventKind.VOTED, EventKind.REFUSED}:
                    break
                await store.wait_for_change(token, 5)
        final = await store.get(request.id)
    assert final is not None
    assert final.status is Status.PENDING, f"U0MALLORY voted as {[v.reviewer for v in final.votes]}"
