"""A key a lookup file lists in another spelling is not a clear "not listed": ``acct-9``, ``"ACCT-9 "``,
``ACCT<zero-width space>-9`` or the full-width letters for a deny list's ``ACCT-9`` (the system that pays may read
them alike) goes to a person, saying which listed key it resembles. Rules read payload keys under every spelling;
a lookup's key value was matched byte for byte, so respelling a sanctioned account got a transfer approved by the
policy (review R8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signoff.storage import Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.trusted import TrustedData

RESPELT = ["acct-9", "ACCT-9 ", "ACCT\u200b-9", "\uff21\uff23\uff23\uff34-9"]


DENY = """[[rules]]
name = "sanctioned account"
action = "payments.*"
when = [{ path = "payload.to", op = "exists", lookup = "accounts", value = true }]
outcome = "review"
"""


def service(folder: Path) -> ApprovalService:
    (folder / "accounts.json").write_text(json.dumps({"ACCT-9": {"reason": "listed"}, "ACCT-10": {}}))
    config = f'[[lookups]]\nname = "accounts"\nfile = "accounts.json"\n\n{DENY}'
    return ApprovalService(MemoryStore(), Policy(parse_policy_config(config)), trusted=TrustedData(folder))


def pay(to: str) -> Draft:
    return Draft(action="payments.pay", summary="Pay", payload={"to": to, "amount": 5}, confidence=0.99)


@pytest.mark.parametrize("to", RESPELT)
async def test_a_respelt_listed_key_meets_the_deny_list(tmp_path: Path, to: str) -> None:
    signoff = service(tmp_path)
    assert (await signoff.request_approval(pay("ACCT-9"))).status is Status.PENDING
    assert (await signoff.request_approval(pay("ACCT-11"))).status is Status.APPROVED  # not listed in any spelling
    respelt = await signoff.request_approval(pay(to))
    assert respelt.status is Status.PENDING
    assert any('"ACCT-9" is' in t.detail and "differ only in case" in t.detail for t in respelt.triggers)
