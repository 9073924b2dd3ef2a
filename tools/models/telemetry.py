"""Routing and telemetry: resolve_model (on every inference's path), recording inferences, stats, canary analysis.

``resolve`` reads a routing table cached in memory. The cache is dropped when this process changes a
model, and checked against the store's state version at most every ``refresh_interval`` seconds, so a
change made by another process (a CLI approval, another server) is seen within that time.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio

from signoff.storage import Conflict, Inference, InvalidInput, ModelState, ModelStore, NotFound, VersionTelemetry
from signoff.storage.models.sampling import minute_of
from signoff.tools.clock import Clock
from signoff.tools.models import canary
from signoff.tools.models.routing import BUCKETS, Split, bucket_of
from signoff.tools.models.stats import VersionStats, empty, evidence, version_stats

MAX_BATCH = 10_000
MAX_WINDOW_SECONDS = 30 * 86_400
DECISION_ID = re.compile(r"dec_(\d+)_(\d+)_[0-9a-f]{8}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """What ``resolve`` needs to know about one model, read once and cached."""

    model: str
    revision: int
    salt: bytes
    order: tuple[str, ...]  #: every version, in registration order
    endpoints: Mapping[str, str]
    production: str | None
    split: Split

    @classmethod
    def of(cls, state: ModelState) -> Route:
        order = tuple(v.version for v in state.versions)
        return cls(
            model=state.name,
            revision=state.revision,
            salt=bytes.fromhex(state.salt),
            order=order,
            endpoints={v.version: v.endpoint for v in state.versions},
            production=state.serving.production,
            split=Split.of(order, state.serving.weights),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Routed:
    model: str
    version: str
    endpoint: str
    arm: Literal["production", "canary"]
    bucket: int
    decision_id: str  #: ``dec_<revision>_<bucket>_<random>``: which split chose, checked by record


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """One inference as a caller reports it."""

    model: str
    version: str
    latency_ms: float
    ok: bool
    confidence: float | None = None
    decision_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StatsReport:
    model: str
    since: datetime
    until: datetime
    min_samples: int
    versions: tuple[VersionStats, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryReport:
    model: str
    since: datetime
    until: datetime
    min_samples: int
    baseline: VersionStats
    candidate: VersionStats
    result: canary.CanaryResult


class ModelTelemetry:
    def __init__(
        self,
        store: ModelStore,
        clock: Clock,
        *,
        limits: canary.CanaryLimits,
        refresh_interval: float = 0.02,
        settle_interval: float = 1.0,
        before_refresh: Callable[[], Awaitable[object]] | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits
        self.refresh_interval = refresh_interval
        self.settle_interval = settle_interval
        self._before_refresh = before_refresh
        self._routes: dict[str, Route] = {}
        self._splits: dict[tuple[str, int], Split] = {}
        self._state_version: int | None = None
        self._checked_at = -math.inf
        self._settled_at = -math.inf
        self._rng = random.Random(seed)

    def invalidate(self) -> None:
        """Forget the cached routes: this process just changed a model."""
        self._routes.clear()
        self._checked_at = -math.inf

    async def route(self, name: str, *, fresh: bool = False) -> Route:
        now = anyio.current_time()
        if self._before_refresh is not None and now - self._settled_at >= self.settle_interval:
            # A safety net only: the server's worker applies approvals as they land. Its cost grows with the
            # pending changes, so the hot path pays it at most once a second, not on every refresh.
            self._settled_at = now
            await self._before_refresh()
        if now - self._checked_at >= self.refresh_interval:
            self._checked_at = now
            version = await self.store.state_version()
            if version != self._state_version:
                self._routes.clear()
                self._state_version = version
        route = None if fresh else self._routes.get(name)
        if route is None:
            state = await self.store.get_model(name)
            if state is None:
                raise NotFound(f"no model named {name!r}; list_models shows the registered models")
            route = self._routes[name] = Route.of(state)
        return route

    async def resolve(self, name: str, routing_key: str | None) -> Routed:
        route = await self.route(name)
        bucket = bucket_of(route.salt, routing_key) if routing_key is not None else self._rng.randrange(BUCKETS)
        arm = route.split.choose(bucket)
        if arm is None:
            raise Conflict(
                f"model {name!r} serves no traffic yet: promote a version with promote_model and have it approved"
            )
        return Routed(
            model=name,
            version=arm.version,
            endpoint=route.endpoints[arm.version],
            arm="production" if arm.version == route.production else "canary",
            bucket=bucket,
            decision_id=f"dec_{route.revision}_{bucket}_{self._rng.getrandbits(32):08x}",
        )

    async def record(self, reports: Sequence[Report]) -> int:
        """Validate every report, then store them all in one transaction (or none)."""
        if not reports:
            raise InvalidInput("items is empty: send at least one inference")
        if len(reports) > MAX_BATCH:
            raise InvalidInput(f"{len(reports)} items; send at most {MAX_BATCH} per call")
        now = self.clock.now()
        items = []
        for i, report in enumerate(reports):
            where = f"items[{i}]: " if len(reports) > 1 else ""
            try:
                await self._check(report)
            except InvalidInput as exc:
                raise InvalidInput(where + exc.message) from None
            except NotFound as exc:
                raise NotFound(where + exc.message) from None
            items.append(
                Inference(
                    model=report.model,
                    version=report.version,
                    at=now,
                    latency_ms=float(report.latency_ms),
                    ok=report.ok,
                    confidence=report.confidence,
                )
            )
        await self.store.record_inferences(items)
        return len(items)

    async def check_link(self, model: str, version: str, decision_id: str | None) -> None:
        """That ``version`` is a registered version of ``model`` and ``decision_id`` (when given) is one
        resolve_model issued for that version: the link a request_approval call may carry. NotFound or InvalidInput."""
        await self._check(Report(model=model, version=version, latency_ms=0.0, ok=True, decision_id=decision_id))

    async def _check(self, report: Report) -> None:
        route = await self.route(report.model)
        if report.version not in route.endpoints:
            route = await self.route(report.model, fresh=True)  # it may have been registered a moment ago
            if report.version not in route.endpoints:
                raise InvalidInput(
                    f"model {report.model!r} has no version {report.version!r}; registered: {', '.join(route.order)}"
                )
        if not math.isfinite(report.latency_ms) or report.latency_ms < 0:
            raise InvalidInput(f"latency_ms is {report.latency_ms}; give the inference's duration in milliseconds")
        if report.confidence is not None and not 0 <= report.confidence <= 1:
            raise InvalidInput(f"confidence is {report.confidence}; give a number from 0 to 1, or omit it")
        if report.decision_id is not None:
            await self._check_decision(route, report)

    async def _check_decision(self, route: Route, report: Report) -> None:
        match = DECISION_ID.fullmatch(report.decision_id or "")
        not_ours = (
            f"decision_id {report.decision_id!r} was not issued by resolve_model for model {route.model!r};"
            " pass the decision_id resolve_model returned, or omit it"
        )
        if match is None:
            raise InvalidInput(not_ours)
        revision, bucket = int(match[1]), int(match[2])
        split = route.split if revision == route.revision else await self._split_at(route, revision, not_ours)
        arm = split.choose(bucket) if bucket < BUCKETS else None
        if arm is None or arm.version != report.version:
            raise InvalidInput(
                f"decision_id {report.decision_id} routed to {arm.version if arm else 'no version'}, not"
                f" {report.version!r}: record the version resolve_model returned with it"
            )

    async def _split_at(self, route: Route, revision: int, not_ours: str) -> Split:
        key = (route.model, revision)
        if key not in self._splits:
            change = await self.store.get_change(revision)
            if change is None or change.model != route.model or change.serving is None:
                raise InvalidInput(not_ours)
            self._splits[key] = Split.of(route.order, change.serving.weights)
        return self._splits[key]

    def window(self, window_seconds: int) -> tuple[datetime, datetime]:
        """Whole minutes: the current one and enough before it to cover ``window_seconds``."""
        if not 60 <= window_seconds <= MAX_WINDOW_SECONDS:
            raise InvalidInput(f"window_seconds is {window_seconds}; use 60 to {MAX_WINDOW_SECONDS} (30 days)")
        until = datetime.fromtimestamp((minute_of(self.clock.now()) + 1) * 60, UTC)
        return until - timedelta(minutes=math.ceil(window_seconds / 60)), until

    async def _telemetry(
        self, name: str, window_seconds: int
    ) -> tuple[Route, datetime, datetime, dict[str, VersionTelemetry]]:
        route = await self.route(name)
        since, until = self.window(window_seconds)
        found = {t.version: t for t in await self.store.telemetry(name, since, until)}
        return route, since, until, found

    async def stats(self, name: str, window_seconds: int = 3600, min_samples: int = 100) -> StatsReport:
        route, since, until, found = await self._telemetry(name, window_seconds)
        versions = await anyio.to_thread.run_sync(  # sorting a month's samples must not stall the event loop
            lambda: tuple(version_stats(found.get(v) or empty(v), min_samples) for v in route.order)
        )
        return StatsReport(model=name, since=since, until=until, min_samples=min_samples, versions=versions)

    async def analyze(
        self,
        name: str,
        baseline: str,
        candidate: str,
        min_samples: int = 100,
        window_seconds: int = 3600,
        limits: canary.CanaryLimits | None = None,
    ) -> CanaryReport:
        """``limits`` defaults to the configured ones; the guard passes its stricter own."""
        limits = limits or self.limits
        if min_samples < 1:
            raise InvalidInput(f"min_samples is {min_samples}; it must be at least 1")
        if baseline == candidate:
            raise InvalidInput(f"baseline and candidate are both {baseline!r}; compare two different versions")
        route, since, until, found = await self._telemetry(name, window_seconds)
        for version in (baseline, candidate):
            if version not in route.endpoints:
                raise InvalidInput(f"model {name!r} has no version {version!r}; registered: {', '.join(route.order)}")
        data_b, data_c = found.get(baseline) or empty(baseline), found.get(candidate) or empty(candidate)

        def judge() -> CanaryReport:  # CPU only: run off the event loop
            rng = random.Random(f"{name}|{baseline}|{candidate}|{since.isoformat()}")  # the same data, the same answer
            return CanaryReport(
                model=name,
                since=since,
                until=until,
                min_samples=min_samples,
                baseline=version_stats(data_b, min_samples),
                candidate=version_stats(data_c, min_samples),
                result=canary.analyze(evidence(data_b, rng), evidence(data_c, rng), limits, min_samples),
            )

        return await anyio.to_thread.run_sync(judge)

    async def evidence(self, state: ModelState, versions: list[str], window: int) -> str:
        """For an approval request's summary: the versions' stats, production's, and each canary's verdict."""
        stats = {s.version: s for s in (await self.stats(state.name, window)).versions}
        production = state.serving.production
        lines = []
        for version in [*versions, *([production] if production and production not in versions else [])]:
            s = stats[version]
            if s.count == 0 or s.error_rate is None or s.error_rate_ci95 is None:
                lines.append(f"{version}: no inferences in the last {window // 60} min")
                continue
            low, high = s.error_rate_ci95
            p95 = f", p95 {s.latency_p95_ms:.0f} ms" if s.latency_p95_ms is not None else ""
            lines.append(f"{version}: {s.count} inferences, error rate {s.error_rate:.2%} ({low:.2%}-{high:.2%}){p95}")
        for version in versions:
            if production and version != production:
                report = await self.analyze(state.name, production, version, window_seconds=window)
                details = "; ".join(f"{m.metric} {m.verdict}" for m in report.result.metrics)
                lines.append(f"canary verdict {version} vs {production}: {report.result.verdict} ({details})")
        return "Evidence: " + "; ".join(lines) + "."
