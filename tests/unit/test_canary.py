"""The statistics behind analyze_canary and model_stats, on data with known answers."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from signoff.storage import Inference, VersionTelemetry
from signoff.storage.models.sampling import RESERVOIR_SIZE, minute_of, period_of, reservoir_writes
from signoff.tools.models.canary import (
    FISHER_TEST,
    Z_TEST,
    CanaryLimits,
    CanaryVerdict,
    Evidence,
    analyze,
    contrast_upper_bound,
    difference_upper_bound,
    error_rate_p,
    fisher_mid_p,
    mann_whitney,
    two_proportion_z,
    wilson_interval,
    z_test_is_close,
)
from signoff.tools.models.stats import uniform_latencies, version_stats, weighted_quantiles

LIMITS = CanaryLimits()


def sample(n: int, errors: int, median_ms: float, seed: int) -> Evidence:
    """``n`` inferences with exactly ``errors`` failures and log-normal latencies around ``median_ms``."""
    rng = random.Random(seed)
    return Evidence(
        count=n, errors=errors, latencies=[rng.lognormvariate(0, 0.5) * median_ms for _ in range(min(n, 3000))]
    )


def brute_force_u(x: list[float], y: list[float]) -> float:
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))


def test_two_proportion_z_matches_the_textbook_value() -> None:
    z, p = two_proportion_z(10, 100, 20, 100)  # pooled 0.15: z = 0.1 / sqrt(0.15 * 0.85 * 0.02)
    assert z == pytest.approx(1.9803, abs=1e-4)
    assert p == pytest.approx(0.02383, abs=1e-4)
    assert two_proportion_z(0, 100, 0, 100) == (0.0, 1.0)  # no variance, no evidence


def test_agresti_caffo_bound_is_finite_with_zero_errors() -> None:
    assert 0 < difference_upper_bound(0, 1000, 0, 1000, 2.326) < 0.01


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mann_whitney_separated_samples() -> None:
    u, z, p = mann_whitney([4, 5, 6], [1, 2, 3])
    assert u == 9  # every x beats every y
    assert z == pytest.approx(1.7457, abs=1e-4)  # (9 - 4.5 - 0.5) / sqrt(3 * 3 * 7 / 12)
    assert p == pytest.approx(0.04043, abs=1e-4)
    assert mann_whitney([1, 2, 3], [4, 5, 6])[2] > 0.95


def test_mann_whitney_u_equals_the_pair_count_with_ties() -> None:
    rng = random.Random(7)
    for _ in range(20):
        x = [float(rng.randint(0, 5)) for _ in range(rng.randint(1, 15))]
        y = [float(rng.randint(0, 5)) for _ in range(rng.randint(1, 15))]
        assert mann_whitney(x, y)[0] == pytest.approx(brute_force_u(x, y))


def test_mann_whitney_tie_correction_shrinks_the_variance() -> None:
    # all values tied: no information at all
    assert mann_whitney([1.0] * 10, [1.0] * 10)[1:] == (0.0, 1.0)
    # with ties the variance is n_x n_y / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))); here t = 4 and 4
    x, y = [1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]
    _, z, _ = mann_whitney(x, y)
    variance = 16 / 12 * (9 - (60 + 60) / (8 * 7))
    assert z == pytest.approx((8 - 8 - 0.5) / variance**0.5)


def test_a_clearly_worse_error_rate_fails() -> None:
    result = analyze(sample(5000, 50, 100, 1), sample(5000, 250, 100, 2), LIMITS, 100)
    assert result.verdict is CanaryVerdict.FAIL
    errors = result.metrics[0]
    assert errors.metric == "error_rate" and errors.verdict is CanaryVerdict.FAIL
    assert "two-proportion" in errors.test and errors.p_value is not None and errors.p_value < 1e-10


def test_clearly_slower_latency_fails() -> None:
    result = analyze(sample(3000, 30, 100, 1), sample(3000, 30, 200, 2), LIMITS, 100)
    latency = result.metrics[1]
    assert result.verdict is CanaryVerdict.FAIL
    assert latency.metric == "latency_ms" and latency.verdict is CanaryVerdict.FAIL and "Mann-Whitney" in latency.test
    assert latency.candidate == pytest.approx(200, rel=0.1)


def test_an_equal_candidate_passes() -> None:
    result = analyze(sample(5000, 50, 100, 1), sample(5000, 50, 100, 2), LIMITS, 100)
    assert result.verdict is CanaryVerdict.PASS, result
    assert [m.verdict for m in result.metrics] == [CanaryVerdict.PASS, CanaryVerdict.PASS]


def test_too_few_samples_is_insufficient_data_whatever_the_numbers() -> None:
    result = analyze(sample(5000, 0, 100, 1), sample(99, 99, 900, 2), LIMITS, 100)
    assert result.verdict is CanaryVerdict.INSUFFICIENT_DATA
    assert {m.verdict for m in result.metrics} == {CanaryVerdict.INSUFFICIENT_DATA}
    assert "at least 100" in result.metrics[0].detail


def test_a_difference_that_is_not_significant_passes_and_shows_its_bound() -> None:
    # 1% vs 3% on 150 each: not significantly worse, so it passes (as Kayenta would), with the uncertainty in words
    metric = analyze(sample(150, 2, 100, 1), sample(150, 5, 100, 2), LIMITS, 100).metrics[0]
    assert metric.verdict is CanaryVerdict.PASS
    assert "no significant increase" in metric.detail and "could be up to" in metric.detail


def test_a_candidate_identical_to_its_baseline_passes() -> None:
    # 400 samples each, 2% errors, the same latencies: the first-hour report saw "inconclusive" here
    same = Evidence(count=400, errors=8, latencies=sample(400, 8, 80, 5).latencies)
    result = analyze(same, same, LIMITS, 100)
    assert result.verdict is CanaryVerdict.PASS
    assert "could be up to" in result.metrics[0].detail  # the bound stays visible


def test_a_significant_increase_within_tolerance_is_inconclusive() -> None:
    # 1.0% vs 1.65% on 20,000 each: significantly higher, yet not shown past a limit nor within both
    significant = analyze(counts(20_000, 200), counts(20_000, 330), LIMITS, 100).metrics[0]
    assert significant.p_value is not None and significant.p_value < LIMITS.alpha
    assert significant.verdict is CanaryVerdict.INCONCLUSIVE and "significantly higher" in significant.detail


def test_algorithm_r_keeps_a_bounded_uniform_sample() -> None:
    rng = random.Random(3)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    kept: dict[int, tuple[int, float]] = {}
    seen = 0
    for start in range(0, 100_000, 1000):  # in batches, as record_inferences receives them
        batch = [
            Inference(model="m", version="v", at=at, latency_ms=float(i), ok=True) for i in range(start, start + 1000)
        ]
        seen, writes = reservoir_writes(seen, batch, rng)
        kept.update(writes)
    values = [latency for _, latency in kept.values()]
    assert seen == 100_000 and len(values) == RESERVOIR_SIZE
    # a uniform sample of 0..99,999 has mean 50,000 with standard error ~1,276 for 512 values
    assert abs(sum(values) / len(values) - 50_000) < 5 * 1276


def test_weighted_percentiles_count_busy_periods_for_more() -> None:
    quiet = [(1.0, 1.0)] * 100  # 100 inferences, all kept
    busy = [(9.0, 0.1)] * 100  # 1,000 inferences, one in ten kept
    assert weighted_quantiles(quiet + busy, (0.5,)) == [9.0]
    assert weighted_quantiles(quiet + busy, (0.05,)) == [1.0]
    assert weighted_quantiles([], (0.5,)) == [None]


def test_thinning_makes_the_window_uniform() -> None:
    telemetry = VersionTelemetry(
        version="v",
        count=1100,
        errors=0,
        latency_sum=0.0,
        confidence_sum=0.0,
        confidence_count=0,
        samples=tuple([(1.0, 1.0)] * 100 + [(9.0, 0.1)] * 100),
    )
    rng = random.Random(5)
    counts = [uniform_latencies(telemetry, rng) for _ in range(200)]
    quiet_share = sum(c.count(1.0) for c in counts) / sum(len(c) for c in counts)
    assert quiet_share == pytest.approx(100 / 1100, abs=0.03)  # the quiet period's true share of inferences


def test_version_stats_from_sums_and_samples() -> None:
    telemetry = VersionTelemetry(
        version="v2",
        count=200,
        errors=10,
        latency_sum=20_000.0,
        confidence_sum=45.0,
        confidence_count=50,
        samples=tuple((float(i), 1.0) for i in range(1, 201)),
    )
    stats = version_stats(telemetry, min_samples=100)
    assert (stats.count, stats.errors, stats.error_rate, stats.enough_samples) == (200, 10, 0.05, True)
    assert stats.latency_mean_ms == 100.0 and stats.mean_confidence == 0.9
    assert (stats.latency_p50_ms, stats.latency_p95_ms, stats.latency_p99_ms) == (100.0, 190.0, 198.0)
    assert stats.error_rate_ci95 is not None and stats.error_rate_ci95[0] < 0.05 < stats.error_rate_ci95[1]
    assert version_stats(telemetry, min_samples=201).enough_samples is False


def test_the_window_helpers_use_whole_minutes() -> None:
    at = datetime(2026, 1, 1, 0, 10, 59, tzinfo=UTC)
    assert minute_of(at) == minute_of(at - timedelta(seconds=59))
    assert period_of(minute_of(at)) == minute_of(at) // 10


# --- the error-rate limits, the exact test, the boundaries --------------------------------------------------------


def counts(n: int, errors: int) -> Evidence:
    """Exact counts, with latencies that can only pass: only the error rate is on trial."""
    return Evidence(count=n, errors=errors, latencies=[50.0] * 30)


def error_verdict(baseline: Evidence, candidate: Evidence, limits: CanaryLimits = LIMITS) -> CanaryVerdict:
    return analyze(baseline, candidate, limits, 100).metrics[0].verdict


def exact_mid_p(errors_b: int, n_b: int, errors_c: int, n_c: int) -> Fraction:
    """Fisher's one-sided mid-p from the hypergeometric distribution in exact integers."""
    n, m = n_b + n_c, errors_b + errors_c
    weight = [math.comb(m, k) * math.comb(n - m, n_c - k) for k in range(min(m, n_c) + 1)]
    return Fraction(2 * sum(weight[errors_c + 1 :]) + weight[errors_c], 2 * math.comb(n, n_c))


