"""What model_stats reports, computed from stored telemetry (exact sums plus latency reservoirs).

Percentiles weight each kept latency by ``1 / p`` (the inferences it stands for), so a busy period counts
for more than a quiet one. Rank tests need an unweighted sample, so ``uniform_latencies`` thins every
period down to the lowest sampling rate in the window: the result is a uniform sample of the window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from signoff.storage import VersionTelemetry
from signoff.tools.models.canary import Evidence, wilson_interval


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionStats:
    version: str
    count: int
    errors: int
    error_rate: float | None
    error_rate_ci95: tuple[float, float] | None  #: Wilson score interval
    latency_mean_ms: float | None  #: exact, from the sums
    latency_p50_ms: float | None  #: estimated from the reservoir sample
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_samples: int
    mean_confidence: float | None
    enough_samples: bool  #: count >= min_samples


def empty(version: str) -> VersionTelemetry:
    return VersionTelemetry(version=version, count=0, errors=0, latency_sum=0.0, confidence_sum=0.0, confidence_count=0)


def weighted_quantiles(samples: Sequence[tuple[float, float]], qs: Sequence[float]) -> list[float | None]:
    """For each ``q``, the smallest value whose cumulative weight reaches ``q`` of the total; weights are ``1 / p``."""
    if not samples:
        return [None for _ in qs]
    ordered = sorted((value, 1 / p) for value, p in samples)
    total = sum(w for _, w in ordered)
    found: list[float | None] = []
    i, running = 0, ordered[0][1]
    for q in qs:  # ascending, so one pass over the sorted sample answers them all
        while running < q * total and i + 1 < len(ordered):
            i += 1
            running += ordered[i][1]
        found.append(ordered[i][0])
    return found


def version_stats(t: VersionTelemetry, min_samples: int) -> VersionStats:
    has_data = t.count > 0
    p50, p95, p99 = weighted_quantiles(t.samples, (0.50, 0.95, 0.99))
    return VersionStats(
        version=t.version,
        count=t.count,
        errors=t.errors,
        error_rate=t.errors / t.count if has_data else None,
        error_rate_ci95=wilson_interval(t.errors, t.count) if has_data else None,
        latency_mean_ms=t.latency_sum / t.count if has_data else None,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        latency_samples=len(t.samples),
        mean_confidence=t.confidence_sum / t.confidence_count if t.confidence_count else None,
        enough_samples=t.count >= min_samples,
    )


def uniform_latencies(t: VersionTelemetry, rng: random.Random) -> list[float]:
    """Keep each sample with probability ``p_min / p``: every inference of the window then had chance ``p_min``."""
    if not t.samples:
        return []
    lowest = min(p for _, p in t.samples)
    return [value for value, p in t.samples if p == lowest or rng.random() < lowest / p]


def evidence(t: VersionTelemetry, rng: random.Random) -> Evidence:
    return Evidence(count=t.count, errors=t.errors, latencies=uniform_latencies(t, rng))
