"""``signoff outbox``: the notifications still waiting for a notifier, those a notifier gave up on, and re-queueing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from signoff.server.render import short_time
from signoff.storage import DeliveryState, InvalidInput, OutboxEntry
from signoff.storage.text import visible
from signoff.tools.approvals.service import ApprovalService


def rows(entries: list[OutboxEntry]) -> list[tuple[str, ...]]:
    """One line per notifier with something to show: waiting (its next attempt) or dead (since when)."""
    lines: list[tuple[str, ...]] = []
    for entry in entries:
        shown = [m for m in entry.marks if m.state is not DeliveryState.DELIVERED]
        if not shown and not entry.settled:
            lines.append((str(entry.id), entry.request_id, "-", "waiting", "0", short_time(entry.next_attempt_at), ""))
        for mark in shown:
            when = mark.at if mark.state is DeliveryState.DEAD else mark.next_attempt_at
            state = "dead" if mark.state is DeliveryState.DEAD else "waiting"
            error = visible(mark.last_error or "")
            line = (str(entry.id), entry.request_id, mark.notifier, state, str(mark.attempts), short_time(when), error)
            lines.append(line)
    return lines


async def outbox_list(service: ApprovalService, args: argparse.Namespace) -> int:
    lines = rows(await service.store.outbox_entries())
    if not lines:
        print("nothing waiting and nothing dead: every notification was delivered")
        return 0
    table = [("ID", "REQUEST", "NOTIFIER", "STATE", "ATTEMPTS", "NEXT / DEAD SINCE (UTC)", "LAST ERROR"), *lines]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip())
    dead = sum(1 for line in lines if line[3] == "dead")
    if dead:
        print(f"\n{dead} dead: fix the cause, then `signoff outbox retry ID` or `signoff outbox retry --all-dead`")
    return 0


async def outbox_retry(service: ApprovalService, args: argparse.Namespace) -> int:
    ids = await service.store.requeue_dead(None if args.all_dead else args.id, datetime.now(UTC))
    if not ids:
        if args.all_dead:
            print("no dead deliveries to queue again")
            return 0
        raise InvalidInput(f"outbox row {args.id} has no dead delivery; `signoff outbox list` shows the ones that do")
    print(f"queued again: {', '.join(map(str, ids))} (a running server delivers them at once)")
    return 0
