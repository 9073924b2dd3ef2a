"""``[[alerts]]`` in the config file and the ``canary_guard`` rule: a running server raises the alerts its config file
lists (to a real webhook receiver and a real SMTP server), follows an edit of the list, and the guard taking a
canary off raises an alert that names the model, the version and what the guard did; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from mcp import Client

from signoff.notifiers.alerts import WebhookAlerts
from signoff.notifiers.webhook import verify
from signoff.server import alerts
from signoff.server.alerts import AlertSettings, rules_in_force
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.stores import open_alert_store, open_model_store, open_store
from signoff.storage import ChangeKind, Verdict
from signoff.tools.alert_rules import AlertRule, AlertRuleName
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelService, ModelSettings
from signoff.tools.models.telemetry import Report
from tests.fakes.clock import FakeClock
from tests.integration.support import free_port, webhook_receiver

SECRET = "whsec-alert-config"
ONCALL = "oncall@example.com"
RECEIPT_KEY = "k" * 64
WAIT = 60  #: seconds: generous, the machine is shared


class Mailbox:
    """An aiosmtpd handler (it runs in the controller's thread) that keeps subjects and lets a test wait for them."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        with self._changed:
            self.subjects.append(str(message_from_bytes(envelope.content)["Subject"]))
            self._changed.notify_all()
        return "250 OK"

    async def wait_for(self, count: int) -> list[str]:
        def wait() -> list[str]:
            with self._changed:
                assert self._changed.wait_for(lambda: len(self.subjects) >= count, WAIT), self.subjects
                return list(self.subjects)

        return await anyio.to_thread.run_sync(wait)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@dataclass
class Receiver:
    url: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)  #: the ``alert`` object of each alert.* delivery
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT):
            while len(self.alerts) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.alerts


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        headers = request.headers
        assert verify(
            SECRET, headers["X-Signoff-Timestamp"], headers["X-Signoff-Delivery"], raw, headers["X-Signoff-Signature"]
        )
        body = json.loads(raw)
        if str(body["event"]).startswith("alert."):
            found.alerts.append({"event": body["event"], **body["alert"]})
            found.arrived.set()
        return web.Response(status=204)

    async with webhook_receiver(hook) as url:
        found.url = url
        yield found


def server_settings(database: str, tmp_path: Path, config: Path, hook: str, smtp_port: int, **env: str) -> Settings:
    settings = Settings.from_env(
        {
            "SIGNOFF_DB": database,
            "SIGNOFF_CONFIG": str(config),
            "SIGNOFF_RECEIPT_KEY": RECEIPT_KEY,
            "SIGNOFF_WEBHOOK_URL": hook,
            "SIGNOFF_WEBHOOK_SECRET": SECRET,
            "SIGNOFF_SMTP_HOST": "127.0.0.1",
            "SIGNOFF_SMTP_PORT": str(smtp_port),
            "SIGNOFF_SMTP_SECURITY": "none",
            "SIGNOFF_ALERT_EMAIL_TO": ONCALL,
            "SIGNOFF_ALERT_INTERVAL": "0.05",
            **env,
        }
    )
    return dataclasses.replace(settings, db_path=tmp_path / "signoff.db")  # PostgreSQL: no files in $HOME


BACKLOG = """\
[[alerts]]
rule = "pending_backlog"
max_pending = 0
repeat_minutes = 0
"""
ELSEWHERE = """\
# pending_backlog is no longer listed: its alert resolves
[[alerts]]
rule = "oldest_pending"
minutes = 600
"""