def test_the_absolute_limit_is_one_percentage_point() -> None:
    # at a 5% baseline the relative limit (x2: +5 points) is looser, so +1 point decides; both are significant
    baseline = counts(40_000, 2000)
    assert error_verdict(baseline, counts(40_000, 2380)) is CanaryVerdict.INCONCLUSIVE  # +0.95 points
    # +1.05 points observed is not enough: the true increase could still be within the limit
    assert error_verdict(baseline, counts(40_000, 2420)) is CanaryVerdict.INCONCLUSIVE
    assert (
        error_verdict(baseline, counts(40_000, 2600)) is CanaryVerdict.FAIL
    )  # +1.5 points: at least +1.14 with confidence
    looser = CanaryLimits(max_error_rate_increase=0.02)
    assert error_verdict(baseline, counts(40_000, 2600), looser) is not CanaryVerdict.FAIL
    detail = analyze(baseline, counts(40_000, 2600), LIMITS, 100).metrics[0].detail
    assert "by more than 1.00%" in detail and "x the baseline" not in detail


def test_the_relative_limit_fails_a_rate_eight_times_the_baseline() -> None:
    baseline, candidate = counts(20_000, 20), counts(20_000, 160)  # 0.1% vs 0.8%: only 0.7 points higher
    result = analyze(baseline, candidate, LIMITS, 100).metrics[0]
    assert result.verdict is CanaryVerdict.FAIL and "more than 2x the baseline's rate" in result.detail, result
    absolute_only = CanaryLimits(max_error_rate_ratio=math.inf)
    assert error_verdict(baseline, candidate, absolute_only) is not CanaryVerdict.FAIL


