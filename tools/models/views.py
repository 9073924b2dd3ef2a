"""What agents see from the model tools: structured results, each with a sentence saying what to do next."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from signoff.storage import ChangeStatus, HumanOutcomes, ModelChange, Serving
from signoff.tools.models.routing import Split, percent
from signoff.tools.models.service import ChangeOutcome, History, Overview
from signoff.tools.models.stats import VersionStats
from signoff.tools.models.telemetry import CanaryReport, Routed, StatsReport
from signoff.tools.wire import WireModel

ChangeKindName = Literal["register", "set_traffic", "promote", "rollback", "guard"]


def traffic(serving: Serving) -> dict[str, float]:
    return {v: percent(bp) for v, bp in serving.weights.items()}


class ArmView(WireModel):
    version: str
    percent: float
    arm: Literal["production", "canary"]
    buckets: tuple[int, int] = Field(description="The routing buckets [start, end) of 0..9999 this version gets")


class VersionView(WireModel):
    version: str
    endpoint: str
    metadata: dict[str, Any]
    lineage: dict[str, Any]
    registered_at: datetime
    registered_by: str | None
    aliases: list[str] = Field(description="'production' and/or 'previous' when this version holds them")
    traffic_percent: float


class ChangeView(WireModel):
    change_id: int
    kind: ChangeKindName
    status: Literal["pending", "applied", "dropped"]
    requested_by: str | None
    requested_at: datetime
    reason: str
    payload: dict[str, Any] = Field(description="The exact change (what an approval was bound to)")
    request_id: str | None = Field(description="The approval request, when the change needed one")
    settled_at: datetime | None = Field(description="When it was applied or dropped")
    outcome: str | None = Field(description="How it was decided, e.g. 'approved by alice'")
    production: str | None = Field(description="Production right after it applied")
    traffic: dict[str, float] | None = Field(description="Percent per version right after it applied")

    @classmethod
    def of(cls, change: ModelChange) -> ChangeView:
        return cls(
            change_id=change.seq,
            kind=change.kind.value,
            status=change.status.value,
            requested_by=change.requested_by,
            requested_at=change.requested_at,
            reason=change.reason,
            payload=dict(change.payload),
            request_id=change.request_id,
            settled_at=change.settled_at,
            outcome=change.outcome,
            production=change.serving.production if change.serving else None,
            traffic=traffic(change.serving) if change.serving else None,
        )


class ModelView(WireModel):
    """A model: its versions, aliases, traffic split and any change waiting for approval."""

    name: str
    production: str | None
    previous: str | None
    rollout: Literal["no_traffic", "stable", "canary"] = Field(
        description="no_traffic: nothing promoted yet; stable: production serves everything; canary: others serve some"
    )
    traffic: list[ArmView]
    versions: list[VersionView]
    pending: list[ChangeView] = Field(description="Changes waiting for a human to approve their request")
    message: str

    @classmethod
    def of(cls, overview: Overview) -> ModelView:
        state, serving = overview.state, overview.state.serving
        order = [v.version for v in state.versions]
        arms = [
            ArmView(
                version=a.version,
                percent=percent(a.end - a.start),
                arm="production" if a.version == serving.production else "canary",
                buckets=(a.start, a.end),
            )
            for a in Split.of(order, serving.weights).arms
        ]
        holders = (("production", serving.production), ("previous", serving.previous))
        versions = [
            VersionView(
                version=v.version,
                endpoint=v.endpoint,
                metadata=dict(v.metadata),
                lineage=dict(v.lineage),
                registered_at=v.registered_at,
                registered_by=v.registered_by,
                aliases=[alias for alias, holder in holders if holder == v.version],
                traffic_percent=percent(serving.weights.get(v.version, 0)),
            )
            for v in state.versions
        ]
        rollout: Literal["no_traffic", "stable", "canary"]
        if not arms:
            rollout, message = "no_traffic", "Nothing serves yet: promote a version with promote_model."
        elif all(a.arm == "production" for a in arms):
            rollout, message = "stable", f"{serving.production} serves all traffic."
        else:
            rollout = "canary"
            message = "Canary running: compare versions with analyze_canary before raising its traffic or promoting."
        if overview.pending:
            message += f" {len(overview.pending)} change(s) wait for approval (see pending; get_status tracks each)."
        return cls(
            name=state.name,
            production=serving.production,
            previous=serving.previous,
            rollout=rollout,
            traffic=arms,
            versions=versions,
            pending=[ChangeView.of(c) for c in overview.pending],
            message=message,
        )


class ModelList(WireModel):
    models: list[ModelView]


class ResolvedModel(WireModel):
    """Which version to call for this inference."""

    model: str
    version: str
    endpoint: str = Field(description="Call this")
    arm: Literal["production", "canary"]
    bucket: int = Field(description="The routing bucket 0..9999; the same routing_key always gets the same bucket")
    decision_id: str = Field(description="Pass to record_inference with the outcome of this inference")

    @classmethod
    def of(cls, routed: Routed) -> ResolvedModel:
        return cls(
            model=routed.model,
            version=routed.version,
            endpoint=routed.endpoint,
            arm=routed.arm,
            bucket=routed.bucket,
            decision_id=routed.decision_id,
        )


class RecordResult(WireModel):
    recorded: int


class PeopleView(WireModel):
    """What people made of the version's requests in the window: those whose agent named this version with
    request_approval (model, version)."""

    requests: int = Field(description="Requests that named this version")
    to_people: int = Field(description="Of those, the ones the policy sent to people instead of deciding itself")
    decided_by_people: int = Field(description="Approved or rejected by people")
    rejected: int
    changed: int = Field(description="Approved by people with changes to the payload")
    rejected_share: float | None = Field(description="rejected / decided_by_people; null before any decision")
    changed_share: float | None = Field(description="changed / decided_by_people; null before any decision")

    @classmethod
    def of(cls, version: str, outcomes: Mapping[str, HumanOutcomes]) -> PeopleView:
        o = outcomes.get(version) or HumanOutcomes(
            version=version, requests=0, to_people=0, decided_by_people=0, rejected=0, changed=0
        )
        return cls(
            requests=o.requests,
            to_people=o.to_people,
            decided_by_people=o.decided_by_people,
            rejected=o.rejected,
            changed=o.changed,
            rejected_share=o.rejected_share,
            changed_share=o.changed_share,
        )


class VersionStatsView(WireModel):
    version: str
    count: int
    errors: int
    error_rate: float | None
    error_rate_ci95: tuple[float, float] | None = Field(description="Wilson score interval")
    latency_mean_ms: float | None = Field(description="Exact")
    latency_p50_ms: float | None = Field(description="Estimated from a sample of up to 512 latencies per 10 minutes")
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_samples: int
    mean_confidence: float | None
    enough_samples: bool = Field(description="count >= min_samples: enough to judge")
    people: PeopleView | None = Field(default=None, description="People's verdicts on the requests it led to")

    @classmethod
    def of(cls, s: VersionStats, outcomes: Mapping[str, HumanOutcomes] | None = None) -> VersionStatsView:
        return cls(
            people=PeopleView.of(s.version, outcomes) if outcomes is not None else None,
            version=s.version,
            count=s.count,
            errors=s.errors,
            error_rate=s.error_rate,
            error_rate_ci95=s.error_rate_ci95,
            latency_mean_ms=s.latency_mean_ms,
            latency_p50_ms=s.latency_p50_ms,
            latency_p95_ms=s.latency_p95_ms,
            latency_p99_ms=s.latency_p99_ms,
            latency_samples=s.latency_samples,
            mean_confidence=s.mean_confidence,
            enough_samples=s.enough_samples,
        )


class ModelStats(WireModel):
    model: str
    since: datetime = Field(description="Start of the window (whole minutes)")
    until: datetime
    min_samples: int
    versions: list[VersionStatsView]

    @classmethod
    def of(cls, report: StatsReport, outcomes: Mapping[str, HumanOutcomes] | None = None) -> ModelStats:
        return cls(
            model=report.model,
            since=report.since,
            until=report.until,
            min_samples=report.min_samples,
            versions=[VersionStatsView.of(s, outcomes) for s in report.versions],
        )


class MetricView(WireModel):
    metric: Literal["error_rate", "latency_ms"]
    test: str = Field(description="The statistical test used")
    verdict: Literal["pass", "fail", "inconclusive", "insufficient_data"]
    baseline: float | None
    candidate: float | None
    p_value: float | None = Field(description="One-sided: evidence that the candidate is worse")
    detail: str


class CanaryAnalysis(WireModel):
    """Is the candidate worse than the baseline? pass, fail, inconclusive or insufficient_data."""

    model: str
    baseline: str
    candidate: str
    verdict: Literal["pass", "fail", "inconclusive", "insufficient_data"]
    metrics: list[MetricView]
    baseline_stats: VersionStatsView
    candidate_stats: VersionStatsView
    since: datetime
    until: datetime
    message: str

    @classmethod
    def of(cls, report: CanaryReport, outcomes: Mapping[str, HumanOutcomes] | None = None) -> CanaryAnalysis:
        verdict = report.result.verdict
        message = {
            "pass": "The candidate is no worse within the limits: raising its traffic or promoting it is reasonable.",
            "fail": "The candidate is worse: set its traffic to 0 (set_traffic or rollback_model); do not promote it.",
            "inconclusive": "Not clear yet: keep the canary running and analyze again with more data.",
            "insufficient_data": f"Too few inferences (each side needs {report.min_samples}): keep collecting.",
        }[verdict.value]
        return cls(
            model=report.model,
            baseline=report.baseline.version,
            candidate=report.candidate.version,
            verdict=verdict.value,
            metrics=[
                MetricView(
                    metric=m.metric,
                    test=m.test,
                    verdict=m.verdict.value,
                    baseline=m.baseline,
                    candidate=m.candidate,
                    p_value=m.p_value,
                    detail=m.detail,
                )
                for m in report.result.metrics
            ],
            baseline_stats=VersionStatsView.of(report.baseline, outcomes),
            candidate_stats=VersionStatsView.of(report.candidate, outcomes),
            since=report.since,
            until=report.until,
            message=message,
        )


class ChangeResult(WireModel):
    """A change to a model: applied at once, or waiting for a human's approval."""

    model: str
    change: ChangeView
    approval_status: Literal["pending", "approved", "rejected", "expired", "cancelled"] | None
    production: str | None = Field(description="Production now")
    traffic: dict[str, float] = Field(description="Percent per version now")
    message: str

    @classmethod
    def of(cls, outcome: ChangeOutcome) -> ChangeResult:
        change, request = outcome.change, outcome.request
        if change.status is ChangeStatus.APPLIED:
            message = f"Applied: model {change.model} now serves {_describe(outcome.serving)}."
        elif change.status is ChangeStatus.DROPPED:
            message = f"Not applied ({change.outcome}); nothing changed."
        else:
            message = (
                f"Waiting for a human to approve request {change.request_id}; nothing has changed yet. Call"
                f" get_status with request_id={change.request_id} and wait_seconds=60 to wait; the change applies"
                " as soon as it is approved (get_model shows it)."
            )
        return cls(
            model=change.model,
            change=ChangeView.of(change),
            approval_status=request.status.value if request else None,
            production=outcome.serving.production,
            traffic=traffic(outcome.serving),
            message=message,
        )


class ModelHistory(WireModel):
    """Every change to a model, oldest first; with ``at``, what served it then."""

    model: str
    changes: list[ChangeView]
    at: datetime | None
    production_at: str | None = Field(description="The production version at `at` (null: none, or no `at` given)")
    traffic_at: dict[str, float] | None = Field(description="Percent per version at `at`")

    @classmethod
    def of(cls, history: History) -> ModelHistory:
        served = history.serving_at
        return cls(
            model=history.state.name,
            changes=[ChangeView.of(c) for c in history.changes],
            at=history.at,
            production_at=served.production if served else None,
            traffic_at=traffic(served) if served else None,
        )


def _describe(serving: Serving) -> str:
    return ", ".join(f"{v} {p:g}%" for v, p in traffic(serving).items()) or "no traffic"
