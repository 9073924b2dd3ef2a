"""Built-in alerts: signoff watches its own database and tells the on-call people when reviewers are rejecting
many requests, the queue is backing up, or the canary guard took a model's canary off.

The rules, all on numbers every process sharing the database sees alike:

- ``rejection_rate``: of the requests people decided in the last hour (at least ``min_decisions`` of them), the
  share they rejected is above ``rate`` (default 5 % of 20);
- ``pending_backlog``: more than ``max_pending`` requests (default 100) are waiting for people;
- ``oldest_pending`` (opt-in): the oldest pending request has waited more than ``minutes``;
- ``notifications_dead`` (opt-in): a notifier gave up on a notification;
- ``canary_guard`` (opt-in): the canary guard took a canary's traffic away in the last ``minutes`` (default 60).

Which rules run: the config file's ``[[alerts]]`` when it lists any, else the first two (plus the opt-ins the
environment switches on); a threshold set in the environment (``SIGNOFF_ALERT_*``) wins over the file's
(``rules_in_force``). The evaluator reads the list from the policy in force each round, so an edit of the file
that the policy reload accepts changes the alerts too; a rule the list no longer names is resolved once.

Every process evaluates them every ``interval`` seconds; a change of state is recorded by compare-and-set in the
database with its messages queued, and its audit event appended, in the same transaction (``storage.alerts``), so
an episode sends one "firing" and one "resolved" message to each target however many processes run, and a crash
loses none. While an alert holds, a reminder goes out at most every ``repeat_minutes`` (the same compare-and-set).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from signoff.notifiers import DeliveryFailed, DeliveryRefused
from signoff.notifiers.email import SmtpSettings
from signoff.storage.alerts import Alerts, GuardAction, Measures
from signoff.storage.errors import StorageError
from signoff.storage.text import visible
from signoff.tools.alert_rules import AlertRule, AlertRuleName
from signoff.tools.clock import Clock

if TYPE_CHECKING:
    from signoff.notifiers.alerts import AlertSender
    from signoff.server.config import Settings

logger = logging.getLogger(__name__)

REJECTION_RATE = AlertRuleName.REJECTION_RATE.value
PENDING_BACKLOG = AlertRuleName.PENDING_BACKLOG.value
OLDEST_PENDING = AlertRuleName.OLDEST_PENDING.value
NOTIFICATIONS_DEAD = AlertRuleName.NOTIFICATIONS_DEAD.value
CANARY_GUARD = AlertRuleName.CANARY_GUARD.value
DEFAULT_MINUTES = 60.0  #: oldest_pending's and canary_guard's ``minutes`` when neither the file nor the env sets it
MAX_GUARD_LINES = 5  #: a canary_guard message names at most this many of the guard's actions
MAX_REASON_CHARS = 500  #: of each action's reason
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
    canary_guard: bool = False  #: SIGNOFF_ALERT_CANARY_GUARD: opt-in rule (on/off), the last 60 minutes
    slack_channel: str | None = None  #: SIGNOFF_ALERT_SLACK_CHANNEL: post alerts there (the Slack app's bot)
    smtp: SmtpSettings | None = None  #: SIGNOFF_SMTP_HOST and SIGNOFF_ALERT_EMAIL_TO: e-mail alerts
    max_attempts: int = 50  #: a message is given up after this many failed attempts (SIGNOFF_NOTIFY_MAX_ATTEMPTS)
    give_up_seconds: float = 86_400.0  #: or this long after its alert changed (SIGNOFF_NOTIFY_GIVE_UP_SECONDS)
    #: the fields above that the environment set (they win over the config file's ``[[alerts]]``)
    from_env: frozenset[str] = field(default=frozenset())


#: the thresholds the environment can set: AlertSettings field -> (variable, rule, ``[[alerts]]`` key)
ENV_THRESHOLDS: dict[str, tuple[str, AlertRuleName, str]] = {
    "rejection_rate": ("SIGNOFF_ALERT_REJECTION_RATE", AlertRuleName.REJECTION_RATE, "rate"),
    "rejection_min_decisions": ("SIGNOFF_ALERT_REJECTION_MIN_DECISIONS", AlertRuleName.REJECTION_RATE, "min_decisions"),
    "max_pending": ("SIGNOFF_ALERT_MAX_PENDING", AlertRuleName.PENDING_BACKLOG, "max_pending"),
    "oldest_pending_minutes": ("SIGNOFF_ALERT_OLDEST_PENDING_MINUTES", AlertRuleName.OLDEST_PENDING, "minutes"),
}
#: the opt-in switches: AlertSettings field -> (variable, rule)
ENV_SWITCHES: dict[str, tuple[str, AlertRuleName]] = {
    "notifications_dead": ("SIGNOFF_ALERT_NOTIFICATIONS_DEAD", AlertRuleName.NOTIFICATIONS_DEAD),
    "canary_guard": ("SIGNOFF_ALERT_CANARY_GUARD", AlertRuleName.CANARY_GUARD),
}


def default_rules(settings: AlertSettings) -> tuple[AlertRule, ...]:
    """The rules when the config file lists no ``[[alerts]]``: the seed's two, and the environment's opt-ins."""
    rules = [AlertRule(rule=AlertRuleName.REJECTION_RATE), AlertRule(rule=AlertRuleName.PENDING_BACKLOG)]
    if settings.oldest_pending_minutes is not None:
        rules.append(AlertRule(rule=AlertRuleName.OLDEST_PENDING))
    if settings.notifications_dead:
        rules.append(AlertRule(rule=AlertRuleName.NOTIFICATIONS_DEAD))
    if settings.canary_guard:
        rules.append(AlertRule(rule=AlertRuleName.CANARY_GUARD))
    return tuple(rules)


def rules_in_force(settings: AlertSettings, listed: Sequence[AlertRule] = ()) -> tuple[AlertRule, ...]:
    """The rules that run, every threshold filled: the file's ``[[alerts]]`` (``listed``) or the defaults; a threshold
    the environment set wins over the file's, an unset one takes the file's, then the default."""
    return tuple(_filled(rule, settings) for rule in (listed or default_rules(settings)))


def _filled(rule: AlertRule, settings: AlertSettings) -> AlertRule:
    values: dict[str, Any] = {}
    for name, (_, owner, key) in ENV_THRESHOLDS.items():
        if owner is rule.rule:
            given = getattr(rule, key)
            values[key] = getattr(settings, name) if given is None or name in settings.from_env else given
    if rule.rule in (AlertRuleName.OLDEST_PENDING, AlertRuleName.CANARY_GUARD) and values.get("minutes") is None:
        values["minutes"] = rule.minutes if rule.minutes is not None else DEFAULT_MINUTES
    repeat = rule.repeat_minutes
    if repeat is None or "repeat_minutes" in settings.from_env:
        repeat = settings.repeat_minutes or 0.0
    return replace(rule, **values, repeat_minutes=repeat)


def unused_environment(settings: AlertSettings, listed: Sequence[AlertRule]) -> list[str]:
    """The ``SIGNOFF_ALERT_*`` variables that name a rule the file's ``[[alerts]]`` leave out (so they do nothing)."""
    if not listed:
        return []
    running = {rule.rule for rule in listed}
    named = [(var, owner) for name, (var, owner, _) in ENV_THRESHOLDS.items() if name in settings.from_env]
    named += [(var, owner) for name, (var, owner) in ENV_SWITCHES.items() if getattr(settings, name)]
    return [var for var, owner in named if owner not in running]


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str
    firing: bool
    value: float
    message: str


