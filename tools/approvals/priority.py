"""Priority computed from the request: a rule's ``priority_from`` (amount bands, trigger kinds).

Pure: no I/O. A decision's priority is the highest of: each matching rule's ``priority``, the band its
``priority_from.path`` value falls in, and the ``priority_from.triggers`` entry of each trigger kind that fired;
``normal`` when none of them gives one. "Priority" in docs/policy.md states the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from signoff.storage import Priority, TriggerKind
from signoff.storage.canonical import is_finite_number
from signoff.tools.typed_toml import Fault

__all__ = ["Band", "PriorityFrom", "TriggerPriority", "highest"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Band:
    at_least: float  #: the value at ``path`` is at least this
    priority: Priority


@dataclass(frozen=True, kw_only=True, slots=True)
class TriggerPriority:
    kind: TriggerKind  #: a trigger of this kind fired on the request
    priority: Priority


@dataclass(frozen=True, kw_only=True, slots=True)
class PriorityFrom:
    """``priority_from`` on a rule: its requests' priority computed from a number of the request and the triggers."""

    path: str | None = None  #: a request path holding a number (payload.amount); needed with bands
    bands: tuple[Band, ...] = ()  #: the band with the largest ``at_least`` the value reaches gives the priority
    triggers: tuple[TriggerPriority, ...] = ()  #: a fired trigger kind -> a priority

    def __post_init__(self) -> None:
        if not self.bands and not self.triggers:
            raise Fault((), "give bands (with path), triggers, or both")
        if self.bands and self.path is None:
            raise Fault((), 'bands need path, the number they band, e.g. path = "payload.amount"')
        if self.path is not None and not self.bands:
            raise Fault(("path",), "applies only with bands")
        for index, band in enumerate(self.bands):
            if not math.isfinite(band.at_least):
                raise Fault(("bands", index, "at_least"), "must be a finite number")
            if index and band.at_least <= self.bands[index - 1].at_least:
                raise Fault(("bands", index, "at_least"), "bands must be in increasing order of at_least")
        kinds = [entry.kind for entry in self.triggers]
        for index, kind in enumerate(kinds):
            if kind in kinds[:index]:
                raise Fault(("triggers", index, "kind"), f"{kind} is listed twice")

    def computed(self, value: Any, fired: Iterable[TriggerKind]) -> list[Priority]:
        """The priorities this gives a request whose ``path`` holds ``value`` (None: missing) and whose triggers are
        of the kinds ``fired``. A value there that is not a number gets the highest band: unclear input fails
        closed, to the front of the queue."""
        found: list[Priority] = []
        if self.bands and value is not None:
            if is_finite_number(value):
                reached = [band for band in self.bands if value >= band.at_least]
                if reached:
                    found.append(reached[-1].priority)
            else:
                found.append(max((band.priority for band in self.bands), key=lambda p: p.rank))
        kinds = set(fired)
        found += [entry.priority for entry in self.triggers if entry.kind in kinds]
        return found


def highest(priorities: Iterable[Priority]) -> Priority:
    """The highest of ``priorities``; ``normal`` if there are none."""
    return max(priorities, key=lambda p: p.rank, default=Priority.NORMAL)