def test_the_relative_limit_is_twice_the_baseline() -> None:
    baseline = counts(100_000, 500)  # 0.5%: the relative limit (+0.5 points) is stricter than +1 point
    assert error_verdict(baseline, counts(100_000, 950)) is CanaryVerdict.INCONCLUSIVE  # 1.9x, significantly higher
    assert error_verdict(baseline, counts(100_000, 1050)) is CanaryVerdict.INCONCLUSIVE  # 2.1x, but could be under 2x
    assert error_verdict(baseline, counts(100_000, 1200)) is CanaryVerdict.FAIL  # 2.4x: over 2x with confidence
    assert (
        error_verdict(baseline, counts(100_000, 1200), CanaryLimits(max_error_rate_ratio=2.2)) is not CanaryVerdict.FAIL
    )


def test_a_canary_truly_within_the_limits_rarely_fails() -> None:
    """1.8x a 1% baseline is within both limits (+0.8 points, under 2x). Failing on the observed rates alone
    failed about a third of such canaries; with confidence bounds it is about alpha."""
    rng = random.Random(18)
    fails = 0
    for _ in range(300):
        errors_b = sum(rng.random() < 0.01 for _ in range(9000))
        errors_c = sum(rng.random() < 0.018 for _ in range(1000))
        fails += error_verdict(counts(9000, errors_b), counts(1000, errors_c)) is CanaryVerdict.FAIL
    assert fails <= 9, fails  # at most 3% (alpha is 1%)


