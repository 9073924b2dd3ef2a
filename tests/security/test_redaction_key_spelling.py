"""Review finding F3: `[redact]` matched payload keys exactly while the policy's rules fold them (case, surrounding
spaces, zero-width characters, Unicode form: ``storage.folding.fold_key``), so a key spelt "SSN", "ssn " or
"s\\u200bsn" met the ``payload.ssn`` rule (failing closed) but went out unmasked. It is masked now under any spelling
the rules read as ``ssn``, and a masked value is still kept as asked when a reviewer approves with changes."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.redaction import MASK, Redaction
from signoff.tools.approvals.conditions import Unclear, resolve
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.test_http_auth import ALICE, CONFIG, served

RULES = """\
[redact]
paths = ["payload.ssn", "payload.*.Card_Number"]

[[rules]]
name = "ssn-needs-review"
action = "hr.*"
outcome = "review"
when = [{ path = "payload.ssn", op = "regex", value = "^9" }]

"""
SSN = "987-65-4321"
SPELLINGS = ("SSN", "ssn ", " Ssn", "s\u200bsn", "\uff33\uff33\uff2e", "ssn\u200e")  # fullwidth SSN; a bidi mark


@pytest.mark.parametrize("key", SPELLINGS)
def test_a_key_the_rules_read_as_a_masked_path_is_masked(key: str) -> None:
    as_rules_read = PolicyInput(
        action="hr.update",
        summary="s",
        payload={key: SSN},
        confidence=None,
        flags=(),
        agent_id=None,
        expires_in_seconds=None,
    )
    assert isinstance(resolve(as_rules_read, "payload.ssn"), Unclear)  # the rules take it for ssn (fail closed)
    redaction = Redaction.of(["payload.ssn", "payload.*.Card_Number"])
    assert redaction.payload({key: SSN, "other": 1}) == {key: MASK, "other": 1}
    assert redaction.payload({"card": {"CARD_NUMBER ": "4111"}}) == {"card": {"CARD_NUMBER ": MASK}}
    assert redaction.restore({key: MASK, "other": 2}, {key: SSN, "other": 1}) == {key: SSN, "other": 2}


async def test_the_reviewer_api_masks_a_key_spelt_otherwise(tmp_path: Path) -> None:
    config = RULES + CONFIG
    async with served(tmp_path, config) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config(config)))
            draft = Draft(action="hr.update", summary="s", payload={"SSN": SSN, "x": 1}, confidence=0.99)
            request = await service.request_approval(draft)
        finally:
            await store.close()
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
            one = await api.get(f"/api/requests/{request.id}")
            listed = await api.get("/api/requests")
    assert request.status.value == "pending"  # the rule judged "SSN" as ssn
    assert one.json()["payload"] == {"SSN": MASK, "x": 1}
    assert SSN not in one.text and SSN not in listed.text
