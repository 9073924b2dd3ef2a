"""Replaying the alert events (``alert_fired``, ``alert_resolved``) into ``alert_episodes`` rows, and comparing.

Each episode's start and end is an event in the chain (``storage.alerts``), so an episode row edited, added or
removed behind signoff's back shows. Episodes recorded before alerts entered the chain (migration 0015) have no
events: those older than the first episode with one are counted as unchecked, not passed silently. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signoff.storage.audit_requests import Finding
from signoff.storage.records import Event, EventKind
from signoff.storage.timefmt import to_text

if TYPE_CHECKING:
    from signoff.storage.alerts import Episode


@dataclass(slots=True)
class AlertReplay:
    episodes: dict[int, dict[str, Any]] = field(default_factory=dict)  #: episode id -> its columns

    def apply(self, event: Event) -> None:
        data = event.data
        episode = int(data.get("episode", -1))
        row = self.episodes.setdefault(episode, {"rule": data.get("rule"), "fired_at": None, "resolved_at": None})
        if event.kind is EventKind.ALERT_FIRED:
            row.update(fired_at=to_text(event.at), fired_value=data.get("value"), message=data.get("message"))
            row.setdefault("resolved_value", None)
        else:
            row.update(resolved_at=to_text(event.at), resolved_value=data.get("value"))


def episode_columns(e: Episode) -> dict[str, Any]:
    return {
        "rule": e.rule,
        "fired_at": to_text(e.fired_at),
        "fired_value": e.fired_value,
        "message": e.message,
        "resolved_at": to_text(e.resolved_at) if e.resolved_at else None,
        "resolved_value": e.resolved_value,
    }


def compare(episodes: Sequence[Episode], replay: AlertReplay, unchecked: dict[str, int]) -> Finding | None:
    """The first episode row that differs from its events, or events without a row; rows from before alerts
    entered the chain are counted in ``unchecked``."""
    first_recorded = min(replay.episodes, default=None)
    rows = {e.id: e for e in episodes}
    for e in sorted(episodes, key=lambda e: e.id):
        where = f"alert episode {e.id} ({e.rule})"
        expected = replay.episodes.get(e.id)
        if expected is None:
            if first_recorded is None or e.id < first_recorded:
                unchecked["alert_episodes"] = unchecked.get("alert_episodes", 0) + 1
                continue
            return Finding(
                row=where, column="id", reason="it has no alert_fired event: the row was added outside signoff"
            )
        for column, value in episode_columns(e).items():
            if expected.get(column) != value:
                return Finding(row=where, column=column, reason=f"it differs from its events ({value!r})")
    missing = sorted(set(replay.episodes) - set(rows))
    if missing:
        return Finding(
            row=f"alert episode {missing[0]}", column="id", reason="it has events but no row: the episode was deleted"
        )
    return None