def judge(
    measures: Measures, settings: AlertSettings, now: datetime, rules: Sequence[AlertRule] | None = None
) -> list[Verdict]:
    """The state of each rule for these numbers at ``now`` (pure: no I/O); ``rules`` filled by ``rules_in_force``
    (default: the environment's)."""
    return [_verdict(rule, measures, now) for rule in (rules_in_force(settings) if rules is None else rules)]


def _verdict(rule: AlertRule, measures: Measures, now: datetime) -> Verdict:
    name = rule.rule.value
    if rule.rule is AlertRuleName.REJECTION_RATE:
        assert rule.rate is not None and rule.min_decisions is not None
        decided, rejected = measures.human_decisions, measures.human_rejections
        share = rejected / decided if decided else 0.0
        text = (
            f"people rejected {rejected} of the {decided} requests they decided in the last hour ({share:.1%}); "
            f"the threshold is {rule.rate:.1%} of at least {rule.min_decisions}"
        )
        return Verdict(name, decided >= rule.min_decisions and share > rule.rate, share, text)
    if rule.rule is AlertRuleName.PENDING_BACKLOG:
        assert rule.max_pending is not None
        text = f"{measures.pending} requests are waiting for people; the threshold is {rule.max_pending}"
        return Verdict(name, measures.pending > rule.max_pending, float(measures.pending), text)
    if rule.rule is AlertRuleName.OLDEST_PENDING:
        assert rule.minutes is not None
        oldest = measures.oldest_pending
        minutes = max(0.0, (now - oldest).total_seconds() / 60) if oldest else 0.0
        text = f"the oldest pending request has waited {minutes:.0f} minutes; the threshold is {rule.minutes:g}"
        return Verdict(name, minutes > rule.minutes, minutes, text)
    if rule.rule is AlertRuleName.NOTIFICATIONS_DEAD:
        dead = measures.dead_notifications
        text = f"{dead} notification(s) were given up on: see `signoff outbox list`, then `signoff outbox retry`"
        return Verdict(name, dead > 0, float(dead), text)
    assert rule.minutes is not None
    acted = [a for a in measures.guard_actions if (now - a.at).total_seconds() <= rule.minutes * 60]
    return Verdict(name, bool(acted), float(len(acted)), guard_text(acted, rule.minutes, now))