def test_a_relative_limit_does_not_fail_on_a_single_error() -> None:
    assert error_verdict(counts(1000, 0), counts(1000, 1)) is CanaryVerdict.PASS  # "infinitely worse", p = 0.25: noise
    assert error_verdict(counts(1000, 0), counts(1000, 12)) is CanaryVerdict.FAIL  # but a dozen is not noise


def test_a_limit_that_cannot_be_shown_is_named_in_a_pass() -> None:
    # equal rates of 1% pass; no errors at all pass too, but cannot show "at most twice the baseline", and say so
    assert error_verdict(counts(5000, 50), counts(5000, 50)) is CanaryVerdict.PASS
    silent = analyze(counts(10_000, 0), counts(10_000, 0), LIMITS, 100).metrics[0]
    assert silent.verdict is CanaryVerdict.PASS and "cannot yet rule out more than 2x" in silent.detail
    assert error_verdict(counts(10_000, 0), counts(10_000, 0), CanaryLimits(max_error_rate_ratio=math.inf)) is (
        CanaryVerdict.PASS
    )
    # the ratio bound: at or below 0 shows the candidate's rate is at most `factor` times the baseline's
    assert contrast_upper_bound(500, 100_000, 500, 100_000, 2.326, 2.0) < 0
    assert contrast_upper_bound(500, 100_000, 950, 100_000, 2.326, 2.0) > 0
    assert contrast_upper_bound(0, 10_000, 0, 10_000, 2.326, 1.0) == difference_upper_bound(0, 10_000, 0, 10_000, 2.326)


def test_the_limits_keep_their_names_and_refuse_nonsense() -> None:
    limits = CanaryLimits(alpha=0.05, max_error_rate_increase=0.02, max_latency_increase=0.5, min_latency_samples=5)
    assert (limits.alpha, limits.max_error_rate_increase, limits.max_error_rate_ratio) == (0.05, 0.02, 2.0)
    for bad, field in [
        ({"max_error_rate_ratio": 0.5}, "max_error_rate_ratio"),
        ({"max_error_rate_ratio": math.nan}, "max_error_rate_ratio"),
        ({"alpha": 0.0}, "alpha"),
        ({"max_error_rate_increase": -0.01}, "max_error_rate_increase"),
    ]:
        with pytest.raises(ValueError, match=field):
            CanaryLimits(**bad)  # type: ignore[arg-type]


