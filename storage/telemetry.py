"""How telemetry is kept, shared by every model store: per-minute sums plus bounded latency reservoirs.

Sums (count, errors, latency, confidence) are exact per (model, version, minute), so counts and error
rates over any window of whole minutes are exact and cost one row per minute to read. Latencies are
kept as a uniform random sample per (model, version, 10-minute period): Algorithm R (Vitter) keeps at
most ``RESERVOIR_SIZE`` of them, each stored with its minute, so a window's percentiles and rank tests
read at most ``RESERVOIR_SIZE`` rows per period whatever the traffic.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.model_records import Inference

RESERVOIR_SIZE = 512  #: latencies kept per version per period
PERIOD_MINUTES = 10  #: length of one reservoir's period
RETENTION_PERIODS = 6 * 24 * 7  #: reservoirs older than seven days are deleted; minute sums are kept


def minute_of(at: datetime) -> int:
    """Whole minutes since the Unix epoch."""
    return int(at.timestamp() // 60)


def period_of(minute: int) -> int:
    return minute // PERIOD_MINUTES


def inclusion_probability(seen: int) -> float:
    """The chance that one inference of a period in which ``seen`` were recorded is in its reservoir."""
    return 1.0 if seen <= RESERVOIR_SIZE else RESERVOIR_SIZE / seen


@dataclass(slots=True)
class MinuteSums:
    count: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    confidence_sum: float = 0.0
    confidence_count: int = 0

    def add(self, item: Inference) -> None:
        self.count += 1
        self.errors += not item.ok
        self.latency_sum += item.latency_ms
        if item.confidence is not None:
            self.confidence_sum += item.confidence
            self.confidence_count += 1


def minute_sums(items: Iterable[Inference]) -> dict[tuple[str, str, int], MinuteSums]:
    """The batch's sums per (model, version, minute)."""
    sums: dict[tuple[str, str, int], MinuteSums] = defaultdict(MinuteSums)
    for item in items:
        sums[(item.model, item.version, minute_of(item.at))].add(item)
    return dict(sums)


def by_period(items: Iterable[Inference]) -> dict[tuple[str, str, int], list[Inference]]:
    """The batch grouped per reservoir, in arrival order."""
    groups: dict[tuple[str, str, int], list[Inference]] = defaultdict(list)
    for item in items:
        groups[(item.model, item.version, period_of(minute_of(item.at)))].append(item)
    return dict(groups)


def reservoir_writes(
    seen: int, items: Sequence[Inference], rng: random.Random
) -> tuple[int, Mapping[int, tuple[int, float]]]:
    """Algorithm R over ``items`` for a reservoir that has seen ``seen`` inferences so far.

    Returns the new count and the slots to write, ``{slot: (minute, latency_ms)}``; a later item that
    lands on the same slot replaces an earlier one, as it would one at a time.
    """
    writes: dict[int, tuple[int, float]] = {}
    for item in items:
        seen += 1
        slot = seen - 1 if seen <= RESERVOIR_SIZE else rng.randrange(seen)
        if slot < RESERVOIR_SIZE:
            writes[slot] = (minute_of(item.at), item.latency_ms)
    return seen, writes
