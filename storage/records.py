"""The records every layer passes around: frozen, keyword-only, free of I/O."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from signoff.storage.canonical import payload_sha256

JsonObject = Mapping[str, Any]


class Status(enum.StrEnum):
    PENDING = "pending"  #: Waiting for people; nothing may run yet.
    APPROVED = "approved"  #: Approved by policy or by enough people; the action may run.
    REJECTED = "rejected"  #: Refused by policy (a guardrail) or vetoed by a person.
    EXPIRED = "expired"  #: Nobody decided in time; fails closed, never run.
    CANCELLED = "cancelled"  #: Withdrawn before anyone decided.

    @property
    def is_terminal(self) -> bool:
        return self is not Status.PENDING


class DecidedBy(enum.StrEnum):
    POLICY = "policy"  #: The policy decided at once; no person was asked.
    HUMAN = "human"  #: Reviewers decided (a veto or a full quorum).


class Verdict(enum.StrEnum):
    APPROVE = "approve"  #: Counts towards approvals_required.
    REJECT = "reject"  #: Vetoes the request at once; needs a reason.


class TriggerKind(enum.StrEnum):
    CONFIDENCE = "confidence"  #: The agent's confidence was below the threshold.
    RULE = "rule"  #: A configured rule matched.
    ANOMALY = "anomaly"  #: Novel for this agent, or a value far outside this action's history.
    FAIRNESS = "fairness"  #: A configured fairness flag was raised.
    DEFAULT = "default"  #: Nothing else applied; the default outcome was used.
    GUARDRAIL = "guardrail"  #: A rule with outcome ``reject`` matched.
    CONTRADICTION = "contradiction"  #: The request disagrees with trusted data (a lookup), or the lookup failed.


class EventKind(enum.StrEnum):
    CREATED = "created"  #: The request as asked (action, payload, agent, settings).
    TRIGGERED = "triggered"  #: What the policy decided, and why.
    VOTED = "voted"  #: A reviewer's vote.
    DECIDED = "decided"  #: Approved or rejected, by policy or by people.
    EXPIRED = "expired"  #: Nobody decided in time.
    CANCELLED = "cancelled"  #: The agent withdrew it.
    NOTIFIED = "notified"  #: A notifier showed its current state to people.
    NOTIFY_FAILED = "notify_failed"  #: A notifier gave up on a notification (refused, or too many attempts).
    CONSUMED = "consumed"  #: An approval was used to run its action (single-use approvals).
    ESCALATED = "escalated"  #: Still pending after escalate_after_seconds; shown to escalate_to.
    REFUSED = "refused"  #: Someone authenticated tried to vote and was refused; nothing else changed.
    CLAIMED = "claimed"  #: A reviewer said they are looking at it (until ``until``); nobody is kept from voting.
    RELEASED = "released"  #: The reviewer who claimed it let it go.
    REVEALED = "revealed"  #: A reviewer was shown the values ``[redact]`` masks (console or reviewer API).
    # Model-plane events: ``request_id`` is ``model:<name>``; ``data`` holds the images of the rows written.
    MODEL_REGISTERED = "model_registered"  #: A version was registered (and the model created if new).
    MODEL_CHANGED = "model_changed"  #: A change was applied at once, or recorded as pending its approval.
    MODEL_SETTLED = "model_settled"  #: A pending change was applied or dropped.
    MODEL_BASELINE = "model_baseline"  #: At the upgrade that put models in the chain: the state found, unchecked.
    # Alert events: ``request_id`` is ``alert:<rule>``; ``data`` holds the episode as recorded (storage.alerts).
    ALERT_FIRED = "alert_fired"  #: A built-in alert's condition started (an episode began).
    ALERT_RESOLVED = "alert_resolved"  #: Its condition ended.
    # Console events: ``request_id`` is ``console:<name>`` (the reviewer, or the refused token's owner, or
    # ``console:unknown``); ``data`` holds who, from which address, and for a refusal why (never the token).
    CONSOLE_SIGNED_IN = "console_signed_in"  #: A reviewer signed in to the web console.
    CONSOLE_SIGNED_OUT = "console_signed_out"  #: A reviewer signed out of it.
    CONSOLE_SIGN_IN_REFUSED = "console_sign_in_refused"  #: A sign-in was refused (unknown token, an agent's, …).

    @property
    def is_model(self) -> bool:
        return self.value.startswith("model_")

    @property
    def is_alert(self) -> bool:
        return self.value.startswith("alert_")

    @property
    def is_console(self) -> bool:
        return self.value.startswith("console_")


class Priority(enum.StrEnum):
    LOW = "low"  #: Whenever someone has time.
    NORMAL = "normal"  #: The default.
    HIGH = "high"  #: Soon.
    URGENT = "urgent"  #: Now; something is waiting on it.

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Trigger:
    """Why the policy decided as it did; shown to reviewers ("why am I asked?")."""

    kind: TriggerKind
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Vote:
    reviewer: str
    verdict: Verdict
    comment: str | None
    at: datetime
    reviewer_ids: tuple[str, ...] = ()  #: the voter's other names, e.g. their Slack user id


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequest:
    """One request for approval and everything decided about it so far."""

    id: str
    action: str
    summary: str
    payload: JsonObject
    payload_sha256: str  #: of canonical action + payload; empty in a request shown with a value ``[redact]`` masks
    confidence: float | None
    flags: tuple[str, ...]
    agent_id: str | None
    idempotency_key: str | None
    status: Status
    decided_by: DecidedBy | None
    triggers: tuple[Trigger, ...]
    approvals_required: int
    priority: Priority
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    note: str | None = None  #: the cancel reason, or what ended the request
    votes: tuple[Vote, ...] = ()
    channel: str | None = None  #: the Slack channel to ask in (None: the server's default)
    approvers: tuple[str, ...] = ()  #: Slack user and user group ids who may vote in Slack
    consumed_at: datetime | None = None  #: when a single-use approval was used (permission prompts)
    escalate_at: datetime | None = None  #: when a still-pending request is escalated
    escalate_to: str | None = None  #: a Slack user group or channel
    escalated_at: datetime | None = None
    #: the payload as a reviewer changed it when approving ("approve with changes"); None: approved as asked
    approved_payload: JsonObject | None = None
    claimed_by: str | None = None  #: the reviewer who said they are looking at it (see ``claim_at``)
    claimed_at: datetime | None = None
    claim_until: datetime | None = None  #: the claim lapses then, by itself
    #: the version (a hash of the policy file's text) of the policy that decided it; None: recorded before versions
    policy_version: str | None = None
    model: str | None = None  #: the model whose output this request acts on, as the agent named it (or None)
    model_version: str | None = None  #: that model's version (set with ``model``)
    model_decision_id: str | None = None  #: the decision_id resolve_model returned for it, when given

    @property
    def approvals(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.verdict is Verdict.APPROVE)

    def claim_at(self, now: datetime) -> str | None:
        """Who is reviewing it at ``now``: the claimer of a pending request whose claim has not lapsed, else None."""
        if self.status is not Status.PENDING or self.claimed_by is None or self.claim_until is None:
            return None
        return self.claimed_by if now < self.claim_until else None

    @property
    def payload_changed(self) -> bool:
        """Whether a reviewer approved it with a payload other than the one asked."""
        return self.approved_payload is not None

    @property
    def effective_payload(self) -> JsonObject:
        """The payload the action may run with: the approved one when a reviewer changed it, else as asked."""
        return self.payload if self.approved_payload is None else self.approved_payload

    @property
    def approved_sha256(self) -> str:
        """The digest a receipt binds: of the approved payload when it was changed, else ``payload_sha256``. Empty,
        as ``payload_sha256`` is, for a request shown with a ``[redact]``ed value (``Redaction.request``)."""
        if self.approved_payload is None or not self.payload_sha256:
            return self.payload_sha256
        return payload_sha256(self.action, self.approved_payload)


def went_to_people(request: ApprovalRequest) -> bool:
    """Whether ``request`` was sent to people: not decided by the policy at once (pending, or decided by people,
    expired or cancelled). The newest of an agent's such requests for an action and payload is people's last word on
    it: unless it was approved, asking again must not get the policy's approval (``Store.create_request``'s
    ``refuse_approval_if_asked_before``; the SQL stores' ``ASKED_BEFORE``, indexed by migration 0022)."""
    return request.decided_by is not DecidedBy.POLICY


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueEntry:
    """A pending request as the review queue shows it: no payload, no votes but the count of approvals (read by
    ``Store.pending_queue``, cheaply, for a queue of thousands)."""

    id: str
    action: str
    summary: str
    agent_id: str | None
    confidence: float | None
    triggers: tuple[Trigger, ...]
    approvals_required: int
    approval_count: int  #: approving votes so far (``len(ApprovalRequest.approvals)``)
    priority: Priority
    expires_at: datetime
    status: Status
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    claim_until: datetime | None = None

    def claim_at(self, now: datetime) -> str | None:
        """As ``ApprovalRequest.claim_at``."""
        if self.status is not Status.PENDING or self.claimed_by is None or self.claim_until is None:
            return None
        return self.claimed_by if now < self.claim_until else None


