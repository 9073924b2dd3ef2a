"""How telemetry is kept, shared by every model store: per-minute sums plus bounded latency reservoirs.

Sums (count, errors, latency, confidence) are exact per (model, version, minute), so counts and error
rates over any window of whole minutes are exact and cost one row per minute to read. Latencies are
kept as a uniform random sample per (model, version, 10-minute period): Algorithm R (Vitter) keeps at
most ``RESERVOIR_SIZE`` of them, each stored with its minute, so a window's percentiles and rank tests
read at most ``RESERVOIR_SIZE`` rows per period whatever the traffic. A long window (a week holds about
1,000 periods) is thinned as it is read, to about ``MAX_WINDOW_SAMPLES`` per version: each kept sample
stays with the same chance, chosen by a hash of its place in the reservoir, so what is left is still a
uniform sample, and percentiles and rank tests cost the same for an hour as for a month.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from signoff.storage.models.records import Inference

RESERVOIR_SIZE = 512  #: latencies kept per version per period
PERIOD_MINUTES = 10  #: length of one reservoir's period
RETENTION_PERIODS = 6 * 24 * 7  #: reservoirs older than seven days are deleted; minute sums are kept
MAX_WINDOW_SAMPLES = 10_000  #: latencies read per version for one window, at most (about)
SAMPLE_HASH_MODULUS = 10_007  #: a prime; a sample is kept when its hash is below the window's threshold


def minute_of(at: datetime) -> int:
    """Whole minutes since the Unix epoch."""
    return int(at.timestamp() // 60)


def period_of(minute: int) -> int:
    return minute // PERIOD_MINUTES


def inclusion_probability(seen: int) -> float:
    """The chance that one inference of a period in which ``seen`` were recorded is in its reservoir."""
    return 1.0 if seen <= RESERVOIR_SIZE else RESERVOIR_SIZE / seen


def sample_hash(period: int, slot: int) -> int:
    """A well-mixed number in ``[0, SAMPLE_HASH_MODULUS)`` for one reservoir slot.

    Slots fill in arrival order until a reservoir is full, so keeping the low slots would keep the first
    inferences of each period; the hash spreads the kept ones over the whole period instead. SQLite
    computes the same expression (``storage.model_queries``), so both stores thin alike.
    """
    return (period * 2_654_435_761 + slot * 40_503 + 12_345) % SAMPLE_HASH_MODULUS


def thinning_threshold(kept: int, limit: int = MAX_WINDOW_SAMPLES) -> int:
    """Keep a sample when ``sample_hash(...) < threshold``: about ``limit`` of a window's ``kept`` samples."""
    if kept <= limit:
        return SAMPLE_HASH_MODULUS
    return max(1, SAMPLE_HASH_MODULUS * limit // kept)


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