async def test_alerts_listed_in_the_config_file_fire_resolve_and_follow_an_edit(
    database: str,
    tmp_path: Path,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    box, port = mailbox
    config = tmp_path / "signoff.toml"
    config.write_text(BACKLOG)
    settings = server_settings(database, tmp_path, config, receiver.url, port)
    caplog.set_level(logging.INFO, logger="signoff.server.alerts")
    async with Client(build_server(settings)) as agent:
        ask = {"action": "db.drop", "summary": "drop the table", "payload": {"table": "users"}}
        made = json.loads((await agent.call_tool("request_approval", ask)).content[0].text)  # type: ignore[union-attr]
        fired = await receiver.wait_for(1)
        assert [(a["event"], a["rule"], a["value"]) for a in fired] == [("alert.firing", "pending_backlog", 1)]
        assert "the threshold is 0" in fired[0]["message"]
        assert await box.wait_for(1) == ["[signoff FIRING] pending_backlog"]

        cancelled = await agent.call_tool("cancel_request", {"request_id": made["request_id"], "reason": "not needed"})
        assert not cancelled.is_error
        resolved = await receiver.wait_for(2)
        assert [(a["event"], a["value"]) for a in resolved[1:]] == [("alert.resolved", 0)]
        assert (await box.wait_for(2))[1] == "[signoff RESOLVED] pending_backlog"

        await agent.call_tool("request_approval", ask)  # a new episode...
        assert (await receiver.wait_for(3))[2]["event"] == "alert.firing"
        config.write_text(ELSEWHERE)  # ...that ends when the file no longer lists the rule (the policy reload)
        dropped = (await receiver.wait_for(4))[3]
        assert (dropped["event"], dropped["rule"]) == ("alert.resolved", "pending_backlog")
        assert "no longer configured" in dropped["message"]
    assert "alerts on: webhook, email; rules: pending_backlog" in caplog.text
    assert "rejection_rate" not in {a["rule"] for a in receiver.alerts}  # the list replaced the defaults

    store = await open_alert_store(settings.db_path, settings.db_url)
    try:
        episodes = await store.episodes()
    finally:
        await store.close()
    assert [(e.rule, e.resolved_at is not None) for e in episodes] == [("pending_backlog", True)] * 2


async def test_the_environment_wins_over_the_file_and_says_what_it_cannot_do(
    tmp_path: Path, receiver: Receiver, mailbox: tuple[Mailbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(BACKLOG.replace("pending_backlog", "oldest_pending").replace("max_pending = 0", "minutes = 5"))
    env = {"SIGNOFF_ALERT_MAX_PENDING": "500", "SIGNOFF_ALERT_REPEAT_MINUTES": "15"}
    settings = server_settings(str(tmp_path / "signoff.db"), tmp_path, config, receiver.url, mailbox[1], **env)
    listed = (AlertRule(rule=AlertRuleName.PENDING_BACKLOG, max_pending=0, repeat_minutes=60),)
    [backlog] = rules_in_force(settings.alerts, listed)
    assert (backlog.max_pending, backlog.repeat_minutes) == (500, 15)  # SIGNOFF_ALERT_MAX_PENDING, _REPEAT_MINUTES
    async with Client(build_server(settings)):
        pass
    assert "SIGNOFF_ALERT_MAX_PENDING is set, but the config file's [[alerts]] do not list its rule" in caplog.text


async def test_the_canary_guard_acting_raises_an_alert_naming_the_model_version_and_action(
    database: str, tmp_path: Path, receiver: Receiver
) -> None:
    url = database if database.startswith("postgresql://") else None
    settings = Settings(db_path=tmp_path / "signoff.db", db_url=url)
    clock = FakeClock()
    store = await open_store(settings)
    model_store = await open_model_store(settings.db_path, settings.db_url)
    process = await open_alert_store(settings.db_path, settings.db_url)
    try:
        approvals = ApprovalService(store, clock=clock)
        models = ModelService(model_store, approvals, settings=ModelSettings(guard_min_samples=100), seed=2)
        for version in ("v1", "v2"):
            await models.register("fraud", version, f"http://fraud/{version}", agent_id="bot")
        promoted = await models.promote("fraud", "v1", "first production", agent_id="bot")
        await approvals.vote(promoted.change.request_id or "", "alice", Verdict.APPROVE, "ok")
        await models.settle()
        canary = await models.set_traffic("fraud", {"v1": 90, "v2": 10}, "try v2", agent_id="bot")
        await approvals.vote(canary.change.request_id or "", "alice", Verdict.APPROVE, "ok")
        await models.settle()

        rules = rules_in_force(AlertSettings(), (AlertRule(rule=AlertRuleName.CANARY_GUARD, minutes=30),))
        assert await alerts.evaluate(process, AlertSettings(), ["webhook"], clock, rules) == []  # nothing done yet

        await models.telemetry.record(
            [Report(model="fraud", version="v1", latency_ms=50, ok=True)] * 900
            + [Report(model="fraud", version="v2", latency_ms=50, ok=i % 3 != 0) for i in range(300)]
        )
        (acted,) = await models.guard_once()
        assert acted.kind is ChangeKind.GUARD

        assert await alerts.evaluate(process, AlertSettings(), ["webhook"], clock, rules) == ["canary_guard firing"]
        assert await alerts.evaluate(process, AlertSettings(), ["webhook"], clock, rules) == []  # one episode
        assert await alerts.deliver(process, [WebhookAlerts(receiver.url, SECRET)], AlertSettings(), clock) == 1
        [alert] = receiver.alerts
        assert (alert["event"], alert["rule"], alert["value"]) == ("alert.firing", "canary_guard", 1)
        message = alert["message"]
        assert "model fraud: the canary guard took canary v2 off and put its traffic back on v1" in message
        assert "canary v2 failed its analysis against v1" in message and f"model change {acted.seq}" in message
        assert await model_store.guard_action_totals() == {"fraud": 1}  # signoff_canary_guard_actions_total

        clock.advance(31 * 60)  # the guard has not acted for longer than the rule's 30 minutes
        assert await alerts.evaluate(process, AlertSettings(), ["webhook"], clock, rules) == ["canary_guard resolved"]
        await alerts.deliver(process, [WebhookAlerts(receiver.url, SECRET)], AlertSettings(), clock)
        assert [a["event"] for a in receiver.alerts] == ["alert.firing", "alert.resolved"]
        assert receiver.alerts[1]["message"] == "the canary guard has not acted in the last 30 minutes"
        events = [e for e in await store.request_events("alert:canary_guard")]
        assert [e.kind.value for e in events] == ["alert_fired", "alert_resolved"]
    finally:
        await process.close()
        await model_store.close()
        await store.close()
