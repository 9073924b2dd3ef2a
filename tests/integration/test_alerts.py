"""Built-in alerts: a burst of rejections and a backlog each send one "firing" and one "resolved" message to a
(fake) Slack, a real webhook receiver and a real SMTP server (aiosmtpd), however many processes evaluate them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from mcp import Client

from signoff.notifiers import DeliveryFailed, DeliveryRefused, web_client
from signoff.notifiers.alerts import AlertSender, EmailAlerts, SlackAlerts, WebhookAlerts
from signoff.notifiers.email import EmailSender, SmtpSecurity, SmtpSettings
from signoff.notifiers.webhook import verify
from signoff.server import alerts
from signoff.server.alerts import AlertSettings
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.server.stores import open_alert_store, open_store
from signoff.server.workers import deliver_due
from signoff.storage import Store, Verdict
from signoff.storage.alerts import AlertMessage, Alerts
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.fakes.slack import FakeSlack
from tests.integration.support import base_env, free_port, signoff, webhook_receiver

SECRET = "whsec-alerts"
ONCALL = "oncall@example.com"


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content)))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for _, m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@dataclass
class Hooks:
    url: str = ""
    received: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    status: int = 204
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[str]:
        return [str(body["event"]) for body, _ in self.received if str(body["event"]).startswith("alert.")]


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    found = Hooks()

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        at, delivery = headers["X-Signoff-Timestamp"], headers["X-Signoff-Delivery"]
        assert verify(SECRET, at, delivery, raw, headers["X-Signoff-Signature"])
        found.received.append((json.loads(raw), headers))
        found.arrived.set()
        return web.Response(status=found.status)

    async with webhook_receiver(hook) as url:
        found.url = url
        yield found


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack(channels={"#ops": "C0OPS"}).start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The database the processes share: an SQLite file, or a PostgreSQL database."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return Settings(db_path=tmp_path / "signoff.db", db_url=url)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await open_store(settings)
    try:
        yield opened
    finally:
        await opened.close()


OpenAlerts = Callable[[], Awaitable[Alerts]]


@pytest.fixture
def open_alerts(settings: Settings) -> OpenAlerts:
    """Another process's alert store on the same database."""
    return lambda: open_alert_store(settings.db_path, settings.db_url)


def targets(slack: FakeSlack, hooks: Hooks, smtp_port: int) -> list[AlertSender]:
    email = SmtpSettings(host="127.0.0.1", port=smtp_port, security=SmtpSecurity.NONE, recipients=(ONCALL,))
    return [
        SlackAlerts(web_client("xoxb-test", slack.api_url, wait_on_rate_limit=False), "#ops"),
        WebhookAlerts(hooks.url, SECRET),
        EmailAlerts(EmailSender(email)),
    ]


async def ask(service: ApprovalService, n: int) -> list[str]:
    """``n`` requests that wait for people (no confidence, no config: the default outcome is review)."""
    ids = []
    for i in range(n):
        made = await service.request_approval(Draft(action="payments.transfer", summary=f"pay {i}", payload={"n": i}))
        ids.append(made.id)
    return ids


def slack_texts(slack: FakeSlack) -> list[str]:
    return [str(c.args["text"]) for c in slack.of("chat.postMessage")]


