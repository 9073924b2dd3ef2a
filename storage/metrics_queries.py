"""The numbers every process shares, read from the database at scrape time (``signoff stats``, ``GET /metrics``).

Counters come from ``metric_counts``, which triggers keep in the transaction that changes what they count
(``sql/0011_metrics.sql``): a scrape reads a few dozen rows whatever the size of the history. Gauges (pending
requests, the oldest pending one, notifications stuck in retry) are counts over partial indexes of what is
pending now. The memory stores compute the same records from their contents (``*_of`` below).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.storage.records import (
    ApprovalRequest,
    DecidedBy,
    DeliveryMark,
    DeliveryState,
    Event,
    EventKind,
    Status,
)

#: Upper bounds (seconds) of the decision-time histogram, then +Inf; the CASE in 0011_metrics.sql uses the same.
DECISION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, math.inf)
SLACK, CLI_OR_API = "slack", "cli_or_api"  #: vote channels: a Slack vote carries the voter's Slack user id

# -- SQL (SQLite) ------------------------------------------------------------------------------------------------

APPROVAL_COUNTS = """
SELECT metric, a, b, c, value FROM metric_counts
 WHERE metric IN ('requests', 'triggers', 'decision_seconds_bucket', 'decision_seconds_sum', 'escalations', 'votes',
                  'notifications')
"""
MODEL_COUNTS = """
SELECT metric, a, b, c, value FROM metric_counts
 WHERE metric IN ('model_inferences', 'model_errors', 'model_latency_ms_sum')
"""
PENDING_BY_PRIORITY = "SELECT priority, count(*) FROM requests WHERE status = 'pending' GROUP BY priority"
OLDEST_PENDING = "SELECT min(created_at) FROM requests WHERE status = 'pending'"
#: Deliveries now waiting for a retry (on outbox rows not settled: a partial index) and dead ones (another), by
#: notifier: ``(notifier, state, count)``. CROSS JOIN keeps SQLite from scanning every delivery ever made.
DELIVERIES_STUCK = """
SELECT d.notifier, d.state, count(*) FROM outbox AS o CROSS JOIN outbox_deliveries AS d ON d.outbox_id = o.id
 WHERE o.delivered_at IS NULL AND d.state = 'pending' AND d.attempts > 0 GROUP BY 1, 2
