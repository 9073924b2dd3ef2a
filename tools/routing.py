"""Sticky weighted routing, pure: a routing key's bucket, traffic weights, and which version a bucket gets.

``bucket = int.from_bytes(sha256(salt || key)[:8]) % 10000`` and the arms lie along the 10,000 buckets
end to end, in the order the versions were registered, each as wide as its weight. The order never
changes, so when weight moves between two neighbouring arms (a canary and production, the usual case)
only the buckets at their shared edge change hands, and only towards the arm that grew: raising a
canary's weight never moves a key back to the old version. With several canaries, a key can move between
arms that did not change when the arms between them widen or narrow.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storage import InvalidInput
from storage.model_records import TOTAL_WEIGHT

BUCKETS = TOTAL_WEIGHT


def bucket_of(salt: bytes, key: str) -> int:
    digest = hashlib.sha256(salt + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, kw_only=True, slots=True)
class Arm:
    version: str
    start: int  #: first bucket
    end: int  #: one past the last bucket


@dataclass(frozen=True, slots=True)
class Split:
    """The arms with traffic, in routing order; an empty split routes nothing."""

    arms: tuple[Arm, ...]
    ends: tuple[int, ...]  #: each arm's ``end``, for bisection

    @classmethod
    def of(cls, order: Sequence[str], weights: Mapping[str, int]) -> Split:
        arms, start = [], 0
        for version in order:
            width = weights.get(version, 0)
            if width > 0:
                arms.append(Arm(version=version, start=start, end=start + width))
                start += width
        if arms and start != BUCKETS:
            raise ValueError(f"weights cover {start} of {BUCKETS} buckets")
        return cls(tuple(arms), tuple(a.end for a in arms))

    def choose(self, bucket: int) -> Arm | None:
        if not self.arms:
            return None
        return self.arms[bisect.bisect_right(self.ends, bucket)]


def to_basis_points(percents: Mapping[str, float], known: Sequence[str]) -> dict[str, int]:
    """Percentages (two decimals at most, summing to 100) as basis points, zeros left out; else InvalidInput."""
    if not percents:
        raise InvalidInput("weights is empty: give every version's percentage, e.g. {'v1': 90, 'v2': 10}")
    unknown = sorted(set(percents) - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown version(s) {', '.join(map(repr, unknown))}: weights may name only registered versions"
            f" ({', '.join(known) or 'none yet'}); register a version first with register_model_version"
        )
    points: dict[str, int] = {}
    for version, percent in percents.items():
        if isinstance(percent, bool) or not math.isfinite(percent) or percent < 0 or percent > 100:
            raise InvalidInput(f"weight of {version!r} is {percent!r}; each weight is a percentage from 0 to 100")
        bp = round(percent * 100)
        if abs(bp - percent * 100) > 1e-6:
            raise InvalidInput(f"weight of {version!r} is {percent}; use at most two decimals (0.01% is one bucket)")
        if bp:
            points[version] = bp
    total = sum(points.values())
    if total != TOTAL_WEIGHT:
        raise InvalidInput(
            f"weights sum to {total / 100:g}%, not 100%: make the percentages add up to exactly 100"
            " (versions you leave out get 0)"
        )
    return points


def percent(points: int) -> float:
    return points / 100
