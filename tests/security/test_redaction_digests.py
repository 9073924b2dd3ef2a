"""Review finding F5: `[redact]` masked a field, but every way out that masked it also showed the unsalted SHA-256 of
the full payload (the webhook body, the Slack footer's 12 hex digits, the history and training-data exports, the
reviewer API, the console, `review show`). With the other fields shown, a low-entropy masked value (a 6-digit PIN)
is recovered offline by hashing the million candidates. Whatever shows a masked payload now shows no digest of it
(nor of the approved payload, nor a receipt binding one); the stored row and the audit chain keep the true one."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from signoff.notifiers import FanOut, SlackNotifier, WebhookNotifier, web_client
from signoff.server.workers import deliver_due
from signoff.storage import Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.canonical import payload_sha256
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.browser.support import http_session
from tests.fakes.slack import FakeSlack
from tests.integration.support import base_env, signoff, webhook_receiver
from tests.integration.test_http_auth import ALICE, CONFIG, served

REDACT = '[redact]\npaths = ["payload.pin"]\n\n'
ACTION = "bank.reset_pin"
PIN = "482913"  # six digits: a million guesses, a second of hashing
ASKED = {"account": "acct-7", "pin": PIN}
APPROVED = {"account": "acct-8", "pin": PIN}  # a reviewer changed the account, left the PIN as asked
PLAIN = {"account": "acct-9", "note": "no PIN here"}  # nothing masked: its digest is shown as before
DIGESTS = (payload_sha256(ACTION, ASKED), payload_sha256(ACTION, APPROVED))


def leaks(text: str) -> list[str]:
    """What in ``text`` gives the PIN away: the PIN itself, or any 12 hex digits of a digest of a payload holding
    it (Slack showed 12; the others all 64)."""
    return [s for s in (PIN, *(d[i : i + 12] for d in DIGESTS for i in range(64 - 11))) if s in text]


async def make(store: SqliteStore, config: str) -> tuple[ApprovalService, str, str]:
    """A request with a PIN, approved with changes (the PIN left masked: kept as asked), and one without."""
    service = ApprovalService(store, Policy(parse_policy_config(config)))
    masked = await service.request_approval(Draft(action=ACTION, summary="reset", payload=ASKED))
    plain = await service.request_approval(Draft(action=ACTION, summary="plain", payload=PLAIN))
    redaction = service.policy.config.redact.redaction
    edited = {**redaction.payload(ASKED), "account": "acct-8"}
    approved = redaction.restore(edited, ASKED)
    decided = await service.vote(masked.id, "alice", Verdict.APPROVE, None, approved_payload=approved)
    assert decided.status is Status.APPROVED and decided.approved_payload == APPROVED
    return service, masked.id, plain.id


async def test_the_webhook_and_slack_show_no_digest_of_a_masked_payload(tmp_path: Path) -> None:
    bodies: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(json.loads(await request.read())["request"])
        return web.Response(status=204)

    fake = await FakeSlack().start()
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        async with webhook_receiver(hook) as url:
            service, masked, plain = await make(store, REDACT)
            slack = SlackNotifier(web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False), store, "#approvals")
            while await deliver_due(service, FanOut(slack, WebhookNotifier(url, "whsec-x"))):
                pass
        stored = await store.get(masked)
    finally:
        await store.close()
        await fake.stop()
    assert stored is not None and stored.payload_sha256 == DIGESTS[0]  # the row keeps the true digest
    sent = {str(b["request_id"]): b for b in bodies}
    assert sent[masked]["payload"] == {"account": "acct-7", "pin": "[redacted]"}
    assert sent[masked]["payload_sha256"] is None
    assert sent[plain]["payload_sha256"] == payload_sha256(ACTION, PLAIN)
    assert not leaks(json.dumps(bodies)), leaks(json.dumps(bodies))
    messages = [json.dumps(c.args) for c in fake.calls if c.method in ("chat.postMessage", "chat.update")]
    of_masked, of_plain = [m for m in messages if masked in m], [m for m in messages if plain in m]
    assert of_masked and all("payload sha256 withheld" in m and "[redacted]" in m for m in of_masked)
    assert of_plain and all(payload_sha256(ACTION, PLAIN)[:12] in m for m in of_plain)  # nothing masked: as before
    every_call = json.dumps([c.args for c in fake.calls])
    assert not leaks(every_call), leaks(every_call)


async def test_the_exports_and_review_show_show_no_digest_or_receipt_of_a_masked_payload(tmp_path: Path) -> None:
    db, config = tmp_path / "signoff.db", tmp_path / "signoff.toml"
    config.write_text(REDACT)
    store = await SqliteStore.open(db)
    try:
        _, masked, plain = await make(store, REDACT)
    finally:
        await store.close()
    env = base_env(db, SIGNOFF_CONFIG=str(config), SIGNOFF_RECEIPT_KEY="k" * 64)
    outputs: dict[tuple[str, ...], str] = {}
    for args in (
        ("history", "--format", "jsonl"),
        ("history", "--format", "csv"),
        ("history", "--format", "json"),
        ("export", "training-data"),
        ("export", "training-data", "--format", "csv"),
        ("review", "show", masked),
        ("review", "show", masked, "--json"),
        ("review", "list", "--json"),
    ):
        ran = await signoff(env, *args)
        assert ran.returncode == 0, ran
        assert not leaks(ran.stdout), (args, leaks(ran.stdout))
        outputs[args] = ran.stdout
    history = {r["request_id"]: r for r in map(json.loads, outputs["history", "--format", "jsonl"].splitlines())}
    assert history[masked]["payload"]["pin"] == "[redacted]"
    assert history[masked]["payload_sha256"] is None and history[masked]["receipt"] is None
    assert history[plain]["payload_sha256"] == payload_sha256(ACTION, PLAIN)  # nothing masked: as before
    training = json.loads(outputs[("export", "training-data")])
    assert training["request_id"] == masked and training["payload_sha256"] is None
    assert "sha256 withheld" in outputs["review", "show", masked]
    assert json.loads(outputs["review", "show", masked, "--json"])[0]["payload_sha256"] is None
    revealed = await signoff(env, "review", "show", masked, "--reveal")  # who may read the database may see all
    assert PIN in revealed.stdout and DIGESTS[0] in revealed.stdout
    verified = await signoff(env, "audit", "verify")  # the chain keeps the true digests: unchanged
    assert verified.returncode == 0, verified


async def test_the_reviewer_api_and_the_console_show_no_digest_of_a_masked_payload(tmp_path: Path) -> None:
    config = REDACT + CONFIG
    async with served(tmp_path, config) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            _, masked, plain = await make(store, config)
        finally:
            await store.close()
        async with http_session(base, ALICE) as (http, _):
            bearer = {"Authorization": f"Bearer {ALICE}"}
            one = (await http.get(f"/api/requests/{masked}", headers=bearer)).json()
            listed = (await http.get("/api/requests", params={"status": "all"}, headers=bearer)).text
            revealed = (await http.get(f"/api/requests/{masked}", params={"reveal": "1"}, headers=bearer)).json()
            other = (await http.get(f"/api/requests/{plain}", headers=bearer)).json()
            page = (await http.get(f"/requests/{masked}")).text
            exported = [(await http.get(f"/history/export.{kind}")).text for kind in ("jsonl", "csv")]
    assert one["payload"]["pin"] == "[redacted]" and one["approved_payload"]["pin"] == "[redacted]"
    assert one["payload_sha256"] is None and one["receipt"] is None
    assert all(e["data"].get(k) is None for e in one["events"] for k in ("payload_sha256", "approved_payload_sha256"))
    for text in (json.dumps(one), listed, page, *exported):
        assert not leaks(text), leaks(text)
    assert "withheld while fields are masked" in page
    assert revealed["payload"] == ASKED and revealed["payload_sha256"] == DIGESTS[0]  # asked for: all of it
    assert other["payload_sha256"] == payload_sha256(ACTION, PLAIN)