def guard_text(acted: Sequence[GuardAction], minutes: float, now: datetime) -> str:
    """What the canary guard did in the last ``minutes``: which model, which version, what it did."""
    if not acted:
        return f"the canary guard has not acted in the last {minutes:g} minutes"
    lines = [  # names an agent registered (checked then, shown inert anyway) and the guard's own words
        visible(
            f"model {a.model}: the canary guard took canary {a.version} off and put its traffic back on"
            f" {a.production or 'production'} {max(0, round((now - a.at).total_seconds() / 60))} minutes ago"
            f" (model change {a.seq}): {a.reason[:MAX_REASON_CHARS]}"
        )
        for a in reversed(acted[-MAX_GUARD_LINES:])
    ]
    more = len(acted) - MAX_GUARD_LINES
    tail = f"; and {more} more: see `signoff models history`" if more > 0 else ""
    return f"the canary guard acted {len(acted)} time(s) in the last {minutes:g} minutes; " + "; ".join(lines) + tail


async def evaluate(
    store: Alerts,
    settings: AlertSettings,
    targets: Sequence[str],
    clock: Clock,
    rules: Sequence[AlertRule] | None = None,
    *,
    dropped: Sequence[str] = (),
) -> list[str]:
    """Measure, judge, and record every change of state (queueing its messages); the changes this call recorded,
    as ``"<rule> firing"`` or ``"<rule> resolved"``. ``rules`` come from ``rules_in_force`` (default: the
    environment's); the ``dropped`` rules (no longer configured) are resolved if they were firing."""
    now = clock.now()
    rules = rules_in_force(settings) if rules is None else rules
    measures = await store.measure(now, WINDOW)
    guard = [r.minutes for r in rules if r.rule is AlertRuleName.CANARY_GUARD and r.minutes is not None]
    if guard:
        since = now - timedelta(minutes=max(guard))
        measures = replace(measures, guard_actions=tuple(await store.guard_actions(since)))
    verdicts = judge(measures, settings, now, rules)
    verdicts += [Verdict(name, False, 0.0, f"{name} is no longer configured ([[alerts]])") for name in dropped]
    repeats = {r.rule.value: r.repeat_minutes for r in rules}
    changes: list[str] = []
    for verdict in verdicts:
        episode = await store.change(
            verdict.rule,
            firing=verdict.firing,
            value=verdict.value,
            message=verdict.message,
            targets=list(targets),
            now=now,
        )
        if episode is None:
            every = repeats.get(verdict.rule)
            if verdict.firing and every:
                repeat = await store.repeat(
                    verdict.rule,
                    every=timedelta(minutes=every),
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
    # imported here, not at the top: the settings (and so every CLI command) need none of Slack's or SMTP's libraries
    from signoff.notifiers import web_client
    from signoff.notifiers.alerts import EmailAlerts, SlackAlerts, WebhookAlerts
    from signoff.notifiers.email import EmailSender

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


async def run_alerts(
    store: Alerts,
    settings: AlertSettings,
    senders: Sequence[AlertSender],
    clock: Clock,
    listed: Callable[[], Sequence[AlertRule]] = tuple,
) -> None:
    """The worker: evaluate and deliver every ``settings.interval`` seconds (messages waiting for a retry are
    tried again at least every 5 seconds). ``listed`` gives the ``[[alerts]]`` of the policy in force, read each
    round; a rule that leaves the list is resolved once (at start: every rule not in force)."""
    targets = [s.name for s in senders]
    next_evaluation = 0.0
    running: set[str] = {r.value for r in AlertRuleName}
    while True:
        try:
            if anyio.current_time() >= next_evaluation:
                rules = rules_in_force(settings, listed())
                now_running = {r.rule.value for r in rules}
                dropped = sorted(running - now_running)
                await evaluate(store, settings, targets, clock, rules, dropped=dropped)
                running = now_running
                next_evaluation = anyio.current_time() + settings.interval
            await deliver(store, senders, settings, clock)
        except StorageError as exc:
            logger.error("alert evaluation failed: %s Retrying in %.0fs", exc.message, settings.interval)
        except Exception:  # a worker that dies takes the server with it; log, and evaluate again next time
            logger.exception("alert evaluation failed; retrying")
        await anyio.sleep(min(settings.interval, 5.0))


@asynccontextmanager
async def alert_worker(
    settings: Settings,
    clock: Clock,
    *,
    in_memory: bool,
    listed: Callable[[], Sequence[AlertRule]] = tuple,
) -> AsyncIterator[None]:
    """Run the alerts while the server runs, if a target is set and the database is SQLite or PostgreSQL (the
    state of an alert lives in the database; a memory store has none to share). ``listed``: the config file's
    ``[[alerts]]`` in force (the policy reload may change them)."""
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
                once(settings.db_url, "alerts", partial(run_alerts, store, settings.alerts, chosen, clock, listed))
            )
            rules = rules_in_force(settings.alerts, listed())
            logger.info(
                "alerts on: %s; rules: %s",
                ", ".join(s.name for s in chosen),
                ", ".join(r.rule.value for r in rules),
            )
            for variable in unused_environment(settings.alerts, listed()):
                logger.warning(
                    "%s is set, but the config file's [[alerts]] do not list its rule: it does nothing", variable
                )
            try:
                yield
            finally:
                worker.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):  # the server's task group is cancelled by now
            await store.close()
