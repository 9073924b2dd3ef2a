"""Review finding R2: hostile bodies on the reviewer API (POST /api/requests/{id}/votes) get a 500, not a clear
error: a deeply nested body, and a lone surrogate in the comment (valid JSON, not storable as UTF-8)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from signoff.storage import Status
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.test_http_auth import ALICE, CONFIG, served

DEEP = b'{"verdict":"approve","approved_payload":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
SURROGATE = b'{"verdict":"reject","comment":"no \\ud800 way"}'


@pytest.mark.parametrize("body", [DEEP, SURROGATE], ids=["deeply-nested", "lone-surrogate-comment"])
async def test_a_hostile_vote_body_is_a_clear_400_and_changes_nothing(tmp_path: Path, body: bytes) -> None:
    async with served(tmp_path, CONFIG) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config("")))
            request = await service.request_approval(Draft(action="x.y", summary="s", payload={"a": 0}))
            async with httpx2.AsyncClient(timeout=60) as http:
                response = await http.post(
                    f"{base}/api/requests/{request.id}/votes",
                    content=body,
                    headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
                )
            after = await store.get(request.id)
        finally:
            await store.close()
    assert response.status_code == 400, response.text[:200]
    assert "error" in response.json()
    assert after is not None and after.status is Status.PENDING and after.votes == ()