async def test_a_burst_of_rejections_fires_once_and_resolves_once_across_processes(
    tmp_path: Path, store: Store, open_alerts: OpenAlerts, slack: FakeSlack, hooks: Hooks, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings(rejection_min_decisions=20)
    senders = targets(slack, hooks, port)
    names = [s.name for s in senders]
    ids = await ask(service, 20)
    for request_id in ids[:19]:  # 1 of 20 rejected: 5 %, not above the threshold
        await service.vote(request_id, "alice", Verdict.APPROVE, None)
    await service.vote(ids[19], "alice", Verdict.REJECT, "wrong account")
    # two processes on one database: each evaluates with its own connections
    first, second = await open_alerts(), await open_alerts()
    try:
        assert await alerts.evaluate(first, settings, names, clock) == []
        await service.vote((await ask(service, 1))[0], "bob", Verdict.REJECT, "again")  # 2 of 21: 9.5 %

        changes: list[str] = []

        async def evaluate(process: Alerts) -> None:
            changes.extend(await alerts.evaluate(process, settings, names, clock))

        async with anyio.create_task_group() as tg:
            for process in (first, second, first, second):
                tg.start_soon(evaluate, process)
        assert changes == ["rejection_rate firing"]
        for process in (first, second):
            await alerts.deliver(process, senders, settings, clock)
        await alerts.deliver(first, senders, settings, clock)  # nothing left to send

        [posted] = slack_texts(slack)
        assert "[signoff FIRING] rejection_rate" in posted and "2 of the 21" in posted
        assert slack.of("chat.postMessage")[0].args["channel"] == "#ops"
        assert hooks.events() == ["alert.firing"]
        body, headers = hooks.received[0]
        assert body["alert"]["rule"] == "rejection_rate" and body["alert"]["value"] == pytest.approx(2 / 21)
        assert headers["X-Signoff-Delivery"].startswith("alert:")
        assert inbox.subjects() == ["[signoff FIRING] rejection_rate"]
        envelope, message = inbox.messages[0]
        assert envelope.rcpt_tos == [ONCALL]
        assert "2 of the 21 requests" in message.get_payload()

        # still rejecting: nothing more is sent while the episode lasts
        await service.vote((await ask(service, 1))[0], "bob", Verdict.REJECT, "and again")
        assert await alerts.evaluate(second, settings, names, clock) == []

        clock.advance(3601)  # the decisions leave the one-hour window
        async with anyio.create_task_group() as tg:
            for process in (first, second):
                tg.start_soon(evaluate, process)
        assert changes == ["rejection_rate firing", "rejection_rate resolved"]
        for process in (second, first):
            await alerts.deliver(process, senders, settings, clock)

        assert [t.split(" rejection_rate")[0] for t in slack_texts(slack)] == [
            ":rotating_light: [signoff FIRING]",
            ":white_check_mark: [signoff RESOLVED]",
        ]
        assert hooks.events() == ["alert.firing", "alert.resolved"]
        assert inbox.subjects() == ["[signoff FIRING] rejection_rate", "[signoff RESOLVED] rejection_rate"]
        [episode] = await first.episodes()
        assert episode.rule == "rejection_rate" and episode.resolved_at == clock.now()
        assert (episode.undelivered, episode.dead) == (0, 0)
    finally:
        await first.close()
        await second.close()


async def test_a_backlog_over_the_limit_fires_and_resolves_when_it_drains(
    tmp_path: Path, store: Store, open_alerts: OpenAlerts, slack: FakeSlack, hooks: Hooks, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings()  # the defaults: more than 100 pending
    senders = targets(slack, hooks, port)
    names = [s.name for s in senders]
    process = await open_alerts()
    try:
        ids = await ask(service, 100)
        assert await alerts.evaluate(process, settings, names, clock) == []  # 100 is not above 100
        ids += await ask(service, 1)
        assert await alerts.evaluate(process, settings, names, clock) == ["pending_backlog firing"]
        assert await alerts.evaluate(process, settings, names, clock) == []
        await alerts.deliver(process, senders, settings, clock)
        assert "101 requests are waiting" in slack_texts(slack)[0]
        await service.vote(ids[0], "alice", Verdict.APPROVE, None)
        assert await alerts.evaluate(process, settings, names, clock) == ["pending_backlog resolved"]
        await alerts.deliver(process, senders, settings, clock)
        assert hooks.events() == ["alert.firing", "alert.resolved"]
        assert inbox.subjects() == ["[signoff FIRING] pending_backlog", "[signoff RESOLVED] pending_backlog"]
        assert len(slack_texts(slack)) == 2
        await ask(service, 1)
        assert await alerts.evaluate(process, settings, names, clock) == ["pending_backlog firing"]  # a new episode
    finally:
        await process.close()

    if not isinstance(store, SqliteStore):
        return  # `signoff alerts` reads an SQLite file
    env = base_env(tmp_path / "signoff.db")
    listed = await signoff(env, "alerts")
    assert listed.returncode == 0, listed
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "RULE", "STATE"]
    assert [line.split()[1:3] for line in lines[1:]] == [["pending_backlog", "FIRING"], ["pending_backlog", "resolved"]]
    shown = json.loads((await signoff(env, "alerts", "--json")).stdout)["alerts"]
    assert [(a["rule"], a["state"], a["fired_value"], a["messages_waiting"]) for a in shown] == [
        ("pending_backlog", "firing", 101, 3),
        ("pending_backlog", "resolved", 101, 0),
    ]


class Flaky:
    """A target that fails until told to work, recording what it was sent."""

    name = "webhook"

    def __init__(self) -> None:
        self.working = False
        self.sent: list[AlertMessage] = []

    async def send(self, alert: AlertMessage) -> None:
        if not self.working:
            raise DeliveryFailed("the receiver is down", retry_after=10)
        self.sent.append(alert)


async def test_a_message_queued_by_a_process_that_died_is_sent_by_another_and_retried_until_it_gets_through(
    store: Store, open_alerts: OpenAlerts
) -> None:
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings(max_pending=0)
    flaky = Flaky()
    dying = await open_alerts()
    await ask(service, 1)
    assert await alerts.evaluate(dying, settings, ["webhook"], clock) == ["pending_backlog firing"]
    await dying.close()  # it queued the message, then stopped before sending anything

    survivor = await open_alerts()
    try:
        assert await alerts.evaluate(survivor, settings, ["webhook"], clock) == []  # already firing: not again
        assert await alerts.deliver(survivor, [flaky], settings, clock) == 0
        assert await alerts.deliver(survivor, [flaky], settings, clock) == 0  # not due before its Retry-After
        [episode] = await survivor.episodes()
        assert episode.undelivered == 1
        flaky.working = True
        clock.advance(10)
        assert await alerts.deliver(survivor, [flaky], settings, clock) == 1
        assert await alerts.deliver(survivor, [flaky], settings, clock) == 0
        assert [(a.rule, a.kind.value, a.attempts) for a in flaky.sent] == [("pending_backlog", "firing", 1)]
    finally:
        await survivor.close()


async def test_a_refused_message_is_given_up_and_shown_as_dead(
    store: Store, open_alerts: OpenAlerts, hooks: Hooks
) -> None:
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings(max_pending=0)
    hooks.status = 403  # the receiver refuses: retrying cannot help
    process = await open_alerts()
    try:
        await ask(service, 1)
        await alerts.evaluate(process, settings, ["webhook"], clock)
        assert await alerts.deliver(process, [WebhookAlerts(hooks.url, SECRET)], settings, clock) == 0
        clock.advance(86_400)
        assert await alerts.deliver(process, [WebhookAlerts(hooks.url, SECRET)], settings, clock) == 0
        assert len(hooks.received) == 1
        [episode] = await process.episodes()
        assert (episode.undelivered, episode.dead) == (0, 1)
    finally:
        await process.close()


async def test_a_running_server_raises_the_alert_itself(settings: Settings, hooks: Hooks) -> None:
    settings = dataclasses.replace(
        settings, webhook_url=hooks.url, webhook_secret=SECRET, alerts=AlertSettings(max_pending=0, interval=0.05)
    )
    async with Client(build_server(settings)) as agent:
        result = await agent.call_tool(
            "request_approval", {"action": "db.drop", "summary": "drop the table", "payload": {"table": "users"}}
        )
        assert not result.is_error
        async with asyncio.timeout(30):
            while True:
                hooks.arrived.clear()
                if "alert.firing" in hooks.events():
                    break
                await hooks.arrived.wait()
    [alert] = [body["alert"] for body, _ in hooks.received if body["event"] == "alert.firing"]
    assert alert["rule"] == "pending_backlog" and alert["value"] == 1


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl tool."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"signoff", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool to make a certificate")
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")  # aiosmtpd 1.4 warns about itself
async def test_email_goes_over_starttls_with_a_login_and_a_wrong_password_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=served,
        require_starttls=True,
        authenticator=login,
        auth_require_tls=True,
    )
    controller.start()
    try:
        settings = SmtpSettings(
            host="127.0.0.1",
            port=port,
            username="signoff",
            password="s3cret",
            recipients=(ONCALL,),
            tls_context=trusted,
        )
        assert settings.security is SmtpSecurity.STARTTLS  # the default
        await EmailSender(settings).send("[signoff FIRING] pending_backlog", "101 requests are waiting")
        assert inbox.subjects() == ["[signoff FIRING] pending_backlog"]
        wrong = SmtpSettings(
            host="127.0.0.1", port=port, username="signoff", password="nope", recipients=(ONCALL,), tls_context=trusted
        )
        with pytest.raises(DeliveryRefused, match="refused"):
            await EmailSender(wrong).send("subject", "body")
        untrusted = SmtpSettings(host="127.0.0.1", port=port, recipients=(ONCALL,))  # the system's CAs only
        with pytest.raises(DeliveryFailed):
            await EmailSender(untrusted).send("subject", "body")
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


class Refusing:
    """A request notifier whose every delivery is refused: its notifications are dead-lettered at once."""

    name = "webhook"

    async def deliver(self, request: object) -> None:
        raise DeliveryRefused("the receiver said 403")


async def test_the_opt_in_rules_see_a_stale_request_and_a_dead_notification_in_the_database(
    store: Store, open_alerts: OpenAlerts
) -> None:
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings(oldest_pending_minutes=10, notifications_dead=True)
    [made] = await ask(service, 1)
    await deliver_due(service, Refusing())
    process = await open_alerts()
    try:
        measures = await process.measure(clock.now(), alerts.WINDOW)
        assert measures.dead_notifications == 1
        assert measures.oldest_pending == (await service.get(made)).created_at
        assert await alerts.evaluate(process, settings, ["email"], clock) == ["notifications_dead firing"]
        clock.advance(11 * 60)
        assert await alerts.evaluate(process, settings, ["email"], clock) == ["oldest_pending firing"]
        await service.vote(made, "alice", Verdict.APPROVE, None)
        assert await alerts.evaluate(process, settings, ["email"], clock) == ["oldest_pending resolved"]
    finally:
        await process.close()
