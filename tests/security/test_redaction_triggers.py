"""Review finding R4: `[redact]` masks the payload, but a rule on a masked field quotes the value in its trigger
("payload.card_number exists (was '4111…')"), and the triggers go out unmasked: in the training-data export, the
history export, `review show`, Slack's "why asked", the reviewer API and the console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signoff.notifiers.slack_blocks import request_blocks
from signoff.storage import Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.integration.support import base_env, signoff

CARD = "4111111111111111"
POLICY = """\
[redact]
paths = ["payload.card_number"]

[[rules]]
name = "card payments"
action = "payments.*"
when = [{ path = "payload.card_number", op = "exists", value = true }]
outcome = "review"
"""


@pytest.mark.parametrize(
    "command",
    [("export", "training-data"), ("history", "--format", "jsonl"), ("review", "show")],
    ids=["training-data", "history-jsonl", "review-show"],
)
async def test_a_masked_field_is_not_quoted_by_the_trigger_it_fired(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A request decided before the field was masked keeps the trigger that quotes it (the rule quoted it then):
    every way out masks it all the same, once ``[redact]`` names the field."""
    db, config = tmp_path / "signoff.db", tmp_path / "signoff.toml"
    config.write_text(POLICY)
    store = await SqliteStore.open(db)
    try:
        before = POLICY.split("\n\n", 1)[1]  # the same rule, no [redact] yet
        service = ApprovalService(store, Policy(parse_policy_config(before)))
        draft = Draft(action="payments.charge", summary="charge", payload={"card_number": CARD, "amount": 5})
        request = await service.request_approval(draft)
        assert request.status is Status.PENDING and CARD in request.triggers[0].detail  # the rule quoted it
        await service.vote(request.id, "alice", Verdict.APPROVE, None)
    finally:
        await store.close()
    args = (*command, request.id) if command[0] == "review" else command
    ran = await signoff(base_env(db, SIGNOFF_CONFIG=str(config)), *args)
    assert ran.returncode == 0, ran
    assert "[redacted]" in ran.stdout  # the payload itself is masked
    assert CARD not in ran.stdout, "the masked card number is shown in a trigger"


async def test_the_slack_message_of_a_masked_request_does_not_quote_the_masked_value(tmp_path: Path) -> None:
    """What the outbox worker hands every notifier (``redaction.request``), rendered as the Slack message."""
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(POLICY)))
        draft = Draft(action="payments.charge", summary="charge", payload={"card_number": CARD, "amount": 5})
        request = await service.request_approval(draft)
    finally:
        await store.close()
    shown = service.policy.config.redact.redaction.request(request)
    message = json.dumps([block.to_dict() for block in request_blocks(shown)])
    assert "[redacted]" in message
    assert CARD not in message, "the Slack message quotes the masked card number in 'why asked'"


async def test_a_request_decided_under_redact_keeps_no_masked_value_in_its_triggers(tmp_path: Path) -> None:
    """What the agent, the log line, the webhook and the console's queue read: the stored triggers themselves."""
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(POLICY)))
        draft = Draft(action="payments.charge", summary="charge", payload={"card_number": CARD, "amount": 5})
        request = await service.request_approval(draft)
        stored = await store.get(request.id)
        events = await store.request_events(request.id)
    finally:
        await store.close()
    assert stored is not None and stored.payload["card_number"] == CARD  # the payload itself is kept whole
    details = [t.detail for t in stored.triggers]
    assert details and all(CARD not in d for d in details) and "[redacted]" in details[0], details
    assert CARD not in json.dumps([e.data.get("triggers") for e in events])