UNION ALL
SELECT notifier, state, count(*) FROM outbox_deliveries WHERE state = 'dead' GROUP BY 1, 2
"""

Row = Sequence[Any]


# -- records -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Histogram:
    buckets: tuple[tuple[float, int], ...]  #: (upper bound, cumulative count), ending with +Inf
    count: int
    sum: float


@dataclass(frozen=True, kw_only=True, slots=True)
class NotificationMetrics:
    counts: Mapping[tuple[str, str], int]  #: (notifier, result: delivered | dead) -> notifications so far
    retrying: Mapping[str, int]  #: notifier -> notifications it failed at least once and will try again
    dead: Mapping[str, int]  #: notifier -> notifications it gave up on, until ``signoff outbox retry``


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalMetrics:
    requests: Mapping[tuple[str, str, str], int]  #: (action, status, decided_by or '') -> requests in that state
    pending: Mapping[str, int]  #: priority -> pending requests
    oldest_pending: datetime | None  #: when the oldest pending request was made
    decision_seconds: Histogram  #: created -> decided, for decisions made by people
    triggers: Mapping[str, int]  #: trigger kind -> times it fired
    escalations: int
    votes: Mapping[tuple[str, str], int]  #: (verdict, channel) -> votes
    notifications: NotificationMetrics


@dataclass(frozen=True, kw_only=True, slots=True)
class InferenceTotals:
    """Everything the model plane recorded for one version, since it was registered."""

    model: str
    version: str
    inferences: int
    errors: int
    latency_seconds_sum: float


# -- from SQLite rows --------------------------------------------------------------------------------------------


def approval_metrics(
    counts: Iterable[Row], pending: Iterable[Row], oldest: str | None, stuck: Iterable[Row]
) -> ApprovalMetrics:
    """The record from ``APPROVAL_COUNTS``, ``PENDING_BY_PRIORITY``, ``OLDEST_PENDING`` and ``DELIVERIES_STUCK``."""
    by_metric: dict[str, dict[tuple[str, str, str], float]] = {}
    for metric, a, b, c, value in counts:
        by_metric.setdefault(metric, {})[(a, b, c)] = value
    buckets = Counter({float(a): int(v) for (a, _, _), v in by_metric.get("decision_seconds_bucket", {}).items()})
    total = sum(by_metric.get("decision_seconds_sum", {}).values())
    return ApprovalMetrics(
        requests={key: int(v) for key, v in by_metric.get("requests", {}).items() if v},  # 0: nothing pending
        pending={priority: n for priority, n in pending},
        oldest_pending=datetime.fromisoformat(oldest) if oldest else None,
        decision_seconds=_cumulative(buckets, total),
        triggers={a: int(v) for (a, _, _), v in by_metric.get("triggers", {}).items()},
        escalations=int(sum(by_metric.get("escalations", {}).values())),
        votes={(a, b): int(v) for (a, b, _), v in by_metric.get("votes", {}).items()},
        notifications=notification_metrics(by_metric.get("notifications", {}), stuck),
    )


def notification_metrics(counts: Mapping[tuple[str, str, str], float], stuck: Iterable[Row]) -> NotificationMetrics:
    """Notifications per notifier and result so far, and the deliveries now retrying or dead, per notifier."""
    now: dict[str, dict[str, int]] = {"pending": {}, "dead": {}}
    for notifier, state, n in stuck:
        now[state][notifier] = int(n)
    return NotificationMetrics(
        counts={(a, b): int(v) for (a, b, _), v in counts.items()}, retrying=now["pending"], dead=now["dead"]
    )


def inference_totals(counts: Iterable[Row]) -> list[InferenceTotals]:
    """The records from ``MODEL_COUNTS``, by model and version."""
    sums: dict[tuple[str, str], dict[str, float]] = {}
    for metric, model, version, _, value in counts:
        sums.setdefault((model, version), {})[metric] = value
    return [
        InferenceTotals(
            model=model,
            version=version,
            inferences=int(s.get("model_inferences", 0)),
            errors=int(s.get("model_errors", 0)),
            latency_seconds_sum=s.get("model_latency_ms_sum", 0.0) / 1000,
        )
        for (model, version), s in sorted(sums.items())
    ]


def _cumulative(per_bucket: Mapping[float, int], total: float) -> Histogram:
    running, buckets = 0, []
    for bound in DECISION_BUCKETS:
        running += per_bucket.get(bound, 0)
        buckets.append((bound, running))
    return Histogram(buckets=tuple(buckets), count=running, sum=total)


# -- from the memory stores' contents ----------------------------------------------------------------------------


def approval_metrics_of(
    requests: Iterable[ApprovalRequest], events: Iterable[Event], marks: Iterable[tuple[bool, DeliveryMark]]
) -> ApprovalMetrics:
    """The same record as the SQLite store gives, computed from requests, events and each outbox row's delivery
    marks (``(row settled, mark)``)."""
    states: Counter[tuple[str, str, str]] = Counter()
    pending: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    votes: Counter[tuple[str, str]] = Counter()
    per_bucket: Counter[float] = Counter()
    total, escalations, oldest = 0.0, 0, None
    for r in requests:
        states[(r.action, r.status.value, r.decided_by.value if r.decided_by else "")] += 1
        triggers.update(t.kind.value for t in r.triggers)
        votes.update((v.verdict.value, SLACK if v.reviewer_ids else CLI_OR_API) for v in r.votes)
        escalations += r.escalated_at is not None
        if r.status is Status.PENDING:
            pending[r.priority.value] += 1
            oldest = r.created_at if oldest is None else min(oldest, r.created_at)
        if r.decided_by is DecidedBy.HUMAN and r.decided_at is not None:
            seconds = round(max(0.0, (r.decided_at - r.created_at).total_seconds()), 3)
            per_bucket[next(b for b in DECISION_BUCKETS if seconds <= b)] += 1
            total += seconds
    results = {EventKind.NOTIFIED: "delivered", EventKind.NOTIFY_FAILED: "dead"}
    counted = Counter(
        (str(e.data.get("notifier", "")), results[e.kind]) for e in events if e.kind in results
    )  # as the SQL triggers count them
    counts = {(notifier, result, ""): float(n) for (notifier, result), n in counted.items()}
    stuck = Counter(
        (mark.notifier, mark.state.value)
        for settled, mark in marks
        if mark.state is DeliveryState.DEAD or (not settled and mark.state is DeliveryState.PENDING and mark.attempts)
    )
    return ApprovalMetrics(
        requests=dict(states),
        pending=dict(pending),
        oldest_pending=oldest,
        decision_seconds=_cumulative(per_bucket, total),
        triggers=dict(triggers),
        escalations=escalations,
        votes=dict(votes),
        notifications=notification_metrics(counts, [(n, state, count) for (n, state), count in stuck.items()]),
    )
