"""Review finding R6: approving with changes from the masked view puts each "[redacted]" back by its list index,
not by the item it stood for. With `paths = ["payload.cards.*.number"]` (the docs' own example), a reviewer who
removes the first card from the list approves the *other* card's number at the amount they kept."""

from __future__ import annotations

from pathlib import Path

import httpx2

from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.test_http_auth import ALICE, CONFIG, served

REDACT = '[redact]\npaths = ["payload.cards.*.number"]\n\n'
CARD_A, CARD_B = "4000000000000001", "4000000000000002"


async def test_removing_a_masked_list_item_never_approves_another_items_secret(tmp_path: Path) -> None:
    async with served(tmp_path, REDACT + CONFIG) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config(REDACT + CONFIG)))
            payload = {"cards": [{"number": CARD_A, "amount": 1}, {"number": CARD_B, "amount": 1000}]}
            request = await service.request_approval(Draft(action="charges.split", summary="split", payload=payload))
        finally:
            await store.close()
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with httpx2.AsyncClient(timeout=30) as http:
            shown = (await http.get(f"{base}/api/requests/{request.id}", headers=headers)).json()["payload"]
            assert shown["cards"][1] == {"number": "[redacted]", "amount": 1000}  # what the reviewer sees
            kept = [shown["cards"][1]]  # the reviewer drops the 1-cent line and approves the 1000 charge on card B
            voted = await http.post(
                f"{base}/api/requests/{request.id}/votes",
                json={"verdict": "approve", "approved_payload": {"cards": kept}},
                headers=headers,
            )
            status = (await http.get(f"{base}/api/requests/{request.id}", headers=headers)).json()["status"]
    assert voted.status_code == 400 and "reveal the payload" in voted.json()["error"], voted.text
    assert status == "pending"


async def test_the_answer_to_a_vote_with_changes_masks_what_get_masks(tmp_path: Path) -> None:
    async with served(tmp_path, REDACT + CONFIG) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config(REDACT + CONFIG)))
            payload = {"cards": [{"number": CARD_A, "amount": 1}, {"number": CARD_B, "amount": 1000}]}
            request = await service.request_approval(Draft(action="charges.split", summary="split", payload=payload))
        finally:
            await store.close()
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with httpx2.AsyncClient(timeout=30) as http:
            shown = (await http.get(f"{base}/api/requests/{request.id}", headers=headers)).json()["payload"]
            voted = await http.post(
                f"{base}/api/requests/{request.id}/votes",
                json={"verdict": "approve", "approved_payload": {**shown, "note": "checked"}},
                headers=headers,
            )
    assert voted.status_code == 200, voted.text
    assert voted.json()["approved_payload"] == {**shown, "note": "checked"}  # masked, as GET shows it
    assert CARD_A not in voted.text and CARD_B not in voted.text
