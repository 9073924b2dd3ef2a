"""Per-notifier delivery marks on outbox rows: the rules both stores share. Pure: no I/O.

A claimed outbox row stands for every unsettled row of its request up to ``upto`` (a notifier shows the request's
current state, which covers them all). A notifier is done with the claim only when it has a final mark (delivered
or dead) on every one of those rows; otherwise it owes the current state, with the backoff of its pending mark on
the claimed row, if it has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import uuid4

from signoff.storage.records import DeliveryMark, DeliveryState, MessageRef
from signoff.storage.timefmt import from_text, to_text


def claim_marks(item_id: int, covered: Mapping[int, Sequence[DeliveryMark]]) -> tuple[DeliveryMark, ...]:
    """The marks a worker sees on a claim: ``covered`` maps each unsettled row id up to ``upto`` (the claimed
    ``item_id`` first) to its marks."""
    names = {mark.notifier for marks in covered.values() for mark in marks}
    shown: list[DeliveryMark] = []
    for name in sorted(names):
        on_rows = [next((m for m in marks if m.notifier == name), None) for marks in covered.values()]
        own = next((m for m in covered.get(item_id, ()) if m.notifier == name), None)
        if all(m is not None and m.state.is_final for m in on_rows):
            shown.append(on_rows[-1])  # type: ignore[arg-type]  # all() above: none is None
        elif own is not None and own.state is DeliveryState.PENDING:
            shown.append(own)
    return tuple(shown)


def lease_token() -> str:
    """A new claim's lease token (``OutboxItem.lease``): unique across servers."""
    return uuid4().hex


def is_settled(marks: Sequence[DeliveryMark], notifiers: Sequence[str]) -> bool:
    """Whether every one of ``notifiers`` has delivered or given up on the row with these marks."""
    final = {m.notifier for m in marks if m.state.is_final}
    return all(name in final for name in notifiers)


def mark_row(outbox_id: int, mark: DeliveryMark) -> tuple[Any, ...]:
    """An ``outbox_deliveries`` row (``queries.MARK_COLUMNS``) for ``mark`` on row ``outbox_id``."""

    def text(moment: datetime | None) -> str | None:
        return to_text(moment) if moment is not None else None

    return (
        outbox_id,
        mark.notifier,
        mark.state.value,
        mark.attempts,
        text(mark.next_attempt_at),
        text(mark.first_failed_at),
        mark.last_error[:500] if mark.last_error else None,
        text(mark.at),
    )


def mark_from_row(row: Sequence[Any]) -> DeliveryMark:
    """The inverse of ``mark_row``."""

    def moment(text: str | None) -> datetime | None:
        return from_text(text) if text else None

    return DeliveryMark(
        notifier=row[1],
        state=DeliveryState(row[2]),
        attempts=row[3],
        next_attempt_at=moment(row[4]),
        first_failed_at=moment(row[5]),
        last_error=row[6],
        at=moment(row[7]),
    )


def message_ref_swap(
    insert: str, swap: str, expected: MessageRef | None, ref: MessageRef
) -> tuple[str, tuple[Any, ...]]:
    """The statement (``insert`` or ``swap``, the engine's ``INSERT_MESSAGE_REF`` and ``SWAP_MESSAGE_REF``) and its
    parameters that write ``ref`` only if the stored reference is still ``expected``: one row changed if it did."""

    def values(r: MessageRef) -> tuple[Any, ...]:
        return (r.channel, r.ts, r.votes_posted, to_text(r.reserved_at) if r.reserved_at else None)

    if expected is None:
        return insert, (ref.request_id, ref.notifier, *values(ref))
    return swap, (*values(ref), expected.request_id, expected.notifier, *values(expected))
