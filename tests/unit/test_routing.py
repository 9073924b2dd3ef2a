"""Sticky weighted routing: buckets, weights honoured, stickiness, monotone widening, zero weights, bad weights."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import pytest

from storage import InvalidInput
from tools.routing import BUCKETS, Split, bucket_of, to_basis_points

SALT = bytes.fromhex("00112233445566778899aabbccddeeff")
KEYS = [f"user-{i}" for i in range(100_000)]
BUCKET_OF_KEY = [bucket_of(SALT, key) for key in KEYS]


def shares(split: Split) -> dict[str, float]:
    counts = Counter(arm.version for b in BUCKET_OF_KEY if (arm := split.choose(b)) is not None)
    return {version: n / len(KEYS) for version, n in counts.items()}


def test_bucket_is_sha256_of_salt_and_key_mod_10000() -> None:
    expected = int.from_bytes(hashlib.sha256(SALT + b"user-42").digest()[:8], "big") % 10_000
    assert bucket_of(SALT, "user-42") == expected
    assert all(0 <= b < BUCKETS for b in BUCKET_OF_KEY)


@pytest.mark.parametrize(
    "weights",
    [{"v1": 9000, "v2": 1000}, {"v1": 5000, "v2": 3000, "v3": 2000}, {"v1": 9999, "v2": 1}, {"v2": 10000}],
)
def test_weights_are_honoured_within_statistical_tolerance_over_100k_keys(weights: dict[str, int]) -> None:
    observed = shares(Split.of(["v1", "v2", "v3"], weights))
    for version, points in weights.items():
        p = points / BUCKETS
        tolerance = 5 * math.sqrt(p * (1 - p) / len(KEYS)) + 1e-9  # five standard errors
        assert abs(observed.get(version, 0.0) - p) <= tolerance, (version, observed)


def test_a_key_always_gets_the_same_bucket_and_version() -> None:
    split = Split.of(["v1", "v2"], {"v1": 9000, "v2": 1000})
    rebuilt = Split.of(["v1", "v2"], {"v1": 9000, "v2": 1000})
    for key in KEYS[:1000]:
        assert bucket_of(SALT, key) == bucket_of(SALT, key)
        assert split.choose(bucket_of(SALT, key)) == rebuilt.choose(bucket_of(SALT, key))


def test_the_salt_separates_models() -> None:
    other = bytes(16)
    same = sum(bucket_of(other, key) == b for key, b in zip(KEYS[:10_000], BUCKET_OF_KEY, strict=False))
    assert same < 10  # about 1 in 10,000 by chance


@pytest.mark.parametrize("order", [["v1", "v2"], ["v2", "v1"]])
def test_widening_a_canary_never_moves_a_key_back(order: list[str]) -> None:
    """Whether the canary was registered after production or before it, its range only grows."""
    steps = [0, 1, 100, 500, 1000, 2500, 5000, 9000, 10000]
    on_canary: set[int] = set()
    for canary in steps:
        split = Split.of(order, {"v2": canary, "v1": BUCKETS - canary})
        now = {i for i, b in enumerate(BUCKET_OF_KEY) if (arm := split.choose(b)) and arm.version == "v2"}
        assert on_canary <= now, f"raising v2 to {canary} moved {len(on_canary - now)} keys back to v1"
        on_canary = now
    assert len(on_canary) == len(KEYS)


def test_a_zero_weight_never_gets_traffic() -> None:
    split = Split.of(["v1", "v2", "v3"], {"v1": 10000, "v2": 0, "v3": 0})
    assert {arm.version for b in range(BUCKETS) if (arm := split.choose(b))} == {"v1"}
    assert [a.version for a in split.arms] == ["v1"]


def test_no_weights_route_nothing() -> None:
    assert Split.of(["v1"], {}).choose(0) is None


def test_arms_cover_every_bucket_once() -> None:
    split = Split.of(["a", "b", "c"], {"a": 1, "c": 9999})
    assert [(a.version, a.start, a.end) for a in split.arms] == [("a", 0, 1), ("c", 1, 10000)]
    assert split.choose(0).version == "a"  # type: ignore[union-attr]
    assert split.choose(9999).version == "c"  # type: ignore[union-attr]


def test_percentages_become_basis_points() -> None:
    assert to_basis_points({"v1": 90, "v2": 10, "v3": 0}, ["v1", "v2", "v3"]) == {"v1": 9000, "v2": 1000}
    assert to_basis_points({"v1": 99.99, "v2": 0.01}, ["v1", "v2"]) == {"v1": 9999, "v2": 1}


@pytest.mark.parametrize(
    ("weights", "hint"),
    [
        ({"v1": 90, "v2": 20}, "sum to 110%, not 100%"),
        ({"v1": 50}, "sum to 50%"),
        ({"v1": 110, "v2": -10}, "from 0 to 100"),
        ({"v1": 100, "v2": -0.5}, "from 0 to 100"),
        ({"v1": 100, "v9": 0}, "unknown version(s) 'v9'"),
        ({"v1": 99.995, "v2": 0.005}, "two decimals"),
        ({"v1": math.nan, "v2": 100}, "from 0 to 100"),
        ({}, "weights is empty"),
    ],
)
def test_bad_weights_say_what_to_change(weights: dict[str, float], hint: str) -> None:
    with pytest.raises(InvalidInput, match=hint.replace("(", r"\(").replace(")", r"\)")):
        to_basis_points(weights, ["v1", "v2"])
