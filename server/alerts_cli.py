"""``signoff alerts``: the alerts firing now and the recent ones, read from the database."""

from __future__ import annotations

import argparse
import json

from signoff.server.render import short_time
from signoff.storage.alerts import Alerts, Episode

HEADER = ("ID", "RULE", "STATE", "FIRED (UTC)", "RESOLVED (UTC)", "UNSENT", "GAVE UP", "MESSAGE")


def record(episode: Episode) -> dict[str, object]:
    return {
        "id": episode.id,
        "rule": episode.rule,
        "state": "resolved" if episode.resolved_at else "firing",
        "fired_at": episode.fired_at.isoformat(),
        "fired_value": episode.fired_value,
        "resolved_at": episode.resolved_at.isoformat() if episode.resolved_at else None,
        "resolved_value": episode.resolved_value,
        "messages_waiting": episode.undelivered,
        "messages_dead": episode.dead,
        "repeats": episode.repeats,
        "message": episode.message,
    }


async def alerts_list(store: Alerts, args: argparse.Namespace) -> int:
    """Print the episodes from ``store``, which this closes."""
    try:
        episodes = await store.episodes(args.limit)
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"alerts": [record(e) for e in episodes]}, indent=2))
        return 0
    if not episodes:
        print("no alerts yet")
        return 0
    rows = [
        (
            str(e.id),
            e.rule,
            "resolved" if e.resolved_at else "FIRING",
            short_time(e.fired_at),
            short_time(e.resolved_at) if e.resolved_at else "-",
            str(e.undelivered),
            str(e.dead),
            e.message,
        )
        for e in episodes
    ]
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    for row in [HEADER, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0
