"""Canary analysis, pure: is a candidate version worse than its baseline? Standard library only.

Two metrics, each with a one-sided test at level ``alpha`` and a tolerance that counts as "no worse":

- error rate: the pooled two-proportion z-test (H1: the candidate's rate is higher). It **fails** when
  the test is significant and the candidate's rate exceeds the baseline's by more than
  ``max_error_rate_increase``; it **passes** when the upper ``1 - alpha`` confidence bound of the
  difference (Agresti-Caffo, which behaves with zero errors) is within that tolerance.
- latency: the Mann-Whitney U test (normal approximation, tie-corrected, continuity-corrected;
  H1: the candidate's latencies tend to be larger). It **fails** when significant and the candidate's
  median exceeds the baseline's by more than ``max_latency_increase``; it **passes** when the same test
  shows the candidate below the baseline scaled by ``1 + max_latency_increase`` (non-inferiority).

Anything else is ``inconclusive``: the data cannot yet tell. Fewer than ``min_samples`` inferences on
either side is ``insufficient_data`` whatever the numbers say.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ERROR_RATE_TEST = "two-proportion z-test (pooled, one-sided)"
LATENCY_TEST = "Mann-Whitney U (normal approximation, tie- and continuity-corrected, one-sided)"


class Verdict(enum.StrEnum):
    PASS = "pass"  #: No worse than the baseline within the limits, with confidence.
    FAIL = "fail"  #: Significantly worse than the baseline, by more than the limits allow.
    INCONCLUSIVE = "inconclusive"  #: Enough data to look at, not enough to tell.
    INSUFFICIENT_DATA = "insufficient_data"  #: Fewer inferences than min_samples on one side.


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryLimits:
    """What counts as worse. The defaults suit a guard that acts without asking anyone."""

    alpha: float = 0.01  #: one-sided significance level of every test
    max_error_rate_increase: float = 0.01  #: absolute: 0.01 allows +1 percentage point
    max_latency_increase: float = 0.20  #: relative: 0.20 allows a median 20% higher
    min_latency_samples: int = 20  #: fewer latency samples on a side make latency inconclusive


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """One version's data: exact counts and a uniform sample of its latencies."""

    count: int
    errors: int
    latencies: Sequence[float]


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricResult:
    metric: Literal["error_rate", "latency_ms"]
    test: str
    verdict: Verdict
    baseline: float | None
    candidate: float | None
    p_value: float | None
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryResult:
    verdict: Verdict
    metrics: tuple[MetricResult, ...]


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


def two_proportion_z(errors_b: int, n_b: int, errors_c: int, n_c: int) -> tuple[float, float]:
    """``(z, p)`` for H1: the candidate's proportion is higher. No variance (all or none) gives ``(0, 1)``."""
    pooled = (errors_b + errors_c) / (n_b + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_c))
    if se == 0:
        return 0.0, 1.0
    z = (errors_c / n_c - errors_b / n_b) / se
    return z, normal_sf(z)


def difference_upper_bound(errors_b: int, n_b: int, errors_c: int, n_c: int, z: float) -> float:
    """Agresti-Caffo upper bound of (candidate rate - baseline rate): add one error and one success per side."""
    pb, pc = (errors_b + 1) / (n_b + 2), (errors_c + 1) / (n_c + 2)
    return pc - pb + z * math.sqrt(pb * (1 - pb) / (n_b + 2) + pc * (1 - pc) / (n_c + 2))


