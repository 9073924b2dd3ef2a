"""ApprovalService: the use cases, composed from the policy, the lifecycle and a Store. No MCP here."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio

from signoff.storage import (
    ActionHistory,
    ApprovalRequest,
    Conflict,
    DecidedBy,
    EventKind,
    Forbidden,
    InvalidInput,
    NewEvent,
    Page,
    RequestQuery,
    Status,
    Store,
    Transition,
    Trigger,
    TriggerKind,
    Verdict,
    tracing,
)
from signoff.storage.approvals.store import Change
from signoff.storage.audit import ChainReport, verify_store
from signoff.storage.canonical import payload_sha256
from signoff.storage.errors import AskedBefore, DatabaseUnavailable, unknown_request
from signoff.storage.payload_numbers import history_names, numeric_leaves
from signoff.storage.text import nul_at
from signoff.tools.access import normal_name
from signoff.tools.approvals import fairness, lifecycle, receipts
from signoff.tools.approvals.lookups import Prefetched
from signoff.tools.approvals.policy import Outcome, Policy, PolicyDecision, PolicyInput
from signoff.tools.approvals.shape import PayloadProfile
from signoff.tools.approvals.streams import Windows
from signoff.tools.approvals.trusted import TrustedData
from signoff.tools.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float, str], Awaitable[None]]

#: The flag signoff puts on the requests ``permission_prompt`` makes itself; agents may not send it (nor any
#: ``signoff:`` flag), so an agent cannot make a request that a permission prompt would take for its own.
PERMISSION_PROMPT_FLAG = "signoff:permission-prompt"
RESERVED_FLAG_PREFIX = "signoff:"
#: Actions of the model plane's own requests: it applies the change it recorded, so none is approved with changes.
FIXED_PAYLOAD_PREFIX = "models."
DATABASE_RETRY_SECONDS = 0.5  #: how soon a wait reads again after the database failed (a restart, a failover)

_STATUS_OF = {
    Outcome.APPROVE: Status.APPROVED,
    Outcome.REJECT: Status.REJECTED,
    Outcome.REVIEW: Status.PENDING,
}


class _RandomIds:
    """80-bit random ids, from ``os.urandom`` read 4 KiB at a time: one system call per 409 ids instead of one
    per id (a system call is the expensive part on a busy virtual machine, and this runs on every request)."""

    _ID_BYTES = 10
    _BLOCK = 4096 - 4096 % _ID_BYTES

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._forget)  # a forked child must not hand out its parent's ids

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block = b""

    def next(self) -> str:
        with self._lock:
            if self._offset >= len(self._block):
                self._block, self._offset = os.urandom(self._BLOCK), 0
            start, self._offset = self._offset, self._offset + self._ID_BYTES
            raw = self._block[start : self._offset]
        return "req_" + base64.b32encode(raw).decode().lower()


new_request_id = _RandomIds().next


@dataclass(frozen=True, kw_only=True, slots=True)
class Draft:
    """What an agent asks for; validated by the policy before anything is stored."""

    action: str
    summary: str
    payload: dict[str, object]
    confidence: float | None = None
    flags: tuple[str, ...] = ()
    agent_id: str | None = None
    idempotency_key: str | None = None
    expires_in_seconds: int | None = None
    human_only: bool = False  #: never approved by policy alone (model promotions, traffic increases)
    permission_prompt: bool = False  #: made by permission_prompt itself: stored with PERMISSION_PROMPT_FLAG
    #: the model behind the request (model, version, decision_id), checked against the model plane by the caller
    model: str | None = None
    model_version: str | None = None
    model_decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    request: ApprovalRequest
    created: bool  #: made by this call (False: an earlier request with the same idempotency key, or a wait's read)


def asked_again(earlier: ApprovalRequest) -> Trigger:
    """Why a request the policy would approve goes to people: ``earlier``, the same agent's request with the same
    action and payload, went to people and they did not approve it (``Store.create_request``'s
    ``refuse_approval_if_asked_before``). Asking again must not turn their "no" (or their silence) into a yes."""
    match earlier.status:
        case Status.REJECTED:
            vetoes = [v.reviewer for v in earlier.votes if v.verdict is Verdict.REJECT]
            outcome = f"rejected by {vetoes[-1]}" if vetoes else "rejected"
        case Status.PENDING:
            outcome = "still pending"
        case _:
            outcome = earlier.status.value
    return Trigger(
        kind=TriggerKind.RULE,
        detail=f"asked again: request {earlier.id} with this same action and payload went to people and was not"
        f" approved ({outcome}); a person decides this one too",
    )


def _refuse_nul(*fields: tuple[str, object]) -> None:
    """InvalidInput naming the first field holding a NUL character (which PostgreSQL cannot store): refused on
    every engine alike, and before anything is stored."""
    for name, value in fields:
        if (where := nul_at(value, name)) is not None:
            raise InvalidInput(
                f"{where} contains a NUL character (\\x00), which signoff does not store: remove it, or encode"
                " binary data (base64, hex) before sending it"
            )


class ApprovalService:
    def __init__(
        self,
        store: Store,
        policy: Policy | None = None,
        clock: Clock | None = None,
        *,
        progress_interval: float = 5.0,
        on_policy_seconds: Callable[[float], None] | None = None,
        claim_seconds: float = 900.0,
        trusted: TrustedData | None = None,
    ) -> None:
        self.store = store
        self.windows = Windows(store)  #: what fairness and the out-of-distribution checks judge, kept current
        self.trusted = trusted or TrustedData()  #: reads the policy's [[lookups]] (files, databases), cached
        self.policy = policy or Policy()
        self.clock = clock or SystemClock()
        self.progress_interval = progress_interval
        self.on_policy_seconds = on_policy_seconds  #: told how long each policy evaluation took (metrics)
        self.claim_seconds = claim_seconds  #: how long a reviewer's claim stands before it lapses by itself
        self.stopping = False  #: set by stop(): the server is shutting down, waits answer at once
        self._sleeping: set[anyio.CancelScope] = set()  # the waits now asleep in wait_for_change

    def stop(self) -> None:
        """The server is stopping: every wait (now or later) answers at once with the request as it stands."""
        self.stopping = True
        for scope in self._sleeping:
            scope.cancel()

    async def request_approval(self, draft: Draft) -> ApprovalRequest:
        """Run the policy and record the request with its verdict (or as pending, for people to decide)."""
        return (await self.submit(draft)).request

    async def submit(self, draft: Draft) -> Submitted:
        """``request_approval``: the request, and whether this call made it (not an earlier request with the same
        idempotency key)."""
        if draft.idempotency_key is not None and not draft.idempotency_key.strip():
            raise InvalidInput("idempotency_key is empty: omit it, or pass a non-empty key that is unique per action")
        _refuse_nul(
            ("action", draft.action),
            ("summary", draft.summary),
            ("payload", draft.payload),
            ("flags", draft.flags),
            ("agent_id", draft.agent_id),
            ("idempotency_key", draft.idempotency_key),
        )
        reserved = [f for f in draft.flags if isinstance(f, str) and normal_name(f).startswith(RESERVED_FLAG_PREFIX)]
        if reserved:
            raise InvalidInput(
                f"flag {reserved[0]!r} is reserved: flags starting with {RESERVED_FLAG_PREFIX!r} are set by signoff"
                " itself; remove it or use another name"
            )
        policy_input = PolicyInput(
            action=draft.action,
            summary=draft.summary,
            payload=draft.payload,
            confidence=draft.confidence,
            flags=draft.flags,
            agent_id=draft.agent_id,
            expires_in_seconds=draft.expires_in_seconds,
        )
        history, streams = None, None
        policy = self.policy  # one policy decides the whole request, even if a reload replaces it meanwhile
        watched = policy.watched_groups(draft.action)
        if policy.wants_history or watched or policy.config.lookups:
            policy.validate(policy_input)  # before reading history for it; evaluate validates in any case
        if policy.wants_history:
            fields = history_names(numeric_leaves(draft.payload))
            history = await self.store.action_history(draft.action, draft.agent_id, fields)
        if watched:
            streams = await self.outcome_streams(policy, watched)
        profile = (
            await self.windows.recent_profile(draft.action, policy.config.anomaly) if policy.wants_profile else None
        )
        lookups = await self._lookups(policy, policy_input)
        decision = self._evaluate(policy, policy_input, history, streams, profile, lookups)
        if draft.human_only and decision.outcome is Outcome.APPROVE:
            person = Trigger(kind=TriggerKind.RULE, detail=f"{draft.action} always needs a person's approval")
            decision = dataclasses.replace(decision, outcome=Outcome.REVIEW, triggers=(person, *decision.triggers))
        if redaction := policy.config.redact.redaction:  # a trigger never keeps a value [redact] masks
            decision = dataclasses.replace(decision, triggers=redaction.triggers(decision.triggers, draft.payload))
        request = self._new_request(draft, decision, _STATUS_OF[decision.outcome], policy.version)
        try:
            stored, created = await self.store.create_request(
                request,
                _traced(lifecycle.creation_events(request)),
                notify=request.status is Status.PENDING,
                refuse_approval_if_asked_before=True,
            )
        except AskedBefore as refused:  # an approval would undo what people made of the same ask: they decide
            again = dataclasses.replace(
                decision, outcome=Outcome.REVIEW, triggers=(asked_again(refused.earlier), *decision.triggers)
            )
            request = self._new_request(draft, again, Status.PENDING, policy.version)
            stored, created = await self.store.create_request(
                request, _traced(lifecycle.creation_events(request)), notify=True
            )
        tracing.annotate(request_id=stored.id, action=stored.action, status=stored.status.value, created=created)
        if not created and stored.payload_sha256 != request.payload_sha256:
            raise Conflict(
                f"idempotency_key {draft.idempotency_key!r} was already used for request {stored.id} with"
                " different action or payload; use a new idempotency_key for a different request"
            )
        if created:
            logger.info(
                "request created: %s (%s, %s)",
                stored.id,
                stored.action,
                stored.status.value,
                extra={"request_id": stored.id, "action": stored.action, "status": stored.status},
            )
        return Submitted(stored, created)

    def check_agent_id(self, agent_id: str | None) -> None:
        """Raise ``InvalidInput`` if a request or a record would be refused for ``agent_id`` (the policy's rule, and
        no NUL): for changes made before they are recorded, which must check it first."""
        _refuse_nul(("agent_id", agent_id))
        self.policy.validate_agent_id(agent_id)

    async def record(self, draft: Draft, rule: str, *, notify: bool) -> ApprovalRequest:
        """A change that needed nobody's approval (a rollback, the canary guard), stored as a request the policy
        approved at once under ``rule``: so it is in the audit log and, with ``notify``, shown to the reviewers.
        The policy's rules still pick its channel and approvers; its outcome is not asked."""
        policy_input = PolicyInput(
            action=draft.action,
            summary=draft.summary,
            payload=draft.payload,
            confidence=None,
            flags=(),
            agent_id=draft.agent_id,
            expires_in_seconds=None,
        )
        decision = self._evaluate(self.policy, policy_input, None)
        because = Trigger(kind=TriggerKind.RULE, detail=rule)
        decision = dataclasses.replace(decision, outcome=Outcome.APPROVE, triggers=(because,))
        request = self._new_request(draft, decision, Status.APPROVED, self.policy.version)
        stored, _ = await self.store.create_request(request, lifecycle.creation_events(request), notify=notify)
        # used at once: a record is not an approval anything may act on (a permission prompt, a second change)
        return await self._update(stored.id, lifecycle.consume)

    def _evaluate(
        self,
        policy: Policy,
        policy_input: PolicyInput,
        history: ActionHistory | None,
        streams: Mapping[int, fairness.Counts] | None = None,
        profile: PayloadProfile | None = None,
        lookups: Prefetched | None = None,
    ) -> PolicyDecision:
        started = time.perf_counter()  # a duration for metrics, not a time any decision depends on
        with tracing.span("signoff.policy.evaluate", attributes={"signoff.action": policy_input.action}) as span:
            try:
                decision = policy.evaluate(policy_input, history, streams, profile, lookups)
            finally:
                if self.on_policy_seconds is not None:
                    self.on_policy_seconds(time.perf_counter() - started)
            span.set(
                outcome=decision.outcome.value,
                triggers=",".join(sorted({t.kind.value for t in decision.triggers})),
                policy_version=policy.version,
            )
            return decision

    async def outcome_streams(self, policy: Policy, watched: list[int]) -> dict[int, fairness.Counts]:
        """The recent outcome counts of each of the policy's ``[[fairness.groups]]`` in ``watched`` (by index)."""
        return {i: await self.windows.outcome_counts(policy.config.fairness.groups[i]) for i in watched}

    async def _lookups(self, policy: Policy, policy_input: PolicyInput) -> Prefetched | None:
        """The answers of the lookups the policy may ask about this request (validated already): from the cache,
        or read on a worker thread (a file's load or a query blocks)."""
        if not policy.config.lookups:
            return None
        answers = {}
        for lookup, key in policy.lookup_keys(policy_input):
            found = self.trusted.cached(lookup, key)
            if found is None:
                found = await anyio.to_thread.run_sync(self.trusted.answer, lookup, key)
            answers[(lookup, key)] = found
        return Prefetched(answers)

    def _new_request(
        self, draft: Draft, decision: PolicyDecision, status: Status, policy_version: str
    ) -> ApprovalRequest:
        now = self.clock.now()
        return ApprovalRequest(
            id=new_request_id(),
            action=draft.action,
            summary=draft.summary,
            payload=draft.payload,
            payload_sha256=payload_sha256(draft.action, draft.payload),
            confidence=draft.confidence,
            flags=(*draft.flags, PERMISSION_PROMPT_FLAG) if draft.permission_prompt else draft.flags,
            agent_id=draft.agent_id,
            idempotency_key=draft.idempotency_key,
            status=status,
            decided_by=None if status is Status.PENDING else DecidedBy.POLICY,
            triggers=decision.triggers,
            approvals_required=decision.approvals_required,
            priority=decision.priority,
            created_at=now,
            expires_at=now + timedelta(seconds=decision.expires_in_seconds),
            decided_at=None if status is Status.PENDING else now,
            channel=decision.channel,
            approvers=decision.approvers,
            escalate_at=now + timedelta(seconds=decision.escalate_after_seconds)
            if status is Status.PENDING and decision.escalate_after_seconds
            else None,
            escalate_to=decision.escalate_to if status is Status.PENDING else None,
            policy_version=policy_version,
            model=draft.model,
            model_version=draft.model_version,
            model_decision_id=draft.model_decision_id,
        )

    async def get(self, request_id: str) -> ApprovalRequest:
        """The request as it stands; a pending request past its expiry is expired first (fail closed)."""
        request = None if "\x00" in request_id else await self.store.get(request_id)
        if request is None:
            raise unknown_request(request_id)
        if lifecycle.is_overdue(request, self.clock.now()):
            return await self._expire(request_id)
        return request

    async def wait(
        self, request_id: str, wait_seconds: float, on_progress: ProgressCallback | None = None
    ) -> ApprovalRequest:
        """Return as soon as the request is decided, or when ``wait_seconds`` have passed (still pending), or at
        once when the server is stopping (``stop``; the caller then tells the agent to ask again)."""
        start = anyio.current_time()
        deadline = start + wait_seconds
        next_progress = start
        unavailable = False  #: the database failed during this wait (logged once)
        while True:
            try:
                token = await self.store.change_token()
                request = await self.get(request_id)
                now = anyio.current_time()
                if request.status.is_terminal or now >= deadline or self.stopping:
                    return request
                if on_progress is not None and now >= next_progress:
                    message = (
                        f"waiting for reviewers: {len(request.approvals)} of {request.approvals_required} approvals"
                    )
                    await on_progress(now - start, wait_seconds, message)
                    next_progress = now + self.progress_interval
                wake_at = min(deadline, next_progress) if on_progress is not None else deadline
                until_expiry = (request.expires_at - self.clock.now()).total_seconds()
                timeout = max(0.0, min(wake_at - now, until_expiry + 0.001))
                await self._until_stopped(self.store.wait_for_change(token, timeout))
            except DatabaseUnavailable:
                # a database restart or failover is not the agent's verdict: keep waiting until the deadline
                if anyio.current_time() >= deadline or self.stopping:
                    raise
                if not unavailable:
                    logger.warning("the database is unavailable while %s is awaited; trying again", request_id)
                unavailable = True
                retry = min(DATABASE_RETRY_SECONDS, max(0.0, deadline - anyio.current_time()))
                await self._until_stopped(anyio.sleep(retry))

    async def _until_stopped(self, sleep: Awaitable[None]) -> None:
        """Await ``sleep`` (a wait for a change, a pause), cut short when ``stop`` is called."""
        with anyio.CancelScope() as scope:
            self._sleeping.add(scope)
            if self.stopping:  # stop() came while the progress was reported
                scope.cancel()
            try:
                await sleep
            finally:
                self._sleeping.discard(scope)

    async def vote(
        self,
        request_id: str,
        reviewer: str,
        verdict: Verdict,
        comment: str | None,
        *,
        reviewer_ids: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        named_only: bool = False,
        approved_payload: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        """Record a reviewer's vote; raises Conflict naming who decided if the request is already closed.

        Every channel votes here, so every channel applies the same rules (Forbidden, and nothing changes):
        the requester may not vote, directly or through the policy's ``[[people]]`` aliases; and when the request
        names approvers (a rule's ``approvers``, else ``slack.approvers``), only they may vote.

        ``reviewer_ids`` are other names of the same reviewer (a Slack user id); ``groups`` are the Slack user
        groups the channel found them in. ``named_only``: the channel does not make its users reviewers by itself
        (anyone in a Slack channel can click), so with no approvers named nobody may vote through it.

        ``approved_payload`` approves with changes (``amendment``): the changed payload must pass the policy as a
        new request would, and the reviewer must be one who could approve it.
        """
        _refuse_nul(("reviewer", reviewer), ("comment", comment), ("approved_payload", approved_payload))
        parent = await self.traceparent(request_id) if tracing.recording() else None
        with tracing.span("signoff.vote", parent=parent, attributes={"signoff.request_id": request_id}) as span:
            span.set(verdict=verdict.value, reviewer=reviewer.strip())
            updated = await self._vote(
                request_id,
                reviewer,
                verdict,
                comment,
                reviewer_ids=reviewer_ids,
                groups=groups,
                named_only=named_only,
                approved_payload=approved_payload,
            )
            span.set(status=updated.status.value, decided_by=updated.decided_by.value if updated.decided_by else None)
            return updated

    async def traceparent(self, request_id: str) -> str | None:
        """The trace context stored with the request (its ``created`` event): the agent's trace, continued."""
        if "\x00" in request_id:  # no request's id (``_update`` says so)
            return None
        for event in await self.store.request_events(request_id):
            if event.kind is EventKind.CREATED:
                return tracing.valid_traceparent(event.data.get(tracing.TRACEPARENT))
        return None

    async def _vote(
        self,
        request_id: str,
        reviewer: str,
        verdict: Verdict,
        comment: str | None,
        *,
        reviewer_ids: tuple[str, ...],
        groups: tuple[str, ...],
        named_only: bool,
        approved_payload: Mapping[str, Any] | None,
    ) -> ApprovalRequest:
        amended = await self.amendment(request_id, verdict, approved_payload) if approved_payload is not None else None

        def at(now: datetime) -> Change:
            ballot = lifecycle.vote(
                reviewer,
                verdict,
                comment,
                now,
                reviewer_ids=reviewer_ids,
                same_person=self.policy.same_person,
                approved_payload=amended[0] if amended else None,
            )

            def change(request: ApprovalRequest) -> Transition:
                if request.status is Status.PENDING and not lifecycle.is_overdue(request, now):
                    refusal = self._approver_refusal(request, reviewer.strip(), reviewer_ids, groups, named_only)
                    if refusal is None and amended is not None:
                        refusal = self._amended_refusal(request, amended[1], reviewer.strip(), reviewer_ids, groups)
                    if refusal is not None:
                        raise Forbidden(refusal)
                return ballot(request)

            return change

        updated = await self._update(request_id, at)
        if updated.status is Status.EXPIRED:  # it ran out before this vote arrived; lifecycle closed it now
            raise Conflict(f"request {request_id} {lifecycle.outcome_phrase(updated)}; your vote was not recorded")
        return updated

    async def amendment(
        self, request_id: str, verdict: Verdict, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any], PolicyDecision] | None:
        """Check a payload a reviewer wants to approve instead of the one asked: the policy judges it as it would
        a new request with the same action, summary, confidence, flags and agent (limits, ``[[schemas]]``, rules,
        anomaly). None when it is the payload as asked (a plain approval); InvalidInput when the policy's checks
        refuse it; Forbidden when a guardrail rejects it, when a rule's lookup cannot answer for it (so a guardrail
        might reject it: it fails closed), or for a request of the model plane (which applies the change it
        recorded, so a changed payload could not be honoured). Changes nothing."""
        if verdict is not Verdict.APPROVE:
            raise InvalidInput("only an approval can change the payload: reject without one, saying what to change")
        if not isinstance(payload, Mapping):
            raise InvalidInput("the changed payload must be a JSON object ({...}), like the payload the agent sent")
        request = await self.get(request_id)
        changed = dict(payload)
        try:
            if payload_sha256(request.action, changed) == request.payload_sha256:
                return None
        except (TypeError, ValueError, RecursionError):
            raise InvalidInput("the changed payload is not plain JSON (NaN, Infinity or another value)") from None
        if request.action.startswith(FIXED_PAYLOAD_PREFIX):
            raise Forbidden(
                f"{request.action} cannot be approved with changes: the model plane applies the change it recorded;"
                " approve or reject it as asked, and ask for the change you want separately"
            )
        policy_input = PolicyInput(
            action=request.action,
            summary=request.summary,
            payload=changed,
            confidence=request.confidence,
            flags=tuple(f for f in request.flags if f != PERMISSION_PROMPT_FLAG),
            agent_id=request.agent_id,
            expires_in_seconds=None,
        )
        try:
            history = None
            policy = self.policy
            if policy.wants_history or policy.config.lookups:
                policy.validate(policy_input)
            if policy.wants_history:
                fields = history_names(numeric_leaves(changed))
                history = await self.store.action_history(request.action, request.agent_id, fields)
            lookups = await self._lookups(policy, policy_input)
            decision = self._evaluate(policy, policy_input, history, lookups=lookups)
        except InvalidInput as exc:
            raise InvalidInput(f"the changed payload is refused: {exc.message}") from None
        shown = policy.config.redact.redaction  # a refusal is logged and recorded: it quotes no masked value
        if decision.outcome is Outcome.REJECT:
            guardrails = [t for t in decision.triggers if t.kind is TriggerKind.GUARDRAIL]
            reasons = "; ".join(t.detail for t in shown.triggers(guardrails, changed))
            raise Forbidden(
                f"the policy rejects the changed payload ({reasons}): change it so no guardrail matches, or reject"
                " the request"
            )
        if decision.unchecked:  # a rule that could not be checked might reject it: fail closed
            failed = [Trigger(kind=TriggerKind.CONTRADICTION, detail=d) for d in decision.unchecked]
            reasons = "; ".join(t.detail for t in shown.triggers(failed, changed))
            raise Forbidden(
                f"the changed payload cannot be checked ({reasons}): approve without changes (the payload as asked),"
                " reject the request saying what to change, or fix the lookup (`signoff policy check` names what is"
                " wrong with it) and approve with changes again"
            )
        return changed, decision

    def _amended_refusal(
        self,
        request: ApprovalRequest,
        decision: PolicyDecision,
        reviewer: str,
        reviewer_ids: tuple[str, ...],
        groups: tuple[str, ...],
    ) -> str | None:
        """Why this reviewer may not approve the changed payload although they may vote on the request: the
        policy asks more for it (more approvals, or approvers the reviewer is not one of)."""
        if decision.approvals_required > request.approvals_required:
            return (
                f"the changed payload needs {decision.approvals_required} approvals under the policy, more than"
                f" request {request.id} asked for: reject it, saying what to change, so the agent asks again"
            )
        if decision.approvers:
            routed = dataclasses.replace(request, approvers=decision.approvers)
            if self._approver_refusal(routed, reviewer, reviewer_ids, groups, named_only=False) is not None:
                return (
                    f"{reviewer} may not approve the changed payload: the policy routes it to"
                    f" {', '.join(decision.approvers)}"
                )
        return None

    async def vote_refusal(
        self,
        request_id: str,
        reviewer: str,
        *,
        reviewer_ids: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        named_only: bool = False,
    ) -> str | None:
        """Why this reviewer may not vote on this request (the checks ``vote`` makes), or None; changes nothing.
        For a channel that asks before it collects a vote (Slack opens a form for the reason)."""
        request = await self.get(request_id)
        names = (reviewer.strip(), *reviewer_ids)
        if request.agent_id is not None and any(self.policy.same_person(request.agent_id, n) for n in names):
            return f"{reviewer} asked for request {request.id} and cannot vote on it; another person must review it"
        return self._approver_refusal(request, reviewer.strip(), reviewer_ids, groups, named_only)

    def _approver_refusal(
        self,
        request: ApprovalRequest,
        reviewer: str,
        reviewer_ids: tuple[str, ...],
        groups: tuple[str, ...],
        named_only: bool,
    ) -> str | None:
        approvers = request.approvers
        if not approvers:
            if named_only:
                return (
                    "Nobody may approve this request here: the policy names no approvers (approvers in a [[rules]]"
                    " entry, or slack.approvers)."
                )
            return None
        names = (reviewer, *reviewer_ids)
        if any(g in approvers for g in groups):
            return None
        if any(self.policy.same_person(approver, name) for approver in approvers for name in names):
            return None
        return (
            f"{reviewer} is not an approver for request {request.id}; its approvers are {', '.join(approvers)}"
            " (names in [[people]] count with their aliases; Slack user groups count only for votes in Slack)"
        )

    async def claim(self, request_id: str, reviewer: str) -> ApprovalRequest:
        """Say that ``reviewer`` is looking at the request, for ``claim_seconds`` (renewed by claiming again). Only
        someone who may vote on it may claim it (Forbidden otherwise); a claim keeps nobody from voting."""

        def at(now: datetime) -> Change:
            claiming = lifecycle.claim(reviewer, now, self.claim_seconds)

            def change(request: ApprovalRequest) -> Transition:
                if request.status is Status.PENDING and not lifecycle.is_overdue(request, now):
                    if request.agent_id is not None and self.policy.same_person(request.agent_id, reviewer.strip()):
                        raise Forbidden(f"{reviewer} asked for request {request.id} and cannot review it")
                    if (refusal := self._approver_refusal(request, reviewer.strip(), (), (), False)) is not None:
                        raise Forbidden(refusal)
                return claiming(request)

            return change

        updated = await self._update(request_id, at)
        if updated.status is Status.EXPIRED:
            raise Conflict(f"request {request_id} {lifecycle.outcome_phrase(updated)}; it cannot be claimed")
        return updated

    async def release(self, request_id: str, reviewer: str) -> ApprovalRequest:
        """Let go of ``reviewer``'s claim on the request."""
        updated = await self._update(request_id, lambda now: lifecycle.release(reviewer, now))
        if updated.status is Status.EXPIRED:
            raise Conflict(f"request {request_id} {lifecycle.outcome_phrase(updated)}; nothing to release")
        return updated

    async def cancel(self, request_id: str, reason: str) -> ApprovalRequest:
        updated = await self._update(request_id, lambda now: lifecycle.cancel(reason, now))
        if updated.status is Status.EXPIRED:  # it ran out before the cancel arrived
            raise Conflict(f"request {request_id} {lifecycle.outcome_phrase(updated)}; it cannot be cancelled")
        return updated

    async def list_requests(self, query: RequestQuery) -> Page:
        return await self.store.list_requests(query)

    async def expire_due(self) -> int:
        """Expire every pending request whose time has run out; returns how many this call expired."""
        expired = 0
        for request_id in await self.store.pending_due(self.clock.now()):
            try:
                await self._update(request_id, lifecycle.expire)
                expired += 1
            except Conflict:
                pass  # decided or expired by someone else in the meantime
        return expired

    async def record_refusal(self, request_id: str, who: str, reason: str) -> None:
        """Put a refused vote (a stranger's click, the requester's own) in the audit log; nothing else changes."""
        await self._update(request_id, lambda now: lifecycle.refusal(who, reason[:500], now))

    async def record_reveal(self, request_id: str, who: str, via: str) -> None:
        """Put in the audit log that ``who`` was shown the request's ``[redact]``ed values (``via``: console, api).
        Only someone who may vote on the request may see them: when the policy names its approvers, anyone else is
        refused (Forbidden) and nothing is recorded (review R4). The caller shows the values only after this."""
        request = await self.get(request_id)
        if (refusal := self._approver_refusal(request, who.strip(), (), (), False)) is not None:
            raise Forbidden(
                f"the values [redact] masks in request {request_id} are shown to its approvers only: {refusal}"
            )
        await self._update(request_id, lambda now: lifecycle.revealing(who, via, now))

    async def escalate_due(self) -> int:
        """Escalate every pending request whose escalation time has come; returns how many."""
        escalated = 0
        for request_id in await self.store.escalations_due(self.clock.now()):
            try:
                updated = await self._update(request_id, lifecycle.escalate)
                escalated += updated.status is Status.PENDING
            except Conflict:
                pass  # decided, expired or escalated by someone else in the meantime
        return escalated

    async def verify_audit(self, anchors: Mapping[int, str] | None = None) -> ChainReport:
        return await verify_store(self.store, anchors)

    async def verify_receipt(
        self,
        key: bytes,
        receipt: Mapping[str, Any] | receipts.Receipt,
        action: str,
        payload: Mapping[str, Any],
        *,
        caller: str | None = None,
    ) -> str | None:
        """Why the receipt does not approve ``action`` with ``payload`` now, or None when it does: the signed
        receipt must match and be unexpired, its request must still stand (a used approval is spent), and an
        authenticated ``caller`` must be the agent that asked for it (an approval is its requester's alone)."""
        now = self.clock.now()
        problem = receipts.check(key, receipt, action, payload, now=now)
        parsed = receipt if isinstance(receipt, receipts.Receipt) else None
        if problem is not None:
            if problem.startswith("the payload differs") and isinstance(receipt, Mapping | receipts.Receipt):
                return await self._changed_hint(receipt, action, payload) or problem
            return problem
        parsed = parsed or receipts.Receipt.model_validate(receipt)
        request = await self.store.get(parsed.request_id)
        if request is None:
            return f"signoff has no request {parsed.request_id}: the receipt was signed with this key elsewhere"
        if caller is not None and request.agent_id != caller:
            return (
                f"the receipt approves request {request.id} of {request.agent_id}, not of {caller}: an agent acts only"
                " on its own approvals; ask for your own"
            )
        return receipts.standing(request, now, self.receipt_ttl_seconds)

    async def _changed_hint(
        self, receipt: Mapping[str, Any] | receipts.Receipt, action: str, payload: Mapping[str, Any]
    ) -> str | None:
        """For a genuine receipt checked against the payload as asked of a request a reviewer changed: say so."""
        request_id = receipt.request_id if isinstance(receipt, receipts.Receipt) else receipt.get("request_id")
        request = await self.store.get(request_id) if isinstance(request_id, str) else None
        if request is None or not request.payload_changed or request.action != action:
            return None
        try:
            asked = payload_sha256(action, payload) == request.payload_sha256
        except (TypeError, ValueError, RecursionError):
            return None
        if not asked:
            return None
        return (
            f"the payload differs from the approved one: a reviewer approved request {request.id} with changes;"
            " act with its approved_payload (get_status shows it), not the payload you asked with"
        )

    async def consume(self, request_id: str, *, now: datetime | None = None) -> ApprovalRequest:
        """Use a single-use approval once; a second use, or a use after the approval lapsed, is refused (Conflict).
        ``now``: the moment the use was decided at (a model change settled then), else the present: read while the
        store holds its write lock, so an approval that lapsed while the use waited for the lock is refused."""
        ttl = self.receipt_ttl_seconds
        return await self._update(request_id, lambda present: lifecycle.consume(now or present, ttl))

    @property
    def receipt_ttl_seconds(self) -> int | None:
        """How long an approval may be acted on after its decision (None: until its request expires)."""
        return self.policy.config.receipt_ttl_seconds

    def actionable(self, request: ApprovalRequest) -> bool:
        """Whether an agent may act on ``request`` now (approved, not lapsed, not a used single-use approval)."""
        return lifecycle.actionable(request, self.clock.now(), self.receipt_ttl_seconds)

    async def _update(self, request_id: str, change_at: Callable[[datetime], Change]) -> ApprovalRequest:
        """``store.update`` with the change made for the moment the store applies it: ``change_at(now)`` is called
        with the clock read inside the change, which the store calls holding its write lock, so what depends on
        time (an expiry, an approval's lapse) is judged when it is written, not before a wait for the lock
        (review R6: a use or a vote that waited past the deadline went through). It is also made once before the
        store is asked, so bad arguments are refused as before. An id holding a NUL character is no request's id,
        on every engine (PostgreSQL cannot even be asked about it)."""
        if "\x00" in request_id:
            raise unknown_request(request_id)
        change_at(self.clock.now())  # refuses bad arguments (an empty reason, a long comment) up front
        return await self.store.update(request_id, lambda request: change_at(self.clock.now())(request))

    async def _expire(self, request_id: str) -> ApprovalRequest:
        try:
            return await self._update(request_id, lifecycle.expire)
        except Conflict:
            request = await self.store.get(request_id)
            assert request is not None
            return request


def _traced(events: tuple[NewEvent, ...]) -> tuple[NewEvent, ...]:
    """The creation events, the ``created`` one carrying the current trace context (the agent's ``traceparent``
    from the MCP request's ``_meta``, continued by the tool call's span) when there is one."""
    traceparent = tracing.current_traceparent()
    if traceparent is None or not events or events[0].kind is not EventKind.CREATED:
        return events
    first = dataclasses.replace(events[0], data={**events[0].data, tracing.TRACEPARENT: traceparent})
    return (first, *events[1:])
