"""The Store protocol: what the domain needs from persistence, and nothing about SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Protocol

from signoff.storage.metrics_queries import ApprovalMetrics
from signoff.storage.records import (
    ActionHistory,
    ApprovalRequest,
    DeliveryMark,
    Event,
    HumanOutcomes,
    MessageRef,
    NewEvent,
    OutboxEntry,
    OutboxItem,
    Page,
    QueueRead,
    RecordedRequest,
    RequestQuery,
    Transition,
)

Change = Callable[[ApprovalRequest], Transition]


class Store(Protocol):
    """Durable home of requests, votes, the audit log and the outbox.

    Every write is atomic: a request, its events and its outbox row commit together or not at all.
    ``update`` is the only way a request changes; it hands the current request to ``change`` while
    holding the write lock, so the lifecycle rules in ``change`` are a compare-and-set. If ``change``
    raises, nothing is written and the exception propagates.
    """

    async def create_request(
        self,
        request: ApprovalRequest,
        events: Sequence[NewEvent],
        *,
        notify: bool,
        refuse_approval_if_asked_before: bool = False,
    ) -> tuple[ApprovalRequest, bool]:
        """Store a new request with its events; returns ``(request, True)``.

        When the same ``agent_id`` already used this ``idempotency_key``, stores nothing and returns
        ``(first_request, False)``.

        With ``refuse_approval_if_asked_before``, an approved ``request`` is stored only if the newest of the same
        agent's (the same ``agent_id``, or none) earlier requests with its ``payload_sha256`` that went to people
        (``records.went_to_people``), if there is one, was approved by them: else (it is pending, or was rejected,
        expired or cancelled) stores nothing and raises ``AskedBefore`` naming it. Checked under the write lock,
        after the idempotency key, so two racing requests cannot both pass it.
        """
        ...

    async def get(self, request_id: str) -> ApprovalRequest | None: ...

    async def update(self, request_id: str, change: Change) -> ApprovalRequest:
        """Apply ``change(current)`` atomically; raises ``NotFound`` for an unknown id."""
        ...

    async def list_requests(self, query: RequestQuery) -> Page: ...

    async def pending_queue(self, after_seq: int | None = None, limit: int = 500) -> QueueRead:
        """The review queue's columns of the pending requests (no payloads), after reading the audit log's head.

        With ``after_seq`` (the ``head`` of an earlier read): only what changed since, as ``changed`` (the requests
        with events after it) and ``entries`` (those of them still pending); a whole read (``changed`` None) when
        more than ``limit`` events came after it, or the log is behind it (another database)."""
        ...

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids that start with ``prefix``, in order, at most ``limit``: a reviewer may type the start of an id."""
        ...

    async def pending_due(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of pending requests whose expiry has passed."""
        ...

    async def escalations_due(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of pending requests whose escalation time has come and that were not escalated yet."""
        ...

    def recorded_requests(
        self, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[list[RecordedRequest]]:
        """Every request created at or after ``since`` (all when None), oldest first (by creation time, then id),
        in lists of at most ``batch``: what ``policy replay`` walks to rebuild the history as it grew."""
        ...

    async def action_history(
        self, action: str, agent_id: str | None, fields: Sequence[str], limit: int = 200
    ) -> ActionHistory: ...

    def events(self, after_seq: int = 0) -> AsyncIterator[Event]:
        """The audit log in order, from ``after_seq`` (exclusive)."""
        ...

    async def request_events(self, request_id: str) -> list[Event]: ...

    async def append_event(self, event: NewEvent) -> None:
        """Chain an event that belongs to no request (``EventKind.is_console``: a console sign-in or sign-out);
        a request's events are only written with the change they record, so any other kind is a ``ValueError``."""
        ...

    async def change_token(self) -> object:
        """A marker of the store's state now; take it *before* reading what you will wait on."""
        ...

    async def wait_for_change(self, token: object, timeout: float, poll_interval: float | None = None) -> None:
        """Return soon after anything changed since ``token`` (any process), or at ``timeout``.

        ``poll_interval`` trades how soon another process's change is noticed for CPU; the default suits
        agents waiting for a decision, background workers pass a slower one.
        """
        ...

    async def claim_outbox(self, now: datetime, lease_seconds: float = 120.0, limit: int = 10) -> list[OutboxItem]:
        """Lease notifications due for delivery, so no other worker takes them for ``lease_seconds``.

        Only a request's oldest undelivered notification is due, so one request's deliveries never overlap. Each
        claim draws a new lease token (``OutboxItem.lease``): a claim of a row whose lease ran out takes it over,
        and the earlier holder's ``renew_outbox`` and ``record_deliveries`` then do nothing.
        """
        ...

    async def renew_outbox(self, item: OutboxItem, now: datetime, lease_seconds: float = 120.0) -> bool:
        """Extend the lease of ``item``'s row to ``now + lease_seconds``, only while ``item.lease`` still holds it
        (no later claim took it over, its result not recorded yet); whether it did. A worker calls it just before
        each delivery and skips the row on False: another server is delivering it. Atomic across processes."""
        ...

    async def complete_outbox(self, item: OutboxItem, event: NewEvent) -> None:
        """Mark delivered, with every later notification of the request up to ``item.upto`` (the state just
        delivered covers them), and append the ``notified`` event, in one transaction."""
        ...

    async def retry_outbox(self, item_id: int, next_attempt_at: datetime, error: str) -> None: ...

    async def record_deliveries(
        self,
        item: OutboxItem,
        marks: Sequence[DeliveryMark],
        *,
        notifiers: Sequence[str],
        now: datetime,
        next_attempt_at: datetime,
        events: Sequence[NewEvent],
    ) -> bool:
        """After a round of per-notifier deliveries of ``item``, in one transaction: save each of ``marks`` on the
        item's row (a final one, delivered or dead, also on the request's unsettled rows up to ``item.upto``, whose
        state it showed); settle each of those rows on which every one of ``notifiers`` has a final mark; let an
        unsettled item be claimed again at ``next_attempt_at`` (the lease is given up); append ``events``. Only while
        ``item.lease`` still holds the row: nothing (and False) if another worker settled it or took it over."""
        ...

    async def outbox_entries(self, limit: int = 1000) -> list[OutboxEntry]:
        """Outbox rows still waiting for a notifier, and rows a notifier gave up on, oldest first."""
        ...

    async def requeue_dead(self, outbox_id: int | None, now: datetime) -> list[int]:
        """Queue again, due at ``now``, the dead deliveries of row ``outbox_id`` (None: of every row); the ids
        re-queued. The notifiers that delivered the row are not run again."""
        ...

    async def message_ref(self, request_id: str, notifier: str) -> MessageRef | None: ...

    async def save_message_ref(self, ref: MessageRef) -> None:
        """Insert or replace the notifier's message reference for the request."""
        ...

    async def swap_message_ref(self, expected: MessageRef | None, ref: MessageRef) -> bool:
        """Replace the notifier's message reference for the request with ``ref`` only if it is still ``expected``
        (None: there is none yet); whether it did. Atomic across processes: of two servers reserving the same post,
        one wins."""
        ...

    async def claim_once(self, key: str, now: datetime, forget_after: datetime) -> bool:
        """Whether this is the first claim of ``key``: True once, False while an earlier claim holds. A claim holds
        until its ``forget_after``; claims already past it at ``now`` are deleted on the way (and their keys may be
        claimed again). Atomic across every process on the database: of calls racing on one key, one gets True."""
        ...

    async def human_outcomes(self, model: str, since: datetime, until: datetime) -> dict[str, HumanOutcomes]:
        """Per version of ``model``: what people made of the requests that named it, created in ``[since, until)``.
        Versions no request named are absent."""
        ...

    async def metrics(self) -> ApprovalMetrics:
        """The shared counts and gauges of ``GET /metrics`` and ``signoff stats`` (``storage.metrics_queries``)."""
        ...

    async def close(self) -> None: ...
