"""Prometheus metrics: ``GET /metrics`` on the HTTP transport, and ``signoff stats`` for stdio-only installations.

Shared numbers come from the database at scrape time (``Store.metrics``, ``ModelStore.inference_totals``: counters
kept by triggers, gauges over partial indexes), so every process sharing the file, and the CLI, report the same
values. Only ``signoff_policy_seconds`` is per process: how long this process's policy evaluations took.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from signoff.server.auth import ConfigTokenVerifier, bearer_identity
from signoff.storage import ModelStore, Store
from signoff.storage.metrics_queries import ApprovalMetrics, InferenceTotals
from signoff.storage.text import visible
from signoff.tools.access import Role
from signoff.tools.app_state import AppState

#: Policy evaluation is pure and fast: from 50 microseconds to 50 milliseconds.
POLICY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
MAX_ACTIONS = 200  #: action label values shown; agents name actions, so the rest are summed under "(other)"
MAX_LABEL_CHARS = 200
OTHER = "(other)"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version reads


class ProcessMetrics:
    """What only this process knows: it times each policy evaluation (``ApprovalService.on_policy_seconds``)."""

    def __init__(self) -> None:
        self.policy_seconds = Histogram(
            "signoff_policy_seconds",
            "Time to evaluate the policy for one request, in this process (per process, not shared).",
            buckets=POLICY_BUCKETS,
            registry=None,
        )

    def observe_policy(self, seconds: float) -> None:
        self.policy_seconds.observe(seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """The database's numbers at one moment."""

    approvals: ApprovalMetrics
    models: Sequence[InferenceTotals]
    now: datetime
    guard_actions: Mapping[str, int] = field(default_factory=dict)  #: model -> the canary guard's actions on it


async def read_snapshot(store: Store, models: ModelStore | None, now: datetime) -> Snapshot:
    totals = await models.inference_totals() if models is not None else []
    guard = await models.guard_action_totals() if models is not None else {}
    return Snapshot(approvals=await store.metrics(), models=totals, now=now, guard_actions=guard)


def _label(value: str) -> str:
    """Label values others wrote (actions, model names) as inert text of bounded length."""
    shown = visible(value)
    return shown if len(shown) <= MAX_LABEL_CHARS else shown[: MAX_LABEL_CHARS - 1] + "…"


