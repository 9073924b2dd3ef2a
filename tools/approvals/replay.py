"""What-if: a candidate policy run over recorded requests, and what it would have decided differently.

Pure: the caller fetches the requests and renders the report. The same requests, policy and order always give
the same report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from signoff.storage import ApprovalRequest, DecidedBy, InvalidInput, Status, Trigger, TriggerKind
from signoff.tools.approvals.conditions import match_rule
from signoff.tools.approvals.lookups import LookupReader
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.approvals.policy_cases import Expect

__all__ = ["Change", "ReplayReport", "recorded_outcome", "replay"]

EXAMPLES_PER_CHANGE = 3
NO_RULE = "(no rule: the threshold, the default outcome or another trigger)"


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """One recorded request the candidate would have decided differently."""

    request: ApprovalRequest
    before: Expect  #: what happened: approved or rejected by policy, or sent to people
    after: Expect  #: what the candidate decides
    triggers: tuple[Trigger, ...]  #: the candidate's reasons (empty when it refuses the request as invalid)
    reason: str | None = None  #: why the candidate refuses it, when ``after`` is invalid


@dataclass(kw_only=True, slots=True)
class ReplayReport:
    requests: int = 0
    unchanged: int = 0
    transitions: Counter[tuple[Expect, Expect]] = field(default_factory=Counter)
    by_action: dict[str, Counter[tuple[Expect, Expect]]] = field(default_factory=dict)
    by_rule: Counter[str] = field(default_factory=Counter)  #: changed requests per candidate rule that matches them
    examples: dict[tuple[Expect, Expect], list[Change]] = field(default_factory=dict)
    anomalies_kept: int = 0  #: recorded anomaly reviews kept as reviews (anomaly history is not replayed)
    #: the policy versions that decided the replayed requests, and how many each ("" before versions were kept)
    recorded_versions: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return self.requests - self.unchanged


def recorded_outcome(request: ApprovalRequest) -> Expect:
    """What the policy in force decided: approve or reject at once (decided by policy), else review."""
    if request.decided_by is DecidedBy.POLICY:
        return Expect.APPROVE if request.status is Status.APPROVED else Expect.REJECT
    return Expect.REVIEW


def replay(policy: Policy, requests: Iterable[ApprovalRequest], lookups: LookupReader | None = None) -> ReplayReport:
    """Evaluate ``policy`` on each recorded request and count what changes.

    Anomaly checks need the history as it was when each request came; it is not rebuilt. So with anomaly on in the
    candidate, a request the recorded policy sent to people for an anomaly still goes to people, and the candidate
    raises no new anomaly; with anomaly off, those reviews are dropped like any other trigger. ``lookups`` answers
    the candidate's ``[[lookups]]`` as the trusted data is now (it is not kept as it was).
    """
    report = ReplayReport()
    for request in requests:
        report.requests += 1
        report.recorded_versions[request.policy_version or ""] += 1
        before = recorded_outcome(request)
        change = _decide(policy, request, before, lookups)
        if change.after is Expect.REVIEW and change.triggers and change.triggers[0].kind is TriggerKind.ANOMALY:
            report.anomalies_kept += 1
        if change.after is before:
            report.unchanged += 1
            continue
        step = (before, change.after)
        report.transitions[step] += 1
        report.by_action.setdefault(request.action, Counter())[step] += 1
        inputs = _input(request)
        names = [rule.name for rule in policy.config.rules if match_rule(rule, inputs) is not None]
        report.by_rule.update(names or [NO_RULE])
        examples = report.examples.setdefault(step, [])
        if len(examples) < EXAMPLES_PER_CHANGE:
            examples.append(change)
    return report


def _input(request: ApprovalRequest) -> PolicyInput:
    return PolicyInput(
        action=request.action,
        summary=request.summary,
        payload=request.payload,
        confidence=request.confidence,
        flags=request.flags,
        agent_id=request.agent_id,
        expires_in_seconds=None,  # the expiry asked for is not kept apart from the rules'; it decides no outcome
    )


def _decide(policy: Policy, request: ApprovalRequest, before: Expect, lookups: LookupReader | None) -> Change:
    try:
        decision = policy.evaluate(_input(request), None, lookups=lookups)
    except InvalidInput as exc:
        return Change(request=request, before=before, after=Expect.INVALID, triggers=(), reason=exc.message)
    after, triggers = Expect(decision.outcome.value), decision.triggers
    anomalies = tuple(t for t in request.triggers if t.kind is TriggerKind.ANOMALY)
    if policy.wants_history and anomalies and after is Expect.APPROVE:
        after, triggers = Expect.REVIEW, anomalies  # the recorded anomaly stands: see ``replay``
    return Change(request=request, before=before, after=after, triggers=triggers)