def queue_entry_of(request: ApprovalRequest) -> QueueEntry:
    """What the queue shows of ``request`` (as ``Store.pending_queue`` reads it)."""
    return QueueEntry(
        id=request.id,
        action=request.action,
        summary=request.summary,
        agent_id=request.agent_id,
        confidence=request.confidence,
        triggers=request.triggers,
        approvals_required=request.approvals_required,
        approval_count=len(request.approvals),
        priority=request.priority,
        expires_at=request.expires_at,
        status=request.status,
        claimed_by=request.claimed_by,
        claimed_at=request.claimed_at,
        claim_until=request.claim_until,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueRead:
    """What ``Store.pending_queue`` read: ``entries`` and the audit log's head (``head``) read before them."""

    head: int  #: the last event's seq (0: none) when the read began: ask again with ``after_seq=head``
    entries: tuple[QueueEntry, ...]  #: the pending requests: all of them, or those among ``changed``
    #: None: ``entries`` is the whole queue. Else the requests with events after ``after_seq`` (any change to a
    #: request writes one): those not in ``entries`` left the queue, those in it are as they are now
    changed: frozenset[str] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HumanOutcomes:
    """What people made of one model version's requests (those whose agent named the version with request_approval)."""

    version: str
    requests: int  #: requests that named the version
    to_people: int  #: of those, the ones the policy sent to people (pending, decided by people, expired, cancelled)
    decided_by_people: int  #: approved or rejected by people
    rejected: int  #: rejected by people
    changed: int  #: approved by people with changes to the payload

    @property
    def rejected_share(self) -> float | None:
        """The share of people's decisions that were rejections; None before any."""
        return self.rejected / self.decided_by_people if self.decided_by_people else None

    @property
    def changed_share(self) -> float | None:
        """The share of people's decisions that approved with changes; None before any."""
        return self.changed / self.decided_by_people if self.decided_by_people else None


def human_outcomes_of(requests: Iterable[ApprovalRequest], model: str) -> dict[str, HumanOutcomes]:
    """Per version, the people's outcomes of ``requests`` that named ``model`` (the caller picks the window)."""
    counts: dict[str, list[int]] = {}
    for r in requests:
        if r.model != model or r.model_version is None:
            continue
        c = counts.setdefault(r.model_version, [0, 0, 0, 0, 0])
        c[0] += 1
        c[1] += r.decided_by is not DecidedBy.POLICY
        human = r.decided_by is DecidedBy.HUMAN
        c[2] += human
        c[3] += human and r.status is Status.REJECTED
        c[4] += human and r.status is Status.APPROVED and r.approved_payload is not None
    return {
        v: HumanOutcomes(version=v, requests=c[0], to_people=c[1], decided_by_people=c[2], rejected=c[3], changed=c[4])
        for v, c in counts.items()
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class NewEvent:
    """An event to append to the audit log in the same transaction as the change it records."""

    kind: EventKind
    request_id: str
    at: datetime
    data: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """A row of the append-only, hash-chained audit log."""

    seq: int
    kind: EventKind
    request_id: str
    at: datetime
    data: JsonObject
    prev_hash: str
    hash: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """A reviewer's "I am looking at this", which lapses at ``until``."""

    by: str
    at: datetime
    until: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Transition:
    """What a lifecycle step changes, applied atomically by a Store.

    ``status`` None leaves the status as it is (a vote that does not complete a quorum).
    ``notify`` queues a notification in the outbox in the same transaction.
    """

    status: Status | None = None
    decided_by: DecidedBy | None = None
    decided_at: datetime | None = None
    note: str | None = None
    vote: Vote | None = None
    events: tuple[NewEvent, ...] = ()
    notify: bool = False
    consumed_at: datetime | None = None  #: mark an approved request as used
    escalated_at: datetime | None = None  #: mark a pending request as escalated
    approved_payload: JsonObject | None = None  #: with status approved: the payload as the reviewer changed it
    claim: Claim | None = None  #: set the request's claim (a pending request)
    release: bool = False  #: clear the request's claim


class Order(enum.StrEnum):
    NEWEST = "newest"  #: Newest first: created_at, then id, descending. Keyset cursor: (created_at, id).
    PRIORITY = "priority"  #: Most urgent first, then the nearest deadline, then id. Cursor: (rank, expires_at, id).


#: Where a page ended: ``(created_at, id)`` for ``Order.NEWEST``, ``(priority rank, expires_at, id)`` for
#: ``Order.PRIORITY``.
Cursor = tuple[datetime, str] | tuple[int, datetime, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestQuery:
    """Filters for the history; results come in ``order`` (newest first unless asked otherwise)."""

    status: Status | None = None
    action: str | None = None  #: exactly this action
    #: this action in any case: the requests whose action is it, ASCII letters in any case (``ascii_lower``), so
    #: ``Refunds.Issue`` finds ``refunds.issue`` and ``REFUNDS.ISSUE``. An action is ASCII (``ACTION_PATTERN`` of the
    #: policy), where this is how rules fold actions (``folding.fold_action``)
    folded_action: str | None = None
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    order: Order = Order.NEWEST
    before: Cursor | None = None  #: keyset cursor: the ``next_cursor`` of the previous page, in the same order
    #: words found in the action, the summary or the agent id (ASCII letters in any case; ``matches_text``)
    text: str | None = None
    reviewer: str | None = None  #: only requests this reviewer voted on (the name as recorded)

    def __post_init__(self) -> None:
        if self.before is not None and len(self.before) != (3 if self.order is Order.PRIORITY else 2):
            raise ValueError(f"a cursor of another order than {self.order.value}: {self.before!r}")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(value: str) -> str:
    """Lower case for ASCII letters only, as SQLite's ``lower()``: every store compares text the same way."""
    return value.translate(_ASCII_LOWER)


def matches_text(request: ApprovalRequest, text: str) -> bool:
    """``RequestQuery.text``: ``text`` occurs in the action, the summary or the agent id (ASCII case ignored)."""
    needle = ascii_lower(text)
    return any(needle in ascii_lower(field) for field in (request.action, request.summary, request.agent_id or ""))


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    items: tuple[ApprovalRequest, ...]
    next_cursor: Cursor | None


def priority_key(request: ApprovalRequest) -> tuple[int, datetime, str]:
    """The cursor of ``request`` in ``Order.PRIORITY``; ascending order of ``(-rank, expires_at, id)`` is that order."""
    return request.priority.rank, request.expires_at, request.id


def newest_key(request: ApprovalRequest) -> tuple[datetime, str]:
    """The cursor of ``request`` in ``Order.NEWEST`` (descending)."""
    return request.created_at, request.id


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionHistory:
    """What the anomaly trigger knows about an action before a new request."""

    seen_from_agent: bool  #: a request for this action from this agent was approved before
    #: recent numeric payload values, per dotted field as asked for; a field in lists (``items[].qty``) is asked for
    #: by its path without them (``items.qty``: ``payload_numbers.NumericField.history``)
    values: Mapping[str, tuple[float, ...]]
    #: per field, ``(count, median, MAD, mean absolute deviation)`` of its finite values, when the caller keeps
    #: them current (``policy replay``'s history); the mean is only read, and given (else nan), when the MAD is 0.
    #: The stores leave it empty and the check computes them from ``values``: the results are the same.
    spreads: Mapping[str, tuple[int, float, float, float]] = field(default_factory=dict)


class RecordedRequest(NamedTuple):
    """What ``policy replay`` reads of one recorded request: what the agent asked and what became of it.

    A named tuple, not a dataclass, because replay reads a million of them and builds each in one call."""

    id: str
    action: str
    summary: str
    payload: JsonObject  #: as the agent asked
    confidence: float | None
    flags: tuple[str, ...]
    agent_id: str | None
    status: Status
    decided_by: DecidedBy | None
    created_at: datetime
    policy_version: str | None
    approved_payload: JsonObject | None  #: the payload a reviewer approved instead, if one changed it
    payload_bytes: int  #: the size of ``payload`` as canonical JSON (UTF-8), as stored

    @property
    def effective_payload(self) -> JsonObject:
        """The payload the action may run with: the approved one when a reviewer changed it, else as asked."""
        return self.payload if self.approved_payload is None else self.approved_payload


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  #: Not shown yet; tried again at ``next_attempt_at``.
    DELIVERED = "delivered"  #: This notifier showed the request's state (this row's, or a newer one).
    DEAD = "dead"  #: Failed for good; ``signoff outbox retry`` queues it again.

    @property
    def is_final(self) -> bool:
        return self is not DeliveryState.PENDING


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryMark:
    """One notifier's progress on one outbox row: each notifier is retried, backed off and given up on by itself."""

    notifier: str
    state: DeliveryState
    attempts: int = 0  #: failed attempts so far
    next_attempt_at: datetime | None = None  #: when a pending delivery is tried again
    first_failed_at: datetime | None = None  #: the first failure, for giving up after a while
    last_error: str | None = None
    at: datetime | None = None  #: when it was delivered or given up on


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxItem:
    """A notification waiting to be delivered (written with the change that causes it)."""

    id: int
    request_id: str
    attempts: int
    created_at: datetime
    upto: int = 0  #: the request's newest undelivered row when claimed; delivering its state completes them all
    marks: tuple[DeliveryMark, ...] = ()  #: each notifier's progress on this row, when claimed
    #: the claim's lease token: the row may be delivered and its result recorded only while this still holds it
    lease: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxEntry:
    """An outbox row as ``signoff outbox list`` shows it: waiting, or with a notifier that gave up."""

    id: int
    request_id: str
    created_at: datetime
    next_attempt_at: datetime
    settled: bool  #: no notifier has anything left to do (each delivered or gave up)
    marks: tuple[DeliveryMark, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageRef:
    """The message a notifier posted for a request, so later states update it instead of posting again."""

    request_id: str
    notifier: str
    channel: str
    ts: str
    votes_posted: int = 0  #: votes already replied in the message's thread
    #: set when the post was reserved before sending; with ``ts`` empty, the post may or may not have reached Slack
    reserved_at: datetime | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the message's ``ts`` is known (not just reserved)."""
        return bool(self.ts)