class DatabaseCollector(Collector):
    """The shared metrics of one snapshot, read from the database when the scrape came in."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        m, now = self.snapshot.approvals, self.snapshot.now
        requests = CounterMetricFamily(
            "signoff_requests",
            "Requests by action, outcome (their state now: approved, rejected, expired, cancelled, pending) and who"
            " decided (policy, human, or empty). The pending series falls as requests are decided.",
            labels=["action", "outcome", "decided_by"],
        )
        for (action, outcome, decided_by), count in _fold_actions(m.requests):
            requests.add_metric([action, outcome, decided_by], count)
        yield requests
        pending = GaugeMetricFamily("signoff_pending_requests", "Requests waiting for people.", labels=["priority"])
        for priority, count in sorted(m.pending.items()):
            pending.add_metric([priority], count)
        yield pending
        age = (now - m.oldest_pending).total_seconds() if m.oldest_pending else 0.0
        yield GaugeMetricFamily(
            "signoff_oldest_pending_age_seconds", "Age of the oldest pending request (0 when none).", value=age
        )
        decisions = HistogramMetricFamily(
            "signoff_decision_seconds", "Time from a request to people's decision (approved or rejected by people)."
        )
        bounds = [(_bound(b), float(n)) for b, n in m.decision_seconds.buckets]
        decisions.add_metric([], bounds, m.decision_seconds.sum)
        yield decisions
        triggers = CounterMetricFamily("signoff_triggers", "Policy triggers that fired, by kind.", labels=["kind"])
        for kind, count in sorted(m.triggers.items()):
            triggers.add_metric([kind], count)
        yield triggers
        yield CounterMetricFamily("signoff_escalations", "Requests escalated.", value=m.escalations)
        votes = CounterMetricFamily(
            "signoff_votes",
            "Votes by verdict and channel (slack, or cli_or_api: the CLI and the reviewer API are not told apart).",
            labels=["verdict", "channel"],
        )
        for (verdict, channel), count in sorted(m.votes.items()):
            votes.add_metric([verdict, channel], count)
        yield votes
        notifications = CounterMetricFamily(
            "signoff_notifications",
            "Notifications by notifier and result: delivered, or dead (the notifier gave up on it).",
            labels=["notifier", "result"],
        )
        for (notifier, result), count in sorted(m.notifications.counts.items()):
            notifications.add_metric([_label(notifier), result], count)
        yield notifications
        retrying = GaugeMetricFamily(
            "signoff_notifications_retrying",
            "Notifications a notifier failed at least once and will try again (with backoff or Retry-After).",
            labels=["notifier"],
        )
        for notifier, count in sorted(m.notifications.retrying.items()):
            retrying.add_metric([_label(notifier)], count)
        yield retrying
        dead = GaugeMetricFamily(
            "signoff_notifications_dead",
            "Notifications a notifier gave up on, until `signoff outbox retry` queues them again.",
            labels=["notifier"],
        )
        for notifier, count in sorted(m.notifications.dead.items()):
            dead.add_metric([_label(notifier)], count)
        yield dead
        yield from _model_families(self.snapshot.models)
        guard = CounterMetricFamily(
            "signoff_canary_guard_actions",
            "Times the canary guard took a failing canary's traffic back to production, per model.",
            labels=["model"],
        )
        for model, count in sorted(self.snapshot.guard_actions.items()):
            guard.add_metric([_label(model)], count)
        yield guard


def _model_families(totals: Iterable[InferenceTotals]) -> Iterator[Metric]:
    labels = ["model", "version"]
    inferences = CounterMetricFamily("signoff_model_inferences", "Inferences recorded per version.", labels=labels)
    errors = CounterMetricFamily("signoff_model_errors", "Inferences recorded as errors per version.", labels=labels)
    latency = HistogramMetricFamily(
        "signoff_model_latency_seconds", "Latency of the recorded inferences (count and sum).", labels=labels
    )
    for t in totals:
        key = [_label(t.model), _label(t.version)]
        inferences.add_metric(key, t.inferences)
        errors.add_metric(key, t.errors)
        latency.add_metric(key, [("+Inf", float(t.inferences))], t.latency_seconds_sum)
    yield from (inferences, errors, latency)


def _fold_actions(counts: Mapping[tuple[str, str, str], int]) -> list[tuple[tuple[str, str, str], int]]:
    """Every action's series, the busiest ``MAX_ACTIONS`` actions by name and the rest summed under "(other)"."""
    volume: dict[str, int] = {}
    for (action, _, _), count in counts.items():
        volume[action] = volume.get(action, 0) + count
    shown = set(sorted(volume, key=lambda a: (-volume[a], a))[:MAX_ACTIONS])
    folded: dict[tuple[str, str, str], int] = {}
    for (action, outcome, decided_by), count in counts.items():
        key = (_label(action) if action in shown else OTHER, outcome, decided_by)
        folded[key] = folded.get(key, 0) + count
    return sorted(folded.items())


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_of(snapshot: Snapshot, process: ProcessMetrics | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(snapshot))
    if process is not None:
        registry.register(process.policy_seconds)
    return registry


def exposition(snapshot: Snapshot, process: ProcessMetrics | None = None) -> bytes:
    """The Prometheus text format of the snapshot, with this process's own metrics if given."""
    return generate_latest(registry_of(snapshot, process))


def samples(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Every shared sample as ``{"name", "labels", "value"}``: what ``signoff stats --json`` prints."""
    return [
        {"name": s.name, "labels": dict(s.labels), "value": s.value}
        for family in DatabaseCollector(snapshot).collect()
        for s in family.samples
    ]


def table(snapshot: Snapshot) -> str:
    """The shared samples as aligned text lines, one per sample (label values already inert)."""
    rows = []
    for s in samples(snapshot):
        labels = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in s["labels"].items())
        rows.append((f"{s['name']}{{{labels}}}" if labels else s["name"], s["value"]))
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {_number(value)}" for name, value in rows)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def allowed(request: Request, verifier: ConfigTokenVerifier | None, open_on_loopback: bool) -> Response | None:
    """None if the caller may read /metrics, else the 401/403 to send. Without tokens, /metrics is open only on a
    server bound to loopback; with tokens, it needs a ``metrics`` token."""
    if verifier is None and open_on_loopback:
        return None
    if verifier is None:
        why = "/metrics beyond loopback needs a metrics token: add one to [[auth.tokens]] (signoff token new)"
        return JSONResponse({"error": why}, status_code=403)
    status, why = bearer_identity(request, verifier, Role.METRICS)
    if status == 200:
        return None
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": why}, status_code=status, headers=headers)


async def endpoint(
    request: Request,
    state: AppState,
    verifier: ConfigTokenVerifier | None,
    *,
    open_on_loopback: bool,
    process: ProcessMetrics,
) -> Response:
    """``GET /metrics``: read the database now, answer in the Prometheus text format."""
    if (refusal := allowed(request, verifier, open_on_loopback)) is not None:
        return refusal
    service = state.service
    models = state.models.store if state.models is not None else None
    snapshot = await read_snapshot(service.store, models, service.clock.now())
    return Response(exposition(snapshot, process), media_type=CONTENT_TYPE)
