"""Review finding F1: a reviewer's approved payload went out unmasked where `[redact]` masked it elsewhere: in
`GET /api/requests` (while `GET /api/requests/{id}` masked it) and, with `agents_see_all`, in another agent's
get_status and list_requests. Every list and every view of someone else's request now masks it as the payload is
masked; only the agent that asked (it must act with the approved values) sees them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2

from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.test_http_auth import AGENT_A, AGENT_B, ALICE, CONFIG, agent, call, served

REDACT = '[redact]\npaths = ["payload.ssn"]\n\n'
SSN = "123-45-6789"


async def approved_with_changes(tmp_path: Path, base: str, config: str) -> tuple[str, list[str]]:
    """billing-bot's request, approved by alice over the reviewer API with a changed ``x`` (the SSN left masked):
    the request id, and the answers the reviewer API gave alice (the vote's, then the lists')."""
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(config)))
        draft = Draft(action="hr.update", summary="s", payload={"ssn": SSN, "x": 1}, agent_id="billing-bot")
        request = await service.request_approval(draft)
    finally:
        await store.close()
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
        shown = (await api.get(f"/api/requests/{request.id}")).json()["payload"]
        assert shown == {"ssn": "[redacted]", "x": 1}
        voted = await api.post(
            f"/api/requests/{request.id}/votes", json={"verdict": "approve", "approved_payload": {**shown, "x": 2}}
        )
        assert voted.status_code == 200, voted.text
        answers = [voted.text]
        for status in ("approved", "all"):
            answers.append((await api.get("/api/requests", params={"status": status})).text)
    return request.id, answers


async def test_the_reviewer_api_lists_the_approved_payload_masked(tmp_path: Path) -> None:
    async with served(tmp_path, REDACT + CONFIG) as base:
        request_id, answers = await approved_with_changes(tmp_path, base, REDACT + CONFIG)
    for answer in answers:
        assert SSN not in answer, answer
    listed = [item for item in json.loads(answers[1])["items"] if item["request_id"] == request_id]
    assert listed and listed[0]["approved_payload"] == {"ssn": "[redacted]", "x": 2}


async def test_another_agent_sees_the_approved_payload_masked_and_the_agent_that_asked_sees_it_whole(
    tmp_path: Path,
) -> None:
    config = REDACT + "[auth]\nagents_see_all = true\n" + CONFIG
    async with served(tmp_path, config) as base:
        request_id, _ = await approved_with_changes(tmp_path, base, config)
        async with agent(base, AGENT_B) as other:  # etl-bot, not the requester
            failed, status = await call(other, "get_status", request_id=request_id)
            assert not failed, status
            failed, listed = await call(other, "list_requests", status="approved")
            assert not failed, listed
        async with agent(base, AGENT_A) as asker:  # billing-bot: it acts with the approved payload
            failed, own = await call(asker, "get_status", request_id=request_id)
            assert not failed, own
    theirs: list[dict[str, Any]] = [status, *(i for i in listed["items"] if i["request_id"] == request_id)]
    assert len(theirs) == 2
    for seen in theirs:
        assert seen["approved_payload"] == {"ssn": "[redacted]", "x": 2}
        assert seen["payload_sha256"] is None and seen["receipt"] is None  # either would let etl-bot test guesses
        assert SSN not in json.dumps(seen)
    assert own["approved_payload"] == {"ssn": SSN, "x": 2} and own["receipt"] is not None


async def test_another_agent_gets_no_receipt_and_cannot_use_the_one_the_asker_got(tmp_path: Path) -> None:
    """With agents_see_all, etl-bot sees billing-bot's approval (nothing masked here) but may not act on it: no
    receipt, not actionable, and billing-bot's own receipt, shown to it by etl-bot, is refused for etl-bot."""
    config = "[auth]\nagents_see_all = true\n" + CONFIG
    async with served(tmp_path, config) as base:
        async with agent(base, AGENT_A) as asker:
            failed, made = await call(
                asker,
                "request_approval",
                action="refunds.issue",
                summary="refund",
                payload={"amount": 5},
                confidence=0.99,
            )
            assert not failed and made["status"] == "approved" and made["actionable"], made
        async with agent(base, AGENT_B) as other:
            failed, seen = await call(other, "get_status", request_id=made["request_id"])
            assert not failed, seen
            failed, used = await call(
                other, "verify_receipt", receipt=made["receipt"], action="refunds.issue", payload={"amount": 5}
            )
            assert not failed, used
        async with agent(base, AGENT_A) as asker:
            failed, own = await call(
                asker, "verify_receipt", receipt=made["receipt"], action="refunds.issue", payload={"amount": 5}
            )
            assert not failed, own
    assert seen["status"] == "approved" and seen["receipt"] is None and not seen["actionable"], seen
    assert "not for you" in seen["message"]
    assert used["valid"] is False and "acts only on its own approvals" in used["reason"], used
    assert own["valid"] is True, own
