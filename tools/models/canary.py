"""Canary analysis, pure: is a candidate version worse than its baseline? Standard library only.

Two metrics, each with a one-sided test at level ``alpha`` and a tolerance that counts as "no worse":

- error rate. The candidate is **worse** when its rate exceeds the baseline's by more than
  ``max_error_rate_increase`` (absolute: 0.01 is one percentage point) **or** is more than
  ``max_error_rate_ratio`` times the baseline's (relative). Breaking either limit is enough, so the tolerated
  increase is the smaller of the two: ``min(max_error_rate_increase, (max_error_rate_ratio - 1) * baseline)``.
  At a 5% baseline the absolute limit binds (+1 point, not +5); at 0.1% the relative one does (0.8% is eight
  times worse, and fails, although it is under one point higher). At a baseline of 1% the two agree.

  It **fails** when a one-sided test (H1: the candidate's rate is higher) is significant at ``alpha`` and a
  lower ``1 - alpha`` bound shows a limit broken: the lower bound of ``candidate - baseline`` is above
  ``max_error_rate_increase``, or that of ``candidate - ratio * baseline`` is above 0. The observed rates alone
  are not enough: they failed about a third of canaries truly at 1.8x a 1% baseline. The relative limit alone
  would call 0 vs 1 error "infinitely worse"; the significance test keeps such noise from failing.

  Otherwise it **passes**, as Kayenta and Argo Rollouts judge a canary: with at least ``min_samples`` on each side
  and no significant increase, the candidate is taken to be no worse. The detail keeps the uncertainty in view: the
  upper ``1 - alpha`` bound of the increase ("could be up to +2.4 pp higher"), with one error and one success added
  to each side (Agresti-Caffo) so it behaves with zero errors. A significant increase that is neither shown past
  a limit nor shown within both limits is ``inconclusive``: more data will tell.

  The test is Fisher's exact test, one-sided, **mid-p** (the hypergeometric tail beyond the observed count plus
  half its own probability, summed in floating point from one ``lgamma`` term), unless the pooled two-proportion
  z-test is known to be close: every expected cell of the 2x2 table at least ``Z_TEST_MIN_EXPECTED`` (100) and
  the hypergeometric distribution nearly symmetric, ``|skewness| <= Z_TEST_MAX_SKEW`` (0.01). There the two
  agree within about 10% down to p = 1e-4; elsewhere, and above all with unequal sides (a 10% canary against
  90% production), the z-test's tail can be several times too small. ``MetricResult.test`` names the test used.
- latency: the Mann-Whitney U test (normal approximation, tie-corrected, continuity-corrected;
  H1: the candidate's latencies tend to be larger). It **fails** when significant and the candidate's
  median exceeds the baseline's by more than ``max_latency_increase``; significantly slower within that tolerance
  is ``inconclusive``; otherwise it **passes**, and the detail says whether non-inferiority was shown (the
  baseline scaled by ``1 + max_latency_increase`` is significantly slower than the candidate) or not yet.

Fewer than ``min_samples`` inferences on either side (or fewer than ``min_latency_samples`` latencies) is
``insufficient_data`` whatever the numbers say.

Every test is for one look at the data. Looking again and again at a sliding window (the canary guard) needs a
stricter ``alpha`` and more than one failing look: ``tools.canary_guard``.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import enum
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Z_TEST = "two-proportion z-test (pooled, one-sided)"
FISHER_TEST = "Fisher's exact test (mid-p, one-sided)"
ERROR_RATE_TEST = "Fisher's exact test (mid-p) or, with large balanced counts, two-proportion z-test; one-sided"
LATENCY_TEST = "Mann-Whitney U (normal approximation, tie- and continuity-corrected, one-sided)"
Z_TEST_MIN_EXPECTED = 100.0  #: the z-test needs at least this many expected in every cell of the 2x2 table
Z_TEST_MAX_SKEW = 0.01  #: and a hypergeometric distribution this close to symmetric; else Fisher's test


class CanaryVerdict(enum.StrEnum):
    PASS = "pass"  #: No worse than the baseline within the limits, with confidence.
    FAIL = "fail"  #: Significantly worse than the baseline, by more than the limits allow.
    INCONCLUSIVE = "inconclusive"  #: Enough data to look at, not enough to tell.
    INSUFFICIENT_DATA = "insufficient_data"  #: Fewer inferences than min_samples on one side.


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryLimits:
    """What counts as worse, and how sure a verdict must be. The guard looks again and again, so it tightens
    ``alpha`` further (``tools.canary_guard.GuardRule.limits_for``)."""

    alpha: float = 0.01  #: one-sided significance level of every test
    max_error_rate_increase: float = 0.01  #: absolute: 0.01 allows +1 percentage point
    max_error_rate_ratio: float = 2.0  #: relative: 2.0 allows at most twice the baseline's rate; math.inf: no limit
    max_latency_increase: float = 0.20  #: relative: 0.20 allows a median 20% higher
    min_latency_samples: int = 20  #: fewer latency samples on a side make latency inconclusive

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha is {self.alpha}; it must be between 0 and 1")
        if self.max_error_rate_increase < 0 or self.max_latency_increase < 0:
            raise ValueError("max_error_rate_increase and max_latency_increase must not be negative")
        if not self.max_error_rate_ratio >= 1:  # also refuses NaN
            raise ValueError(f"max_error_rate_ratio is {self.max_error_rate_ratio}; it must be at least 1")


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
    verdict: CanaryVerdict
    baseline: float | None
    candidate: float | None
    p_value: float | None
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CanaryResult:
    verdict: CanaryVerdict
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


def fisher_mid_p(errors_b: int, n_b: int, errors_c: int, n_c: int) -> float:
    """One-sided mid-p of Fisher's exact test for H1: the candidate's proportion is higher.

    Given the total errors ``m``, the candidate's errors ``X`` are hypergeometric (``n_c`` draws from ``n_b + n_c``
    holding ``m`` errors); the mid-p is ``P(X > x) + P(X = x) / 2``. ``P(X = x)`` comes from ``lgamma``, its
    neighbours from the ratio of successive terms, summed away from the mode (where they only shrink) until
    they no longer count; a tail that holds the mode is taken as one minus the other tail.
    """
    n, m, x = n_b + n_c, errors_b + errors_c, errors_c
    low, high = max(0, m - n_b), min(m, n_c)
    log_px = _log_comb(m, x) + _log_comb(n - m, n_c - x) - _log_comb(n, n_c)
    px = math.exp(log_px)
    mode = (n_c + 1) * (m + 1) // (n + 2)
    total, term, k = 0.5, 1.0, x  # in units of P(X = x)
    if x >= mode:
        while k < high and term >= 1e-17 * total:
            term *= (m - k) * (n_c - k) / ((k + 1) * (n - m - n_c + k + 1))
            total += term
            k += 1
        return min(1.0, px * total)
    while k > low and term >= 1e-17 * total:
        term *= k * (n - m - n_c + k) / ((m - k + 1) * (n_c - k + 1))
        total += term
        k -= 1
    return min(1.0, max(0.0, 1 - px * total))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def z_test_is_close(errors_b: int, n_b: int, errors_c: int, n_c: int) -> bool:
    """Whether the pooled z-test's p-value is close to Fisher's mid-p (see ``Z_TEST_MIN_EXPECTED``)."""
    n, m = n_b + n_c, errors_b + errors_c
    expected = min(n_b, n_c) * min(m, n - m) / n
    if expected < Z_TEST_MIN_EXPECTED:
        return False
    skewness = (n - 2 * m) * math.sqrt(n - 1) * (n - 2 * n_c) / (math.sqrt(n_c * m * (n - m) * n_b) * (n - 2))
    return abs(skewness) <= Z_TEST_MAX_SKEW


def error_rate_p(errors_b: int, n_b: int, errors_c: int, n_c: int) -> tuple[str, float]:
    """``(test, p)`` for H1: the candidate's error rate is higher; Fisher's mid-p unless the z-test is close."""
    if z_test_is_close(errors_b, n_b, errors_c, n_c):
        return Z_TEST, two_proportion_z(errors_b, n_b, errors_c, n_c)[1]
    return FISHER_TEST, fisher_mid_p(errors_b, n_b, errors_c, n_c)


def difference_upper_bound(errors_b: int, n_b: int, errors_c: int, n_c: int, z: float) -> float:
    """Agresti-Caffo upper bound of (candidate rate - baseline rate): add one error and one success per side."""
    return contrast_upper_bound(errors_b, n_b, errors_c, n_c, z, 1.0)


def contrast_upper_bound(errors_b: int, n_b: int, errors_c: int, n_c: int, z: float, factor: float) -> float:
    """Upper bound of (candidate rate - ``factor`` * baseline rate), one error and one success added per side.

    At or below 0 it shows the candidate's rate is at most ``factor`` times the baseline's.
    """
    pb, pc = (errors_b + 1) / (n_b + 2), (errors_c + 1) / (n_c + 2)
    spread = pc * (1 - pc) / (n_c + 2) + factor * factor * pb * (1 - pb) / (n_b + 2)
    return pc - factor * pb + z * math.sqrt(spread)


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
    pooled = sorted([*x, *y])
    n = n_x + n_y
    # a value's average rank among ties is (first + last) / 2 + 1, with 0-based positions from bisect
    rank_sum_x = (
        sum(map(bisect.bisect_left, itertools.repeat(pooled), x))
        + sum(map(bisect.bisect_right, itertools.repeat(pooled), x))
        + n_x
    ) / 2
    ties = float(sum(t**3 - t for t in collections.Counter(pooled).values())) if len(set(pooled)) < n else 0.0
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
            verdict=CanaryVerdict.INSUFFICIENT_DATA,
            baseline=None,
            candidate=None,
            p_value=None,
            detail=detail,
        )
        metrics = (unjudged, dataclasses.replace(unjudged, metric="latency_ms", test=LATENCY_TEST))
        return CanaryResult(verdict=CanaryVerdict.INSUFFICIENT_DATA, metrics=metrics)
    metrics = (_error_rate(baseline, candidate, limits), _latency(baseline, candidate, limits))
    verdicts = {m.verdict for m in metrics}
    if CanaryVerdict.FAIL in verdicts:
        verdict = CanaryVerdict.FAIL
    elif verdicts == {CanaryVerdict.PASS}:
        verdict = CanaryVerdict.PASS
    else:
        verdict = CanaryVerdict.INCONCLUSIVE
    return CanaryResult(verdict=verdict, metrics=metrics)


def _error_rate(baseline: Evidence, candidate: Evidence, limits: CanaryLimits) -> MetricResult:
    e_b, n_b, e_c, n_c = baseline.errors, baseline.count, candidate.errors, candidate.count
    rate_b, rate_c = e_b / n_b, e_c / n_c
    test, p = error_rate_p(e_b, n_b, e_c, n_c)
    z = normal_quantile(1 - limits.alpha)
    limit, ratio = limits.max_error_rate_increase, limits.max_error_rate_ratio
    relative = not math.isinf(ratio)
    seen = f"candidate {rate_c:.2%} vs baseline {rate_b:.2%}"
    # Worse only when the lower confidence bound is past a limit, not merely the observed rates: a canary truly
    # within the limits must not fail just because its sample came out high. The tolerated increase is the smaller.
    at_least = contrast_upper_bound(e_b, n_b, e_c, n_c, -z, 1.0)
    over_limit = at_least > limit
    over_ratio = relative and contrast_upper_bound(e_b, n_b, e_c, n_c, -z, ratio) > 0
    if p < limits.alpha and (over_limit or over_ratio):
        broken = [f"by more than {limit:.2%} (at least {at_least:+.2%} with confidence)"] if over_limit else []
        broken += [f"more than {ratio:g}x the baseline's rate with confidence"] if over_ratio else []
        verdict, why = CanaryVerdict.FAIL, f"{seen}: significantly higher (p={p:.2g}), {' and '.join(broken)}"
    else:
        bound = difference_upper_bound(e_b, n_b, e_c, n_c, z)
        within_ratio = not relative or contrast_upper_bound(e_b, n_b, e_c, n_c, z, ratio) <= 0
        if bound <= limit and within_ratio:
            verdict, why = (
                CanaryVerdict.PASS,
                f"{seen}: at most {bound:+.2%} higher with confidence, within {limit:.2%}",
            )
            why += f" and {ratio:g}x the baseline's rate" if relative else ""
        else:
            doubts = [f"could be up to {bound:+.2%} higher; the limit is {limit:.2%}"] if bound > limit else []
            doubts += [] if within_ratio else [f"cannot yet rule out more than {ratio:g}x the baseline's rate"]
            if p < limits.alpha:
                verdict, why = (
                    CanaryVerdict.INCONCLUSIVE,
                    f"{seen}: significantly higher (p={p:.2g}); {'; '.join(doubts)}",
                )
            else:
                verdict, why = CanaryVerdict.PASS, f"{seen}: no significant increase (p={p:.2g}); {'; '.join(doubts)}"
    return MetricResult(
        metric="error_rate",
        test=test,
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
            verdict=CanaryVerdict.INSUFFICIENT_DATA,
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
        verdict, why = (
            CanaryVerdict.FAIL,
            f"{seen}: significantly slower (p={p_worse:.2g}), by more than {scale - 1:.0%}",
        )
    elif p_within < limits.alpha:
        verdict, why = CanaryVerdict.PASS, f"{seen}: shown to be less than {scale - 1:.0%} slower (p={p_within:.2g})"
    elif p_worse < limits.alpha:
        verdict, why = (
            CanaryVerdict.INCONCLUSIVE,
            f"{seen}: significantly slower (p={p_worse:.2g}), perhaps within {scale - 1:.0%}",
        )
    else:
        why = f"no significant slowdown (p={p_worse:.2g}); cannot yet rule out being more than {scale - 1:.0%} slower"
        verdict, why = CanaryVerdict.PASS, f"{seen}: {why}"
    return MetricResult(
        metric="latency_ms",
        test=LATENCY_TEST,
        verdict=verdict,
        baseline=median_b,
        candidate=median_c,
        p_value=p_worse,
        detail=why,
    )
