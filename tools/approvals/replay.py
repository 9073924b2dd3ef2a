"""What-if: a candidate policy run over recorded requests, and what it would have decided differently.

Pure: the caller fetches the requests (oldest first) and renders the report. The requests are replayed in the order
they came, each judged against the history (``history.History``) the requests before it built under the candidate,
so a changed anomaly, out-of-distribution or fairness setting is judged as it would have been. The same requests,
policy and order always give the same report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from signoff.storage import ApprovalRequest, DecidedBy, InvalidInput, RecordedRequest, Status, Trigger
from signoff.tools.approvals import shape
from signoff.tools.approvals.history import History
from signoff.tools.approvals.lookups import LookupReader
from signoff.tools.approvals.policy import Policy, PolicyDecision, PolicyInput
from signoff.tools.approvals.policy_cases import Expect

__all__ = ["Change", "ReplayReport", "Replayer", "recorded_outcome", "replay"]

Recorded = RecordedRequest | ApprovalRequest  #: what replay reads: the lean record, or a full one

EXAMPLES_PER_CHANGE = 3
NO_RULE = "(no rule: the threshold, the default outcome or another trigger)"
INVALID_RULE = "(refused as invalid input before any rule is checked)"


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """One recorded request the candidate would have decided differently."""

    request: Recorded
    before: Expect  #: what happened: approved or rejected by policy, or sent to people
    after: Expect  #: what the candidate decides
    triggers: tuple[Trigger, ...]  #: the candidate's reasons (empty when it refuses the request as invalid)
    reason: str | None = None  #: why the candidate refuses it, when ``after`` is invalid
    rules: tuple[str, ...] = ()  #: the candidate's rules that match it


@dataclass(kw_only=True, slots=True)
class ReplayReport:
    requests: int = 0
    unchanged: int = 0
    transitions: Counter[tuple[Expect, Expect]] = field(default_factory=Counter)
    by_action: dict[str, Counter[tuple[Expect, Expect]]] = field(default_factory=dict)
    by_rule: Counter[str] = field(default_factory=Counter)  #: changed requests per candidate rule that matches them
    examples: dict[tuple[Expect, Expect], list[Change]] = field(default_factory=dict)
    learnt: int = 0  #: requests before ``since`` that only built the history (not judged, not counted)
    #: the policy versions that decided the replayed requests, and how many each ("" before versions were kept)
    recorded_versions: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return self.requests - self.unchanged


def recorded_outcome(request: Recorded) -> Expect:
    """What the policy in force decided: approve or reject at once (decided by policy), else review."""
    if request.decided_by is DecidedBy.POLICY:
        return Expect.APPROVE if request.status is Status.APPROVED else Expect.REJECT
    return Expect.REVIEW


def replay(
    policy: Policy, requests: Iterable[Recorded], lookups: LookupReader | None = None, since: datetime | None = None
) -> ReplayReport:
    """Evaluate ``policy`` on each recorded request (oldest first) and count what changes; see ``Replayer``."""
    replayer = Replayer(policy, lookups, since)
    replayer.feed(requests)
    return replayer.report


class Replayer:
    """Replays requests fed oldest first, in as many batches as the caller reads.

    Requests created before ``since`` only build the history, with the outcome they had; the others are judged by
    the candidate and build the history with the outcome the candidate gives them: approved or rejected at once
    when it decides at once, else what people decided then. A request the candidate sends to people that was
    decided by policy then has no known verdict: it teaches the history nothing, as a request still pending would.
    ``lookups`` answers the candidate's ``[[lookups]]`` as the trusted data is now (it is not kept as it was)."""

    def __init__(self, policy: Policy, lookups: LookupReader | None = None, since: datetime | None = None) -> None:
        self.policy = policy
        self.lookups = lookups
        self.since = since
        self.report = ReplayReport()
        config = policy.config
        wanted = policy.wants_history or policy.wants_profile or config.fairness.groups
        self.history = History(policy) if wanted else None

    def feed(self, requests: Iterable[Recorded]) -> None:
        policy, lookups, history, report, since = self.policy, self.lookups, self.history, self.report, self.since
        for request in requests:
            if since is not None and request.created_at < since:
                if history is not None:
                    history.add(request, request.status, request.decided_by, request.approved_payload)
                    report.learnt += 1
                continue
            report.requests += 1
            report.recorded_versions[request.policy_version or ""] += 1
            before = recorded_outcome(request)
            inputs = _input(request)
            decision = None
            try:
                policy.validate(inputs, explain=False)  # refused: no history to gather, no reason to explain
                if history is None:
                    decision = policy.evaluate(inputs, lookups=lookups, validated=True)
                else:
                    walked = shape.walk(inputs.payload)  # once, for the history and every check
                    judged, streams, profile = history.judged(inputs, walked)
                    decision = policy.evaluate(inputs, judged, streams, profile, lookups, True, walked)
            except InvalidInput:
                after = Expect.INVALID
            else:
                after = Expect(decision.outcome.value)
                if history is not None:
                    _learn(history, request, after, walked)
            if after is before:
                report.unchanged += 1
                continue
            step = (before, after)
            report.transitions[step] += 1
            report.by_action.setdefault(request.action, Counter())[step] += 1
            if decision is None:
                report.by_rule[INVALID_RULE] += 1
            else:
                report.by_rule.update(decision.rules or (NO_RULE,))
            examples = report.examples.setdefault(step, [])
            if len(examples) < EXAMPLES_PER_CHANGE:
                examples.append(_change(policy, request, inputs, before, decision))


def _change(
    policy: Policy, request: Recorded, inputs: PolicyInput, before: Expect, decision: PolicyDecision | None
) -> Change:
    """The example of a change: the candidate's decision, or, refused (``decision`` None), why, asked again
    explained (replay validates with ``explain`` off: only the examples show the reason)."""
    if decision is not None:
        after = Expect(decision.outcome.value)
        return Change(request=request, before=before, after=after, triggers=decision.triggers, rules=decision.rules)
    try:
        policy.validate(inputs)
    except InvalidInput as exc:
        reason = exc.message
    else:  # cannot be: validate refuses the same requests, explained or not
        raise AssertionError(f"request {request.id} was refused, then accepted, by the same policy")
    return Change(request=request, before=before, after=Expect.INVALID, triggers=(), reason=reason)


def _learn(history: History, request: Recorded, after: Expect, walked: shape.Walk) -> None:
    """Add ``request`` to the history with the outcome the candidate gives it (see ``Replayer``)."""
    if after is Expect.APPROVE:
        history.add(request, Status.APPROVED, DecidedBy.POLICY, walked=walked)
    elif after is Expect.REJECT:
        history.add(request, Status.REJECTED, DecidedBy.POLICY, walked=walked)
    elif request.decided_by is DecidedBy.POLICY:
        history.add(request, Status.PENDING, None, walked=walked)
    else:
        history.add(request, request.status, request.decided_by, request.approved_payload, walked)


def _input(request: Recorded) -> PolicyInput:
    return PolicyInput(
        action=request.action,
        summary=request.summary,
        payload=request.payload,
        confidence=request.confidence,
        flags=request.flags,
        agent_id=request.agent_id,
        expires_in_seconds=None,  # the expiry asked for is not kept apart from the rules'; it decides no outcome
        payload_bytes=request.payload_bytes if isinstance(request, RecordedRequest) else None,
    )
