"""Built-in alerts: signoff watches its own database and tells the on-call people when reviewers are rejecting
many requests or the queue is backing up.

Two rules, both on numbers every process sharing the database sees alike:

- ``rejection_rate``: of the requests people decided in the last hour (at least ``rejection_min_decisions`` of
  them), the share they rejected is above ``rejection_rate`` (default 5 %);
- ``pending_backlog``: more than ``max_pending`` requests (default 100) are waiting for people.

Every process evaluates them every ``interval`` seconds; a change of state is recorded by compare-and-set in the
database with its messages queued, and its audit event appended, in the same transaction (``storage.alerts``), so
an episode sends one "firing" and one "resolved" message to each target however many processes run, and a crash
loses none. While an alert holds, a reminder goes out at most every ``repeat_minutes`` (the same compare-and-set).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import anyio

from signoff.notifiers import DeliveryFailed, DeliveryRefused, web_client
from signoff.notifiers.alerts import AlertSender, EmailAlerts, SlackAlerts, WebhookAlerts
from signoff.notifiers.email import EmailSender, SmtpSettings
from signoff.storage.alerts import Alerts, Measures
from signoff.storage.errors import StorageError
from signoff.tools.clock import Clock

if TYPE_CHECKING:
    from signoff.server.config import Settings

logger = logging.getLogger(__name__)

REJECTION_RATE = "rejection_rate"
PENDING_BACKLOG = "pending_backlog"
OLDEST_PENDING = "oldest_pending"
NOTIFICATIONS_DEAD = "notifications_dead"
WINDOW = timedelta(hours=1)
LEASE = timedelta(seconds=60)  #: a claimed message is not sent by another process for this long
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertSettings:
    """The thresholds and targets (``SIGNOFF_ALERT_*``, ``SIGNOFF_SMTP_*``); alerts run when a target is set."""

    enabled: bool = True  #: SIGNOFF_ALERTS (on/off)
    rejection_rate: float = 0.05  #: SIGNOFF_ALERT_REJECTION_RATE: fire above this share of people's decisions
    rejection_min_decisions: int = 20  #: SIGNOFF_ALERT_REJECTION_MIN_DECISIONS: ...among at least this many
    max_pending: int = 100  #: SIGNOFF_ALERT_MAX_PENDING: fire above this many pending requests
    interval: float = 30.0  #: SIGNOFF_ALERT_INTERVAL: seconds between evaluations
    repeat_minutes: float | None = 240.0  #: SIGNOFF_ALERT_REPEAT_MINUTES: remind this often while it holds (0: never)
    oldest_pending_minutes: float | None = None  #: SIGNOFF_ALERT_OLDEST_PENDING_MINUTES: opt-in rule
    notifications_dead: bool = False  #: SIGNOFF_ALERT_NOTIFICATIONS_DEAD: opt-in rule (on/off)
    slack_channel: str | None = None  #: SIGNOFF_ALERT_SLACK_CHANNEL: post alerts there (the Slack app's bot)
    smtp: SmtpSettings | None = None  #: SIGNOFF_SMTP_HOST and SIGNOFF_ALERT_EMAIL_TO: e-mail alerts
    max_attempts: int = 50  #: a message is given up after this many failed attempts (SIGNOFF_NOTIFY_MAX_ATTEMPTS)
    give_up_seconds: float = 86_400.0  #: or this long after its alert changed (SIGNOFF_NOTIFY_GIVE_UP_SECONDS)


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str
    firing: bool
    value: float
    message: str


def judge(measures: Measures, settings: AlertSettings, now: datetime) -> list[Verdict]:
    """The state of each rule for these numbers at ``now`` (pure: no I/O)."""
    decided, rejected = measures.human_decisions, measures.human_rejections
    share = rejected / decided if decided else 0.0
    enough = decided >= settings.rejection_min_decisions
    rate = (
        f"people rejected {rejected} of the {decided} requests they decided in the last hour ({share:.1%}); "
        f"the threshold is {settings.rejection_rate:.1%} of at least {settings.rejection_min_decisions}"
    )
    backlog = f"{measures.pending} requests are waiting for people; the threshold is {settings.max_pending}"
    verdicts = [
        Verdict(REJECTION_RATE, enough and share > settings.rejection_rate, share, rate),
        Verdict(PENDING_BACKLOG, measures.pending > settings.max_pending, float(measures.pending), backlog),
    ]
    if settings.oldest_pending_minutes is not None:
        oldest = measures.oldest_pending
        minutes = max(0.0, (now - oldest).total_seconds() / 60) if oldest else 0.0
        text = (
            f"the oldest pending request has waited {minutes:.0f} minutes; "
            f"the threshold is {settings.oldest_pending_minutes:g}"
        )
        verdicts.append(Verdict(OLDEST_PENDING, minutes > settings.oldest_pending_minutes, minutes, text))
    if settings.notifications_dead:
        dead = measures.dead_notifications
        text = f"{dead} notification(s) were given up on: see `signoff outbox list`, then `signoff outbox retry`"
        verdicts.append(Verdict(NOTIFICATIONS_DEAD, dead > 0, float(dead), text))
    return verdicts


async def evaluate(store: Alerts, settings: AlertSettings, targets: Sequence[str], clock: Clock) -> list[str]:
    """Measure, judge, and record every change of state (queueing its messages); the changes this call recorded,
    as ``"<rule> firing"`` or ``"<rule> resolved"``."""
    now = clock.now()
    changes: list[str] = []
    for verdict in judge(await store.measure(now, WINDOW), settings, now):
        episode = await store.change(
            verdict.rule,
            firing=verdict.firing,
            value=verdict.value,
            message=verdict.message,
            targets=list(targets),
            now=now,
        )
        if episode is None:
            if verdict.firing and settings.repeat_minutes:
                repeat = await store.repeat(
                    verdict.rule,
                    every=timedelta(minutes=settings.repeat_minutes),
                    value=verdict.value,
                    message=verdict.message,
                    targets=list(targets),
                    now=now,
                )
                if repeat is not None:
                    changes.append(f"{verdict.rule} repeated")
                    logger.warning(
                        "alert %s still firing (reminder %d): %s",
                        verdict.rule,
                        repeat,
                        verdict.message,
                        extra={"alert": verdict.rule, "repeat": repeat},
                    )
            continue
        word = "firing" if verdict.firing else "resolved"
        changes.append(f"{verdict.rule} {word}")
        log = logger.warning if verdict.firing else logger.info
        log("alert %s %s: %s", verdict.rule, word, verdict.message, extra={"alert": verdict.rule, "episode": episode})
    return changes


async def deliver(store: Alerts, senders: Sequence[AlertSender], settings: AlertSettings, clock: Clock) -> int:
    """Send the alert messages due to this process's targets; how many were delivered."""
    by_name = {s.name: s for s in senders}
    if not by_name:
        return 0
    delivered = 0
    for alert in await store.claim(list(by_name), clock.now(), LEASE):
        try:
            await by_name[alert.target].send(alert)
        except DeliveryFailed as exc:
            now = clock.now()
            attempts = alert.attempts + 1
            expired = (now - alert.at).total_seconds() >= settings.give_up_seconds
            if isinstance(exc, DeliveryRefused) or attempts >= settings.max_attempts or expired:
                logger.warning("gave up on the %s alert %s to %s: %s", alert.kind, alert.rule, alert.target, exc)
                await store.failed(alert.id, exc.message, retry_at=None)
            else:
                wait = exc.retry_after if exc.retry_after is not None else min(MAX_BACKOFF_SECONDS, 2.0**attempts)
                logger.warning("could not send the %s alert %s to %s: %s", alert.kind, alert.rule, alert.target, exc)
                await store.failed(alert.id, exc.message, retry_at=now + timedelta(seconds=wait))
            continue
        await store.delivered(alert.id, clock.now())
        delivered += 1
    return delivered


