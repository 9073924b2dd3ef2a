"""The rollout rules, pure: what a change does to what serves a model, whether it needs a human, and
whether an approved change still applies when its approval arrives.

A pending change records the serving it was asked against (``from``). It applies only if the model
still serves exactly that, so an approval never lands on a state the reviewer did not see; otherwise it
is dropped and must be asked for again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    Serving,
    Settlement,
    Status,
    Verdict,
)
from signoff.storage.canonical import payload_sha256
from signoff.storage.models.records import TOTAL_WEIGHT
from signoff.storage.models.store import Decide, Settle
from signoff.storage.timefmt import to_text
from signoff.tools.approvals import lifecycle
from signoff.tools.models.routing import percent

SET_TRAFFIC_ACTION = "models.set_traffic"
PROMOTE_ACTION = "models.promote"
ACTION_OF = {ChangeKind.SET_TRAFFIC: SET_TRAFFIC_ACTION, ChangeKind.PROMOTE: PROMOTE_ACTION}
#: the actions under which changes applied at once are recorded (as requests the policy approved, already used);
#: never the actions of changes a person must approve, so "approved models.set_traffic" always means a person did
RECORDED_AS = {
    ChangeKind.REGISTER: "models.register",
    ChangeKind.SET_TRAFFIC: "models.traffic_to_production",
    ChangeKind.ROLLBACK: "models.rollback",
    ChangeKind.GUARD: "models.guard",
}


def serving_doc(serving: Serving) -> dict[str, Any]:
    """Serving as JSON for payloads and messages (weights in percent)."""
    return {
        "production": serving.production,
        "previous": serving.previous,
        "weights": {v: percent(bp) for v, bp in sorted(serving.weights.items())},
    }


def describe(weights: Mapping[str, int]) -> str:
    """``v1 90%, v2 10%`` (or ``no traffic``)."""
    return ", ".join(f"{v} {percent(bp):g}%" for v, bp in weights.items()) or "no traffic"


def needs_approval(current: Serving, weights: Mapping[str, int]) -> bool:
    """A human must approve when any version other than production would get more traffic than now."""
    return any(bp > current.weights.get(v, 0) for v, bp in weights.items() if v != current.production)


def with_traffic(current: Serving, weights: Mapping[str, int]) -> Serving:
    return Serving(production=current.production, previous=current.previous, weights=dict(weights))


def traffic_payload(name: str, weights: Mapping[str, int], current: Serving) -> dict[str, Any]:
    return {
        "model": name,
        "weights": {v: percent(bp) for v, bp in sorted(weights.items())},
        "from": serving_doc(current),
    }


def promoted(current: Serving, version: str) -> Serving:
    """``version`` becomes production with all the traffic; the old production becomes ``previous``."""
    previous = current.production if current.production not in (None, version) else current.previous
    return Serving(production=version, previous=previous, weights={version: TOTAL_WEIGHT})


def promote_payload(name: str, version: str, endpoint: str, current: Serving) -> dict[str, Any]:
    """The endpoint is part of what reviewers approve: it is where production traffic will go."""
    return {"model": name, "version": version, "endpoint": endpoint, "from": serving_doc(current)}


def after_approval(change: ModelChange, state: ModelState) -> Serving | str:
    """What an approved change does now, or (a string) why it no longer applies."""
    if change.payload.get("from") != serving_doc(state.serving):
        return (
            f"not applied: the model changed after this was requested (it now serves "
            f"{describe(state.serving.weights)}); ask again against the current state"
        )
    if change.kind is ChangeKind.SET_TRAFFIC:
        weights = {v: round(p * 100) for v, p in change.payload["weights"].items()}
        return with_traffic(state.serving, weights)
    return promoted(state.serving, str(change.payload["version"]))


def has_canary(serving: Serving) -> bool:
    return any(v != serving.production for v in serving.weights)


def to_production(current: Serving) -> Serving:
    """Every bit of traffic back to production (a canary aborted)."""
    if current.production is None:
        raise InvalidInput("the model has no production version to return traffic to; promote one first")
    return Serving(production=current.production, previous=current.previous, weights={current.production: TOTAL_WEIGHT})


def rolled_back(current: Serving, prior: str | None) -> Serving:
    """``previous`` becomes production with all the traffic; ``prior`` (what preceded it) becomes previous."""
    if current.previous is None:
        raise InvalidInput(
            "nothing to roll back to: the model has no previous production version and no canary traffic"
        )
    return Serving(production=current.previous, previous=prior, weights={current.previous: TOTAL_WEIGHT})


def prior_production(history: Sequence[ModelChange], version: str, leaving: str | None) -> str | None:
    """What was production before ``version`` last became production (never ``leaving``, the version
    being rolled back from)."""
    for change in reversed(history):
        s = change.serving
        if (
            change.status is ChangeStatus.APPLIED
            and change.kind is ChangeKind.PROMOTE
            and s
            and s.production == version
        ):
            return s.previous if s.previous not in (leaving, version) else None
    return None


def without(current: Serving, version: str) -> Serving:
    """``version``'s traffic handed to production (the guard's change)."""
    share = current.weights.get(version, 0)
    if share == 0 or current.production is None or version == current.production:
        raise Conflict(f"{version} has no canary traffic to take away")
    weights = {v: bp for v, bp in current.weights.items() if v != version}
    weights[current.production] = weights.get(current.production, 0) + share
    return with_traffic(current, weights)


def serving_at(history: Sequence[ModelChange], at: datetime) -> Serving | None:
    """What served the model at ``at``: the state after the last change applied at or before it."""
    applied = [c for c in history if c.status is ChangeStatus.APPLIED and c.settled_at and c.settled_at <= at]
    if not applied:
        return None
    return max(applied, key=lambda c: (c.settled_at, c.seq)).serving


def unchanged_since(state: ModelState, then: Callable[[Serving], Serving]) -> Decide:
    """Apply ``then(serving)`` only if nothing changed since ``state`` was read (a compare-and-set)."""

    def decide(current: ModelState) -> Serving:
        if current.serving != state.serving:
            raise Conflict(f"model {state.name!r} changed meanwhile; read it again with get_model and retry")
        return then(current.serving)

    return decide


def take_away(version: str) -> Decide:
    """The guard's change: ``version``'s traffic to production."""

    def decide(current: ModelState) -> Serving:
        return without(current.serving, version)

    return decide


def settlement(request: ApprovalRequest | None, now: datetime, receipt_ttl_seconds: int | None = None) -> Settle:
    """How a pending change ends, settled at ``now``, once its request (None: lost) is decided: applied only if
    approved, before that approval lapsed (``lifecycle.lapses_at``: when its receipt expires), for exactly these
    arguments, and still asked of the state the model is in."""

    def decide(state: ModelState, change: ModelChange) -> Settlement:
        if request is None:
            return Settlement(serving=None, outcome="dropped: its approval request no longer exists")
        outcome = decided(request)
        if request.status is not Status.APPROVED:
            return Settlement(serving=None, outcome=outcome)
        if (gone := lifecycle.lapsed(request, now, receipt_ttl_seconds)) is not None:
            return Settlement(
                serving=None,
                outcome=f"{outcome}, but that approval lapsed at {to_text(gone)} before the change was settled (no"
                " server ran meanwhile): not applied; ask for the change again",
            )
        if request.payload_sha256 != payload_sha256(ACTION_OF[change.kind], change.payload):
            return Settlement(serving=None, outcome=f"{outcome}, but for different arguments: not applied")
        result = after_approval(change, state)
        if isinstance(result, str):
            return Settlement(serving=None, outcome=f"{outcome}, {result}")
        return Settlement(serving=result, outcome=outcome)

    return decide


def decided(request: ApprovalRequest) -> str:
    """How a request ended, in a few words: "approved by alice (ship it)", "expired without a decision"."""

    def who(verdict: Verdict) -> str:
        return ", ".join(
            f"{v.reviewer} ({v.comment})" if v.comment else v.reviewer for v in request.votes if v.verdict is verdict
        )

    match request.status:
        case Status.APPROVED if request.votes:
            return "approved by " + who(Verdict.APPROVE)
        case Status.APPROVED:
            return "approved by policy"
        case Status.REJECTED if request.votes:
            return "rejected by " + who(Verdict.REJECT)
        case Status.REJECTED:
            return "rejected by policy"
        case Status.EXPIRED:
            return f"expired without a decision at {request.expires_at.isoformat()}"
        case Status.CANCELLED:
            return f"cancelled: {request.note}"
        case _:
            return "pending"