def test_fisher_mid_p_known_values() -> None:
    assert fisher_mid_p(0, 5, 5, 5) == pytest.approx(1 / 504, rel=1e-12)  # P(X = 5) = 1 / C(10, 5), halved
    assert fisher_mid_p(0, 1000, 1, 1000) == pytest.approx(0.25, rel=1e-9)  # P(X = 1) = 1/2, halved
    assert fisher_mid_p(0, 100, 0, 100) == 0.5  # no errors: X = 0 surely
    tables = [(1, 100, 3, 100), (0, 100, 5, 100), (10, 1000, 25, 1000), (2, 50, 9, 60), (18, 1800, 6, 200)]
    tables += [(30, 200, 2, 100), (9, 900, 60, 200), (7, 7, 0, 3), (40, 400, 1, 50)]  # lower tails and extremes
    for table in tables:
        assert fisher_mid_p(*table) == pytest.approx(float(exact_mid_p(*table)), rel=1e-9, abs=1e-300), table


def test_fisher_mid_p_of_the_two_directions_sums_to_one() -> None:
    rng = random.Random(11)
    for _ in range(200):
        n_b, n_c = rng.randint(1, 400), rng.randint(1, 400)
        e_b, e_c = rng.randint(0, n_b), rng.randint(0, n_c)
        assert fisher_mid_p(e_b, n_b, e_c, n_c) + fisher_mid_p(e_c, n_c, e_b, n_b) == pytest.approx(1, abs=1e-9)


def test_the_exact_test_decides_small_and_unequal_counts() -> None:
    # a 10% canary: 3% of 200 vs 1% of 1,800. The z-test calls it significant (p = 0.007); the exact test does not
    assert two_proportion_z(18, 1800, 6, 200)[1] < 0.01
    result = analyze(counts(1800, 18), counts(200, 6), LIMITS, 100).metrics[0]
    assert result.test == FISHER_TEST and result.verdict is CanaryVerdict.PASS  # not significant: no increase shown
    assert result.p_value == pytest.approx(float(exact_mid_p(18, 1800, 6, 200)), rel=1e-9)


def test_the_z_test_only_where_it_matches_the_exact_test() -> None:
    assert z_test_is_close(50, 5000, 250, 5000)  # balanced, 150 expected errors a side
    assert not z_test_is_close(10, 1000, 25, 1000)  # too few errors
    assert not z_test_is_close(900, 90_000, 150, 10_000)  # a 10% canary: the tail is skewed
    assert error_rate_p(50, 5000, 250, 5000)[0] == Z_TEST
    for table in [(500, 50_000, 560, 50_000), (4000, 200_000, 4000, 200_000), (3000, 100_000, 3000, 110_000)]:
        test, p = error_rate_p(*table)
        assert test == Z_TEST and p == pytest.approx(fisher_mid_p(*table), rel=0.1), table


def test_wilson_bounds_solve_the_score_equation() -> None:
    # Wilson's bounds are the p with (errors / n - p)^2 = z^2 p (1 - p) / n; a Wald interval (p^ +/- z se) is not
    z = 1.959964
    for errors, n in [(0, 10), (1, 20), (7, 9), (30, 1000)]:
        low, high = wilson_interval(errors, n)
        for bound in (low, high):
            assert (errors / n - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / n, abs=1e-12)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)  # Wald would say 0


def test_min_samples_is_inclusive() -> None:
    even = counts(100, 1)
    assert analyze(even, even, LIMITS, 100).verdict is not CanaryVerdict.INSUFFICIENT_DATA
    assert analyze(counts(99, 1), even, LIMITS, 100).verdict is CanaryVerdict.INSUFFICIENT_DATA
    assert analyze(even, counts(99, 1), LIMITS, 100).verdict is CanaryVerdict.INSUFFICIENT_DATA
