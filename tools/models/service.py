"""ModelService: the model registry and its rollouts, composed from the rollout rules, a ModelStore and
the ApprovalService. No MCP here.

Raising a non-production version's traffic and promoting a version become approval requests (actions
``models.set_traffic`` and ``models.promote``, sent without a confidence, so the default policy always
asks a human). The change is stored as pending, linked to the request, and applied exactly once when the
request is approved: by the server's worker, or lazily by the next read (so an approval given through the
CLI in another process is honoured). Rejected, expired or cancelled requests change nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from signoff.storage import (
    ApprovalRequest,
    ChangeKind,
    ChangeStatus,
    Conflict,
    InvalidInput,
    ModelChange,
    ModelState,
    ModelStore,
    ModelVersion,
    NewChange,
    NotFound,
    Serving,
    Status,
)
from signoff.storage.models.store import Decide
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.clock import Clock
from signoff.tools.models import rollout
from signoff.tools.models.canary import CanaryLimits, CanaryVerdict
from signoff.tools.models.guard import GuardMemory, GuardRule
from signoff.tools.models.input import check_endpoint, check_json, check_name, check_reason
from signoff.tools.models.routing import check_sticky, to_basis_points
from signoff.tools.models.summary import MAX_SUMMARY_CHARS, record_summary, request_summary
from signoff.tools.models.telemetry import ModelTelemetry

notify_log = logging.getLogger("signoff.notify")

GUARD_ACTOR = "signoff-guard"
MOVES_TO_PRODUCTION = "applied at once: it only moves traffic back to production, so no approval is needed"
BACK_TO_APPROVED = "applied at once: it only returns to an approved production version, so no approval is needed"


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSettings:
    limits: CanaryLimits = field(default_factory=CanaryLimits)  #: what the guard and analyze_canary call worse
    guard_enabled: bool = True  #: take a failing canary's traffic away automatically
    guard_interval: float = 30.0  #: seconds between the guard's rounds
    guard_window_seconds: int = 3600  #: the telemetry window the guard judges
    guard_min_samples: int = 100  #: the guard acts only on canaries with at least this many inferences per side
    evidence_window_seconds: int = 3600  #: the window of the stats quoted in approval requests
    refresh_interval: float = 0.02  #: how stale resolve's cached routes may be when another process changes them
    settle_interval: float = 1.0  #: how often resolve/record apply approvals themselves (the worker does at once)


@dataclass(frozen=True, kw_only=True, slots=True)
class Overview:
    state: ModelState
    pending: tuple[ModelChange, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeOutcome:
    change: ModelChange
    request: ApprovalRequest | None  #: the approval request, when the change needs one
    serving: Serving  #: what serves the model now


@dataclass(frozen=True, kw_only=True, slots=True)
class History:
    state: ModelState
    changes: tuple[ModelChange, ...]
    at: datetime | None
    serving_at: Serving | None  #: what served the model at ``at``


class ModelService:
    def __init__(
        self,
        store: ModelStore,
        approvals: ApprovalService,
        *,
        settings: ModelSettings | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.approvals = approvals
        self.settings = settings or ModelSettings()
        self.clock = clock or approvals.clock
        self.telemetry = ModelTelemetry(
            store,
            self.clock,
            limits=self.settings.limits,
            refresh_interval=self.settings.refresh_interval,
            settle_interval=self.settings.settle_interval,
            before_refresh=self.settle,
            seed=seed,
        )
        self.guard_rule = GuardRule.for_schedule(self.settings.guard_interval, self.settings.guard_window_seconds)
        self.guard_memory = GuardMemory(self.guard_rule)

    # -- registry --------------------------------------------------------------------------------

    async def register(
        self,
        name: str,
        version: str,
        endpoint: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[ModelVersion, bool]:
        """A new version, serving nothing yet; ``(version, False)`` for a retry with the same idempotency_key."""
        self.approvals.check_agent_id(agent_id)  # before the change: its record must not be refused afterwards
        check_name(name, "name")
        check_name(version, "version")
        check_endpoint(endpoint)
        documents = {"metadata": dict(metadata or {}), "lineage": dict(lineage or {})}
        for key, document in documents.items():
            check_json(document, key)
        new = ModelVersion(
            model=name,
            version=version,
            endpoint=endpoint,
            metadata=documents["metadata"],
            lineage=documents["lineage"],
            registered_at=self.clock.now(),
            registered_by=agent_id,
            idempotency_key=idempotency_key,
        )
        change = NewChange(
            kind=ChangeKind.REGISTER,
            at=new.registered_at,
            requested_by=agent_id,
            reason=f"registered {version} ({endpoint})",
            payload={"model": name, "version": version, "endpoint": endpoint, **documents},
            outcome="applied at once: a new version serves no traffic",
        )
        stored, created = await self.store.register(new, secrets.token_hex(16), change)
        self.telemetry.invalidate()
        if created:
            registered = next(
                c
                for c in reversed(await self.store.history(name))
                if c.kind is ChangeKind.REGISTER and c.payload.get("version") == version
            )
            await self._record(registered, notify=False)
            return stored, True
        same = (stored.endpoint, stored.metadata, stored.lineage) == (endpoint, new.metadata, new.lineage)
        if idempotency_key is not None and stored.idempotency_key == idempotency_key and same:
            return stored, False
        raise Conflict(
            f"model {name!r} already has version {version!r} (endpoint {stored.endpoint}, registered"
            f" {stored.registered_at.isoformat()}); versions are immutable: register a new version name"
        )

    async def overview(self, name: str) -> Overview:
        await self.settle(name)
        state = await self._state(name)
        return Overview(state=state, pending=tuple(await self.store.pending_changes(name)))

    async def overviews(self) -> list[Overview]:
        await self.settle()
        pending = await self.store.pending_changes()
        return [
            Overview(state=s, pending=tuple(c for c in pending if c.model == s.name))
            for s in await self.store.list_models()
        ]

    # -- changes ---------------------------------------------------------------------------------

    async def set_traffic(
        self,
        name: str,
        weights: Mapping[str, float],
        reason: str,
        agent_id: str | None = None,
        *,
        authenticated: bool = False,
    ) -> ChangeOutcome:
        """``authenticated``: ``agent_id`` is vouched for (a token), so a change applied at once may not
        supersede a change another identity is waiting on; rollback_model remains for emergencies."""
        self.approvals.check_agent_id(agent_id)  # a change applied at once is recorded after it: check first
        reason = check_reason(reason)
        await self.settle(name)
        state = await self._state(name)
        points = to_basis_points(weights, [v.version for v in state.versions])
        if state.serving.production is None:  # a split beside no production could not be rolled back or guarded
            raise InvalidInput(
                f"model {name!r} has no production version, so a traffic split could be neither rolled back nor"
                " watched by the canary guard: promote a version first (promote_model; it takes all traffic once"
                " approved), then start a canary beside it with set_traffic"
            )
        if points == dict(state.serving.weights):
            raise InvalidInput(f"model {name!r} already serves {rollout.describe(points)}; nothing to change")
        check_sticky(
            [v.version for v in state.versions], state.serving.weights, points, production=state.serving.production
        )
        payload = rollout.traffic_payload(name, points, state.serving)
        if not rollout.needs_approval(state.serving, points):
            if authenticated:
                await self._refuse_superseding(name, agent_id)
            new = self._new(ChangeKind.SET_TRAFFIC, agent_id, reason, payload, MOVES_TO_PRODUCTION)
            return await self._apply_now(
                name, new, rollout.unchanged_since(state, lambda s: rollout.with_traffic(s, points))
            )
        raised = [
            v for v, bp in points.items() if v != state.serving.production and bp > state.serving.weights.get(v, 0)
        ]
        evidence = await self.telemetry.evidence(state, raised, self.settings.evidence_window_seconds)
        facts = (
            f"Set traffic of model {name} to {rollout.describe(points)}"
            f" (now {rollout.describe(state.serving.weights)}). {evidence}"
        )
        return await self._request(name, ChangeKind.SET_TRAFFIC, payload, facts, reason, agent_id)

    async def promote(self, name: str, version: str, reason: str, agent_id: str | None = None) -> ChangeOutcome:
        self.approvals.check_agent_id(agent_id)
        reason = check_reason(reason)
        await self.settle(name)
        state = await self._state(name)
        if state.version(version) is None:
            raise InvalidInput(
                f"model {name!r} has no version {version!r}; registered: {', '.join(v.version for v in state.versions)}"
            )
        if state.serving.production == version:
            raise InvalidInput(f"{version} is already production of model {name!r}; nothing to promote")
        current = state.serving.production or "none"
        evidence = await self.telemetry.evidence(state, [version], self.settings.evidence_window_seconds)
        facts = (
            f"Promote model {name} version {version} to production (now {current}; it will take all traffic)."
            f" {evidence}"
        )
        chosen = state.version(version)
        assert chosen is not None
        payload = rollout.promote_payload(name, version, chosen.endpoint, state.serving)
        return await self._request(name, ChangeKind.PROMOTE, payload, facts, reason, agent_id)

    async def rollback(self, name: str, reason: str, agent_id: str | None = None) -> ChangeOutcome:
        """Canary traffic back to production; or, with no canary, production back to ``previous``. No approval."""
        self.approvals.check_agent_id(agent_id)  # applied before it is recorded: a record refused later is lost
        reason = check_reason(reason)
        await self.settle(name)
        state = await self._state(name)
        serving = state.serving
        if rollout.has_canary(serving):
            target = rollout.to_production(serving)
        else:
            prior = rollout.prior_production(await self.store.history(name), serving.previous or "", serving.production)
            target = rollout.rolled_back(serving, prior)
        payload = {"model": name, "from": rollout.serving_doc(serving), "to": rollout.serving_doc(target)}
        new = self._new(ChangeKind.ROLLBACK, agent_id, reason, payload, BACK_TO_APPROVED)
        return await self._apply_now(name, new, rollout.unchanged_since(state, lambda _: target), notify=True)

    async def guard_once(self) -> list[ModelChange]:
        """Take traffic away from every canary that fails its analysis against production."""
        if not self.settings.guard_enabled:
            return []
        await self.settle()
        acted, running = [], []
        limits = self.guard_rule.limits_for(self.settings.limits)  # stricter: the guard looks again and again
        for state in await self.store.list_models():
            production = state.serving.production
            for version in [v for v in state.serving.weights if production is not None and v != production]:
                assert production is not None
                running.append((state.name, version))
                report = await self.telemetry.analyze(
                    state.name,
                    production,
                    version,
                    min_samples=self.settings.guard_min_samples,
                    window_seconds=self.settings.guard_window_seconds,
                    limits=limits,
                )
                if not self.guard_memory.observe((state.name, version), report.result, report.until):
                    continue
                failed = "; ".join(m.detail for m in report.result.metrics if m.verdict is CanaryVerdict.FAIL)
                reason = f"canary {version} failed its analysis against {production}: {failed}"
                payload = {
                    "model": state.name,
                    "version": version,
                    "verdict": "fail",
                    "from": rollout.serving_doc(state.serving),
                }
                new = self._new(ChangeKind.GUARD, GUARD_ACTOR, reason, payload, "applied at once by the canary guard")
                try:
                    outcome = await self._apply_now(state.name, new, rollout.take_away(version), notify=True)
                except Conflict:
                    continue  # someone else took it away first
                notify_log.warning("model %s: %s; its traffic is back on %s", state.name, reason, production)
                acted.append(outcome.change)
        self.guard_memory.retain(running)  # a canary stopped or restarted starts afresh
        return acted

    async def settle(self, name: str | None = None) -> list[ModelChange]:
        """Apply approved pending changes and drop decided-against ones, and approved ones whose approval lapsed
        before they were settled (no server ran meanwhile); each exactly once, in any process."""
        decided: list[tuple[ModelChange, ApprovalRequest | None]] = []
        for change in await self.store.pending_changes(name):
            try:
                request = await self.approvals.get(change.request_id or "")  # expires an overdue one: fail closed
            except NotFound:
                request = None
            if request is None or request.status is not Status.PENDING:
                decided.append((change, request))
        decided.sort(key=lambda d: (d[1].decided_at if d[1] and d[1].decided_at else self.clock.now(), d[0].seq))
        settled: list[ModelChange] = []
        ttl = self.approvals.receipt_ttl_seconds  # an approval lapses when its receipt would expire
        for change, request in decided:  # in the order they were decided: the first approval wins
            now = self.clock.now()
            try:
                done = await self.store.settle(change.seq, now, rollout.settlement(request, now, ttl))
            except Conflict:
                continue  # settled by another process first
            settled.append(done)
            if done.status is ChangeStatus.APPLIED and request is not None:
                try:  # the audit log shows the approval was used, once (at the moment it was applied)
                    await self.approvals.consume(request.id, now=now)
                except Conflict:
                    pass  # used already: this process or another got here first
                except Exception:  # the change applied; finish settling, and say the log is short of it
                    notify_log.exception("model change %d applied, but its approval was not marked used", done.seq)
        applied = {c.model for c in settled if c.status is ChangeStatus.APPLIED}
        if applied:
            self.telemetry.invalidate()
            for model in sorted(applied):
                await self._withdraw_stale(
                    model, "the model changed after it was requested (an approved change applied)"
                )
        return settled

    async def history(self, name: str, at: datetime | None = None) -> History:
        await self.settle(name)
        state = await self._state(name)
        changes = tuple(await self.store.history(name))
        serving_at = rollout.serving_at(changes, at) if at is not None else None
        return History(state=state, changes=changes, at=at, serving_at=serving_at)

    # -- helpers ---------------------------------------------------------------------------------

    async def _state(self, name: str) -> ModelState:
        state = await self.store.get_model(name)
        if state is None:
            raise NotFound(f"no model named {name!r}; list_models shows the registered models")
        return state

    def _new(
        self, kind: ChangeKind, agent_id: str | None, reason: str, payload: dict[str, Any], outcome: str
    ) -> NewChange:
        return NewChange(
            kind=kind, at=self.clock.now(), requested_by=agent_id, reason=reason, payload=payload, outcome=outcome
        )

    async def _apply_now(self, name: str, new: NewChange, decide: Decide, *, notify: bool = False) -> ChangeOutcome:
        change = await self.store.apply_now(name, new, decide)
        self.telemetry.invalidate()
        assert change.serving is not None
        await self._record(change, notify=notify)
        await self._withdraw_stale(name, f"superseded by a {change.kind} ({change.reason})")
        return ChangeOutcome(change=change, request=None, serving=change.serving)

    async def _request(
        self, name: str, kind: ChangeKind, payload: dict[str, Any], facts: str, reason: str, agent_id: str | None
    ) -> ChangeOutcome:
        """``facts``: the server's words (the change, the evidence), which the reviewers see whole before the reason."""
        for waiting in await self.store.pending_changes(name):  # the same change asked again: the same request
            if waiting.kind is kind and waiting.payload == payload:
                return await self._outcome(waiting)
        limit = min(MAX_SUMMARY_CHARS, self.approvals.policy.config.limits.max_summary_chars)
        summary = request_summary(facts, reason, limit)
        draft = Draft(
            action=rollout.ACTION_OF[kind], summary=summary, payload=payload, agent_id=agent_id, human_only=True
        )
        request = await self.approvals.request_approval(draft)
        new = NewChange(
            kind=kind,
            at=request.created_at,
            requested_by=agent_id,
            reason=reason,
            payload=payload,
            request_id=request.id,
        )
        change = await self.store.add_pending(name, new)
        if request.status is not Status.PENDING:  # the operator's policy decided at once
            await self.settle(name)
        return await self._outcome(change)

    async def _outcome(self, change: ModelChange) -> ChangeOutcome:
        current = await self.store.get_change(change.seq)
        assert current is not None
        request = await self.approvals.get(current.request_id) if current.request_id else None
        return ChangeOutcome(change=current, request=request, serving=(await self._state(current.model)).serving)

    async def _record(self, change: ModelChange, *, notify: bool) -> None:
        """Put a change applied at once in the audit log, as a request the policy approved under the rule that let
        it apply; with ``notify``, the reviewers see it too (a rollback, the guard taking a canary off). It is
        written after the change, so a crash in between can lose the record, never invent one. What the caller
        controls is checked before the change (``check_agent_id``, ``check_reason``), so a failure here is the
        storage's or the operator's policy's (e.g. limits lowered below a register's payload), and is logged."""
        facts = f"Model {change.model}: {change.kind} by {change.requested_by or 'an agent'}."
        if change.serving is not None and change.kind is not ChangeKind.REGISTER:
            facts += f" Now serving {rollout.describe(change.serving.weights)}."
        limit = min(MAX_SUMMARY_CHARS, self.approvals.policy.config.limits.max_summary_chars)
        draft = Draft(
            action=rollout.RECORDED_AS[change.kind],
            summary=record_summary(facts, change.reason, limit),
            payload={**change.payload, "change_seq": change.seq},
            agent_id=change.requested_by,
        )
        try:
            await self.approvals.record(draft, change.outcome or "applied at once", notify=notify)
        except Exception as exc:  # the change stands, so this must not look like a failed change; say it loudly
            notify_log.error(
                "model %s: change %d applied but not recorded in the audit log: %s", change.model, change.seq, exc
            )

    async def _refuse_superseding(self, name: str, agent_id: str | None) -> None:
        for waiting in await self.store.pending_changes(name):
            if waiting.requested_by != agent_id:
                raise Conflict(
                    f"model {name!r} has a {waiting.kind} by {waiting.requested_by or 'another caller'} waiting for"
                    f" approval (request {waiting.request_id}); this change would cancel it, so it was not made."
                    " Wait for the reviewers' decision, or use rollback_model if the model must go back now"
                )

    async def _withdraw_stale(self, name: str, why: str) -> None:
        """Cancel the requests of pending changes that no longer apply (reviewers are notified), then drop them."""
        state = await self._state(name)
        stale = [c for c in await self.store.pending_changes(name) if isinstance(rollout.after_approval(c, state), str)]
        for change in stale:
            try:
                await self.approvals.cancel(change.request_id or "", f"superseded: {why}")
            except (Conflict, NotFound):
                pass  # decided meanwhile: settle drops it with that outcome
        if stale:
            await self.settle(name)
