"""Sticky weighted routing: buckets, weights honoured, stickiness, monotone widening, zero weights, bad weights,
the layout of three or more arms, and check_sticky against every bucket."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signoff.storage import InvalidInput
from signoff.tools.models.routing import BUCKETS, Split, bucket_of, check_sticky, layout, sticky_steps, to_basis_points

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


# -- three or more arms -------------------------------------------------------------------------------

ORDER = ["v1", "v2", "v3", "v4"]


def owners(weights: Mapping[str, int], order: list[str] = ORDER) -> list[str | None]:
    """Which version every one of the 10,000 buckets goes to."""
    split = Split.of(order, weights)
    return [arm.version if (arm := split.choose(b)) else None for b in range(BUCKETS)]


def bad_buckets(old: Mapping[str, int], new: Mapping[str, int], order: list[str] = ORDER) -> list[int]:
    """Buckets that change version other than from a version whose weight shrank to one whose weight grew."""
    return [
        b
        for b, (was, now) in enumerate(zip(owners(old, order), owners(new, order), strict=True))
        if was is not None
        and now is not None
        and was != now
        and not (new.get(was, 0) < old.get(was, 0) and new.get(now, 0) > old.get(now, 0))
    ]


def sticky(old: Mapping[str, int], new: Mapping[str, int], production: str | None = None) -> bool:
    try:
        check_sticky(ORDER, old, new, production=production)
    except InvalidInput:
        return False
    return True


def test_two_arms_lie_in_registration_order_whatever_else_is_registered() -> None:
    for first, second in itertools.combinations(ORDER, 2):
        split = Split.of(ORDER, {first: 7000, second: 3000})
        assert [(a.version, a.start, a.end) for a in split.arms] == [(first, 0, 7000), (second, 7000, 10000)]


def test_three_or_more_arms_put_the_first_between_the_others() -> None:
    split = Split.of(ORDER, {"v1": 7000, "v2": 1000, "v3": 1000, "v4": 1000})
    assert [(a.version, a.start, a.end) for a in split.arms] == [
        ("v3", 0, 1000),
        ("v4", 1000, 2000),
        ("v1", 2000, 9000),
        ("v2", 9000, 10000),
    ]
    assert layout(ORDER, {"v2": 5000, "v3": 3000, "v4": 2000}) == ["v4", "v2", "v3"]


def test_the_old_registration_order_layout_moved_a_canary_s_keys_and_this_one_does_not() -> None:
    """v1 80, v2 10, v3 10 -> v3 20: laid v1 | v2 | v3, v2 (unchanged) would have lost 10% of the keys."""
    old, new = {"v1": 8000, "v2": 1000, "v3": 1000}, {"v1": 7000, "v2": 1000, "v3": 2000}
    assert bad_buckets(old, new) == []
    check_sticky(ORDER, old, new)
    before, after = owners(old), owners(new)
    assert {b for b in range(BUCKETS) if before[b] == "v2"} == {b for b in range(BUCKETS) if after[b] == "v2"}
    assert {b for b in range(BUCKETS) if before[b] == "v3"} < {b for b in range(BUCKETS) if after[b] == "v3"}


def test_a_growing_canary_that_would_lose_keys_to_production_is_refused_with_the_steps() -> None:
    """Stopping v3 while raising v2: the old layout (v1 | v2 | v3) gave 10% of v2's keys to v1."""
    old, new = {"v1": 7000, "v2": 1000, "v3": 2000}, {"v1": 8000, "v2": 2000}
    assert bad_buckets(old, new)
    with pytest.raises(InvalidInput) as raised:
        check_sticky(ORDER, old, new, production="v1")
    message = str(raised.value)
    assert "10% of all keys would move from v1 to v2 although v1 grows to 80%" in message
    assert "v3 | v1 | v2 and then as v1 | v2" in message
    assert "1) {'v1': 90, 'v2': 10} (only back to production v1); 2) {'v1': 80, 'v2': 20} (raises v2)" in message
    assert sticky_steps(ORDER, old, new, production="v1") == [{"v1": 9000, "v2": 1000}, {"v1": 8000, "v2": 2000}]


def test_a_canary_between_others_says_which_one_is_re_drawn_on_the_way() -> None:
    old = {"v1": 7000, "v2": 1000, "v3": 1000, "v4": 1000}
    new = {"v1": 6000, "v2": 1000, "v3": 2000, "v4": 1000}
    with pytest.raises(InvalidInput, match="from v1 to v4 although v4 keeps its 10%") as raised:
        check_sticky(ORDER, old, new, production="v1")
    assert "On the way v4 goes down and up again, which re-draws the keys it gets" in str(raised.value)
    for a, b in itertools.pairwise([old, *sticky_steps(ORDER, old, new, production="v1")]):
        assert bad_buckets(a, b) == []


STATES = [
    {"v1": 8000, "v2": 1000, "v3": 1000},
    {"v1": 7000, "v2": 1000, "v3": 1000, "v4": 1000},
    {"v1": 4000, "v2": 3000, "v3": 2000, "v4": 1000},
    {"v2": 6000, "v3": 3000, "v4": 1000},
]