def wilson_interval(errors: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); ``(0, 1)`` with no data."""
    if n == 0:
        return 0.0, 1.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """``(U_x, z, p)`` for H1: values of ``x`` tend to be larger than values of ``y``."""
    n_x, n_y = len(x), len(y)
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n_x + n_y
    rank_sum_x, ties, i = 0.0, 0.0, 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1  # the average of ranks i+1 .. j+1
        t = j - i + 1
        ties += t**3 - t
        rank_sum_x += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_x - n_x * (n_x + 1) / 2
    mean = n_x * n_y / 2
    variance = n_x * n_y / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return u, 0.0, 1.0
    z = (u - mean - 0.5) / math.sqrt(variance)
    return u, z, normal_sf(z)


def analyze(baseline: Evidence, candidate: Evidence, limits: CanaryLimits, min_samples: int) -> CanaryResult:
    if min(baseline.count, candidate.count) < min_samples:
        detail = (
            f"baseline has {baseline.count} and candidate {candidate.count} inferences; each needs at least"
            f" {min_samples} before anything is judged"
        )
        unjudged = MetricResult(
            metric="error_rate",
            test=ERROR_RATE_TEST,
            verdict=Verdict.INSUFFICIENT_DATA,
            baseline=None,
            candidate=None,
            p_value=None,
            detail=detail,
        )
        metrics = (unjudged, dataclasses.replace(unjudged, metric="latency_ms", test=LATENCY_TEST))
        return CanaryResult(verdict=Verdict.INSUFFICIENT_DATA, metrics=metrics)
    metrics = (_error_rate(baseline, candidate, limits), _latency(baseline, candidate, limits))
    verdicts = {m.verdict for m in metrics}
    if Verdict.FAIL in verdicts:
        verdict = Verdict.FAIL
    elif verdicts == {Verdict.PASS}:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    return CanaryResult(verdict=verdict, metrics=metrics)


def _error_rate(baseline: Evidence, candidate: Evidence, limits: CanaryLimits) -> MetricResult:
    rate_b, rate_c = baseline.errors / baseline.count, candidate.errors / candidate.count
    _, p = two_proportion_z(baseline.errors, baseline.count, candidate.errors, candidate.count)
    bound = difference_upper_bound(
        baseline.errors, baseline.count, candidate.errors, candidate.count, normal_quantile(1 - limits.alpha)
    )
    limit = limits.max_error_rate_increase
    seen = f"candidate {rate_c:.2%} vs baseline {rate_b:.2%}"
    if p < limits.alpha and rate_c - rate_b > limit:
        verdict, why = Verdict.FAIL, f"{seen}: significantly higher (p={p:.2g}), by more than {limit:.2%}"
    elif bound <= limit:
        verdict, why = Verdict.PASS, f"{seen}: at most {bound:+.2%} higher with confidence, within {limit:.2%}"
    else:
        verdict, why = Verdict.INCONCLUSIVE, f"{seen}: could be up to {bound:+.2%} higher; the limit is {limit:.2%}"
    return MetricResult(
        metric="error_rate",
        test=ERROR_RATE_TEST,
        verdict=verdict,
        baseline=rate_b,
        candidate=rate_c,
        p_value=p,
        detail=why,
    )


def _latency(baseline: Evidence, candidate: Evidence, limits: CanaryLimits) -> MetricResult:
    b, c = baseline.latencies, candidate.latencies
    if min(len(b), len(c)) < limits.min_latency_samples:
        return MetricResult(
            metric="latency_ms",
            test=LATENCY_TEST,
            verdict=Verdict.INCONCLUSIVE,
            baseline=None,
            candidate=None,
            p_value=None,
            detail=f"only {len(b)} and {len(c)} latency samples; {limits.min_latency_samples} needed",
        )
    median_b, median_c = statistics.median(b), statistics.median(c)
    _, _, p_worse = mann_whitney(c, b)
    scale = 1 + limits.max_latency_increase
    _, _, p_within = mann_whitney([v * scale for v in b], c)
    ratio = median_c / median_b if median_b > 0 else math.inf if median_c > 0 else 1.0
    seen = f"median {median_c:.1f} ms vs {median_b:.1f} ms"
    if p_worse < limits.alpha and ratio > scale:
        verdict, why = Verdict.FAIL, f"{seen}: significantly slower (p={p_worse:.2g}), by more than {scale - 1:.0%}"
    elif p_within < limits.alpha:
        verdict, why = Verdict.PASS, f"{seen}: shown to be less than {scale - 1:.0%} slower (p={p_within:.2g})"
    else:
        verdict, why = Verdict.INCONCLUSIVE, f"{seen}: cannot yet rule out being more than {scale - 1:.0%} slower"
    return MetricResult(
        metric="latency_ms",
        test=LATENCY_TEST,
        verdict=verdict,
        baseline=median_b,
        candidate=median_c,
        p_value=p_worse,
        detail=why,
    )
