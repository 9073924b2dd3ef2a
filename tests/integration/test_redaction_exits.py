"""[redact] masks payload fields everywhere a payload leaves the database (Slack, the webhook, the training-data
and history exports), while the stored payload, the audit chain and the receipts keep binding the full one."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from signoff.notifiers import FanOut, SlackNotifier, WebhookNotifier, web_client
from signoff.server.workers import deliver_due
from signoff.storage import EventKind, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.storage.canonical import payload_sha256
from signoff.tools.approvals import receipts
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.slack import FakeSlack
from tests.integration.support import base_env, signoff, webhook_receiver

CONFIG = '[redact]\npaths = ["payload.ssn", "payload.*.card_number"]\n'
SSN, CARD = "123-45-6789", "4111111111111111"
PAYLOAD = {"ssn": SSN, "card": {"card_number": CARD, "holder": "Ann Lee"}, "amount": 5}
SECRETS = (SSN, CARD, "6789", "1111")


def shows_no_secret(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


async def test_slack_and_the_webhook_get_the_masked_payload_and_the_chain_keeps_the_full_one(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=204)

    fake = await FakeSlack().start()
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        async with webhook_receiver(hook) as url:
            service = ApprovalService(store, Policy(parse_policy_config(CONFIG)))
            slack = SlackNotifier(web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), store, "#a")
            notifier = FanOut(slack, WebhookNotifier(url, "whsec-x"))
            made = await service.request_approval(Draft(action="refunds.issue", summary="refund", payload=PAYLOAD))
            await deliver_due(service, notifier)
            await service.vote(made.id, "alice", Verdict.APPROVE, None, approved_payload={**PAYLOAD, "amount": 4})
            await deliver_due(service, notifier)  # the message is updated, the webhook told
        slack_calls = [json.dumps(c.args) for c in fake.calls if c.method.startswith("chat.")]
        assert len(slack_calls) == 2 and len(bodies) == 2
        for text in [*slack_calls, *(b.decode() for b in bodies)]:
            assert shows_no_secret(text) and "[redacted]" in text and "Ann Lee" in text, text
        sent = json.loads(bodies[0])["request"]
        assert sent["payload_sha256"] is None  # a digest of the full payload would let the receiver test guesses

        stored = await store.get(made.id)
        assert stored is not None and stored.payload_sha256 == payload_sha256("refunds.issue", PAYLOAD)
        assert stored.payload == PAYLOAD and stored.approved_payload == {**PAYLOAD, "amount": 4}
        created = next(e for e in await store.request_events(made.id) if e.kind is EventKind.CREATED)
        assert created.data["payload"] == PAYLOAD
        assert (await verify_store(store)).ok
        key = b"k" * 32
        receipt = receipts.issue(key, stored)
        assert receipt is not None
        approved = {**PAYLOAD, "amount": 4}
        assert receipts.check(key, receipt, "refunds.issue", approved, now=service.clock.now()) is None
        masked = {**approved, "ssn": "[redacted]"}
        assert receipts.check(key, receipt, "refunds.issue", masked, now=service.clock.now()) is not None
    finally:
        await store.close()
        await fake.stop()


async def test_the_exports_mask_the_payload(tmp_path: Path) -> None:
    db, config = tmp_path / "signoff.db", tmp_path / "signoff.toml"
    config.write_text(CONFIG)
    store = await SqliteStore.open(db)
    try:
        service = ApprovalService(store, Policy(parse_policy_config(CONFIG)))
        made = await service.request_approval(Draft(action="refunds.issue", summary="refund", payload=PAYLOAD))
        await service.vote(made.id, "alice", Verdict.APPROVE, "ok", approved_payload={**PAYLOAD, "amount": 4})
    finally:
        await store.close()
    env = base_env(db, SIGNOFF_CONFIG=str(config))
    for args in (
        ("export", "training-data"),
        ("export", "training-data", "--format", "csv"),
        ("history", "--format", "jsonl"),
        ("history", "--format", "csv"),
    ):
        ran = await signoff(env, *args)
        assert ran.returncode == 0, ran
        assert shows_no_secret(ran.stdout) and "[redacted]" in ran.stdout and "Ann Lee" in ran.stdout, ran
    record = json.loads((await signoff(env, "export", "training-data")).stdout)
    assert record["payload"]["ssn"] == "[redacted]" and record["approved_payload"]["amount"] == 4
    assert record["payload_sha256"] is None  # withheld with a value masked (the stored row keeps it)
    history = json.loads((await signoff(env, "history", "--format", "jsonl")).stdout)
    assert history["payload"]["card"]["card_number"] == "[redacted]"
    shown = await signoff(env, "review", "show", made.id)
    assert shown.returncode == 0 and shows_no_secret(shown.stdout) and "[redacted]" in shown.stdout, shown
    revealed = await signoff(env, "review", "show", made.id, "--reveal")
    assert SSN in revealed.stdout and CARD in revealed.stdout
    without = await signoff(base_env(db), "export", "training-data")  # no [redact]: the payload as asked
    assert SSN in without.stdout
    assert json.loads(without.stdout)["payload_sha256"] == payload_sha256("refunds.issue", PAYLOAD)
