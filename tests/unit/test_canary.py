"""The statistics behind analyze_canary and model_stats, on data with known answers."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from storage.model_records import Inference, VersionTelemetry
from storage.telemetry import RESERVOIR_SIZE, minute_of, period_of, reservoir_writes
from tools.canary import (
    CanaryLimits,
    Evidence,
    Verdict,
    analyze,
    difference_upper_bound,
    mann_whitney,
    two_proportion_z,
    wilson_interval,
)
from tools.model_stats import uniform_latencies, version_stats, weighted_quantile

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
    assert result.verdict is Verdict.FAIL
    errors = result.metrics[0]
    assert errors.metric == "error_rate" and errors.verdict is Verdict.FAIL
    assert "two-proportion" in errors.test and errors.p_value is not None and errors.p_value < 1e-10


def test_clearly_slower_latency_fails() -> None:
    result = analyze(sample(3000, 30, 100, 1), sample(3000, 30, 200, 2), LIMITS, 100)
    latency = result.metrics[1]
    assert result.verdict is Verdict.FAIL
    assert latency.metric == "latency_ms" and latency.verdict is Verdict.FAIL and "Mann-Whitney" in latency.test
    assert latency.candidate == pytest.approx(200, rel=0.1)


def test_an_equal_candidate_passes() -> None:
    result = analyze(sample(5000, 50, 100, 1), sample(5000, 50, 100, 2), LIMITS, 100)
    assert result.verdict is Verdict.PASS, result
    assert [m.verdict for m in result.metrics] == [Verdict.PASS, Verdict.PASS]


def test_too_few_samples_is_insufficient_data_whatever_the_numbers() -> None:
    result = analyze(sample(5000, 0, 100, 1), sample(99, 99, 900, 2), LIMITS, 100)
    assert result.verdict is Verdict.INSUFFICIENT_DATA
    assert {m.verdict for m in result.metrics} == {Verdict.INSUFFICIENT_DATA}
    assert "at least 100" in result.metrics[0].detail


def test_a_small_worrying_difference_is_inconclusive() -> None:
    # 1% vs 3% on 150 each: worse by more than the limit, but not significantly so
    result = analyze(sample(150, 2, 100, 1), sample(150, 5, 100, 2), LIMITS, 100)
    assert result.metrics[0].verdict is Verdict.INCONCLUSIVE
    assert result.verdict is Verdict.INCONCLUSIVE


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
    assert weighted_quantile(quiet + busy, 0.5) == 9.0
    assert weighted_quantile(quiet + busy, 0.05) == 1.0
    assert weighted_quantile([], 0.5) is None


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
