"""What model_stats reports, computed from stored telemetry (exact sums plus latency reservoirs).

Percentiles weight each kept latency by ``1 / p`` (the inferences it stands for), so a busy period counts
for more than a quiet one. Rank tests need an unweighted sample, so ``uniform_latencies`` thins every
period down to the lowest sampling rate in the window: the result is a uniform sample of the window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from storage.model_records import VersionTelemetry
from tools.canary import Evidence, wilson_interval


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


def weighted_quantile(samples: Sequence[tuple[float, float]], q: float) -> float | None:
    """The smallest value whose cumulative weight reaches ``q`` of the total; weights are ``1 / p``."""
    if not samples:
        return None
    ordered = sorted((value, 1 / p) for value, p in samples)
    target = q * sum(w for _, w in ordered)
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= target:
            return value
    return ordered[-1][0]


def version_stats(t: VersionTelemetry, min_samples: int) -> VersionStats:
    has_data = t.count > 0
    return VersionStats(
        version=t.version,
        count=t.count,
        errors=t.errors,
        error_rate=t.errors / t.count if has_data else None,
        error_rate_ci95=wilson_interval(t.errors, t.count) if has_data else None,
        latency_mean_ms=t.latency_sum / t.count if has_data else None,
        latency_p50_ms=weighted_quantile(t.samples, 0.50),
        latency_p95_ms=weighted_quantile(t.samples, 0.95),
        latency_p99_ms=weighted_quantile(t.samples, 0.99),
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