@pytest.mark.parametrize("old", STATES)
def test_lowering_any_canary_to_0_or_everything_to_production_is_accepted(old: dict[str, int]) -> None:
    production = next(v for v in ORDER if v in old)
    for canary in [v for v in old if v != production]:
        new = {v: bp for v, bp in old.items() if v != canary}
        new[production] += old[canary]
        check_sticky(ORDER, old, new, production=production)
    for version in ORDER:
        check_sticky(ORDER, old, {version: BUCKETS})  # sticky, not only excused
        assert bad_buckets(old, {version: BUCKETS}) == []


def test_stopping_the_second_canary_is_excused_not_sticky() -> None:
    """No layout keeping two-version splits can stop either of two canaries stickily: v3 moves to the top end."""
    old, new = {"v1": 8000, "v2": 1000, "v3": 1000}, {"v1": 9000, "v3": 1000}
    assert len(bad_buckets(old, new)) == 2000  # v3's 10% goes to v1 and v2's to v3
    check_sticky(ORDER, old, new, production="v1")
    steps = "1) {'v1': 90, 'v2': 10}; 2) {'v1': 90, 'v3': 10}. On the way v3 goes down and up again"
    with pytest.raises(InvalidInput, match=re.escape(steps)):
        check_sticky(ORDER, old, new)


@pytest.mark.parametrize("old", STATES)
def test_production_trades_with_the_second_and_the_newest_version_and_adds_a_canary_stickily(
    old: dict[str, int],
) -> None:
    live = [v for v in ORDER if v in old]
    production, neighbours = live[0], {live[1], live[-1]}
    for canary, delta in itertools.product(neighbours, (-500, 500)):
        new = {**old, canary: old[canary] + delta, production: old[production] - delta}
        check_sticky(ORDER, old, new)
        assert bad_buckets(old, new) == []
    for newest in ORDER[ORDER.index(live[-1]) + 1 :][:1]:
        new = {**old, newest: 500, production: old[production] - 500}
        check_sticky(ORDER, old, new)
        assert bad_buckets(old, new) == []


@pytest.mark.parametrize("order", [["v1", "v2"], ["v2", "v1"]])
def test_two_arm_widening_is_accepted(order: list[str]) -> None:
    steps = [0, 1, 100, 500, 1000, 2500, 5000, 9000, 10000]
    for before, after in itertools.pairwise(steps):
        old = {v: bp for v, bp in {"v2": before, "v1": BUCKETS - before}.items() if bp}
        new = {v: bp for v, bp in {"v2": after, "v1": BUCKETS - after}.items() if bp}
        check_sticky(order, old, new)
        check_sticky(order, new, old)


def test_no_weights_before_constrain_nothing() -> None:
    check_sticky(ORDER, {}, {"v1": 5000, "v2": 5000})
    assert sticky_steps(ORDER, {}, {"v1": 5000, "v2": 5000}) == [{"v1": 5000, "v2": 5000}]


@st.composite
def weights(draw: st.DrawFn, versions: list[str]) -> dict[str, int]:
    """Basis points over ``versions`` summing to 10,000, often round, often with zeros."""
    unit = draw(st.sampled_from([1, 100, 1000]))
    cuts = sorted(
        draw(st.lists(st.integers(0, BUCKETS // unit), min_size=len(versions) - 1, max_size=len(versions) - 1))
    )
    parts = [(b - a) * unit for a, b in itertools.pairwise([0, *cuts, BUCKETS // unit])]
    return {v: bp for v, bp in zip(versions, parts, strict=True) if bp}


@st.composite
def changes(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int]]:
    """Old and new weights over 3 or 4 versions: unrelated, or one version trading with another."""
    versions = ORDER[: draw(st.sampled_from([3, 4]))]
    old = draw(weights(versions))
    if draw(st.booleans()):
        return old, draw(weights(versions))
    giver, taker = draw(st.permutations(versions))[:2]
    amount = draw(st.integers(min(1, old.get(giver, 0)), old.get(giver, 0)))
    new = {**old, giver: old.get(giver, 0) - amount, taker: old.get(taker, 0) + amount}
    return old, {v: bp for v, bp in new.items() if bp}


@settings(max_examples=300, deadline=None)
@given(changes())
def test_check_sticky_refuses_exactly_the_changes_that_move_a_bucket_badly(
    change: tuple[dict[str, int], dict[str, int]],
) -> None:
    old, new = change
    assert sticky(old, new) == (bad_buckets(old, new) == [])


@settings(max_examples=200, deadline=None)
@given(changes())
def test_with_production_only_changes_that_raise_another_version_are_checked(
    change: tuple[dict[str, int], dict[str, int]],
) -> None:
    old, new = change
    production = next((v for v in ORDER if v in old), "v1")
    only_back = all(bp <= old.get(v, 0) for v, bp in new.items() if v != production)
    assert sticky(old, new, production) == (only_back or bad_buckets(old, new) == [])


@settings(max_examples=100, deadline=None)
@given(changes(), st.booleans())
def test_the_suggested_steps_each_keep_every_bucket_sticky_and_end_at_the_new_weights(
    change: tuple[dict[str, int], dict[str, int]], with_production: bool
) -> None:
    old, new = change
    production = next((v for v in ORDER if v in old), None) if with_production else None
    steps = sticky_steps(ORDER, old, new, production=production)
    assert steps[-1] == new
    for a, b in itertools.pairwise([old, *steps]):
        assert sum(a.values()) == sum(b.values()) == BUCKETS and all(bp > 0 for bp in b.values())
        assert bad_buckets(a, b) == []