def senders(
    settings: AlertSettings,
    *,
    slack_token: str | None,
    slack_api_url: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
) -> list[AlertSender]:
    """The targets these settings name: Slack (a channel and the bot token), the webhook, e-mail."""
    chosen: list[AlertSender] = []
    if settings.slack_channel and slack_token:
        chosen.append(
            SlackAlerts(web_client(slack_token, slack_api_url, wait_on_rate_limit=False), settings.slack_channel)
        )
    if webhook_url and webhook_secret:
        chosen.append(WebhookAlerts(webhook_url, webhook_secret))
    if settings.smtp is not None:
        chosen.append(EmailAlerts(EmailSender(settings.smtp)))
    return chosen


async def run_alerts(store: Alerts, settings: AlertSettings, senders: Sequence[AlertSender], clock: Clock) -> None:
    """The worker: evaluate and deliver every ``settings.interval`` seconds (messages waiting for a retry are
    tried again at least every 5 seconds)."""
    targets = [s.name for s in senders]
    next_evaluation = 0.0
    while True:
        try:
            if anyio.current_time() >= next_evaluation:
                await evaluate(store, settings, targets, clock)
                next_evaluation = anyio.current_time() + settings.interval
            await deliver(store, senders, settings, clock)
        except StorageError as exc:
            logger.error("alert evaluation failed: %s Retrying in %.0fs", exc.message, settings.interval)
        except Exception:  # a worker that dies takes the server with it; log, and evaluate again next time
            logger.exception("alert evaluation failed; retrying")
        await anyio.sleep(min(settings.interval, 5.0))


@asynccontextmanager
async def alert_worker(settings: Settings, clock: Clock, *, in_memory: bool) -> AsyncIterator[None]:
    """Run the alerts while the server runs, if a target is set and the database is SQLite or PostgreSQL (the
    state of an alert lives in the database; a memory store has none to share)."""
    chosen = senders(
        settings.alerts,
        slack_token=settings.slack_bot_token,
        slack_api_url=settings.slack_api_url,
        webhook_url=settings.webhook_url,
        webhook_secret=settings.webhook_secret,
    )
    if not settings.alerts.enabled or not chosen or in_memory:
        yield
        return
    from signoff.server.stores import (
        once,
        open_alert_store,
    )  # here: server.stores imports server.config, which imports this

    store = await open_alert_store(settings.db_path, settings.db_url)
    try:
        async with anyio.create_task_group() as worker:
            worker.start_soon(
                once(settings.db_url, "alerts", partial(run_alerts, store, settings.alerts, chosen, clock))
            )
            logger.info("alerts on: %s", ", ".join(s.name for s in chosen))
            try:
                yield
            finally:
                worker.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):  # the server's task group is cancelled by now
            await store.close()
