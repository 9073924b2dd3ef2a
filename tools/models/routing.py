"""Sticky weighted routing, pure: a routing key's bucket, traffic weights, which version a bucket gets,
and whether a change of weights keeps every key on its version.

``bucket = int.from_bytes(sha256(salt || key)[:8]) % 10000``. The versions with traffic lie along the
10,000 buckets end to end, each as wide as its weight, in a layout that depends only on which versions
have traffic and the order they were registered in, never on how much each has::

    one or two versions    first | second
    three or more          third | fourth | ... | newest | first | second

The first-registered version with traffic (production, usually) lies between the others; the second keeps
the top end, as with two versions; later ones fill the bottom end in registration order, the newest
next to the first. Weight moved between two arms that touch changes only the buckets at their shared
edge, towards the arm that grew, and no other arm moves. So production can trade weight with the second
or the newest version with traffic, and a canary registered after the others can be added, without
moving anyone else's keys. Other changes can shift an arm whose weight did not change; ``check_sticky``
refuses those (except when they only take traffic back to production) and names steps that get there
without doing so.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from signoff.storage import InvalidInput
from signoff.storage.models.records import TOTAL_WEIGHT

BUCKETS = TOTAL_WEIGHT
MAX_PLANNED = 5  #: with more versions than this besides production, a plan goes through all traffic on production


def bucket_of(salt: bytes, key: str) -> int:
    digest = hashlib.sha256(salt + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, kw_only=True, slots=True)
class Arm:
    version: str
    start: int  #: first bucket
    end: int  #: one past the last bucket


def layout(order: Sequence[str], weights: Mapping[str, int]) -> list[str]:
    """The versions with traffic, from bucket 0 up (see the module docstring)."""
    live = [v for v in order if weights.get(v, 0) > 0]
    return [*live[2:], *live[:2]] if len(live) > 2 else live


@dataclass(frozen=True, slots=True)
class Split:
    """The arms with traffic, in routing order; an empty split routes nothing."""

    arms: tuple[Arm, ...]
    ends: tuple[int, ...]  #: each arm's ``end``, for bisection

    @classmethod
    def of(cls, order: Sequence[str], weights: Mapping[str, int]) -> Split:
        arms, start = [], 0
        for version in layout(order, weights):
            width = weights[version]
            arms.append(Arm(version=version, start=start, end=start + width))
            start += width
        if arms and start != BUCKETS:
            raise ValueError(f"weights cover {start} of {BUCKETS} buckets")
        return cls(tuple(arms), tuple(a.end for a in arms))

    def choose(self, bucket: int) -> Arm | None:
        if not self.arms:
            return None
        return self.arms[bisect.bisect_right(self.ends, bucket)]


Moves = dict[tuple[str, str], int]  #: (from version, to version) -> how many buckets


def moves(order: Sequence[str], old: Mapping[str, int], new: Mapping[str, int]) -> Moves:
    """How many buckets go from which version to which when the weights go from ``old`` to ``new``
    (none if either routes nothing)."""
    before, after = Split.of(order, old), Split.of(order, new)
    if not before.arms or not after.arms:
        return {}
    cuts = sorted({0, *before.ends, *after.ends})
    moved: Moves = {}
    for lo, hi in itertools.pairwise(cuts):
        was, now = before.choose(lo), after.choose(lo)
        if was is not None and now is not None and was.version != now.version:
            moved[was.version, now.version] = moved.get((was.version, now.version), 0) + hi - lo
    return moved


def unsticky_moves(order: Sequence[str], old: Mapping[str, int], new: Mapping[str, int]) -> Moves:
    """The moves that are not from a version whose weight shrank to one whose weight grew."""
    return {
        (a, b): n
        for (a, b), n in moves(order, old, new).items()
        if not (new.get(a, 0) < old.get(a, 0) and new.get(b, 0) > old.get(b, 0))
    }


def only_back_to(production: str | None, old: Mapping[str, int], new: Mapping[str, int]) -> bool:
    """No version other than ``production`` gains weight (the change only takes traffic back to production)."""
    return production is not None and all(bp <= old.get(v, 0) for v, bp in new.items() if v != production)


def check_sticky(
    order: Sequence[str], old: Mapping[str, int], new: Mapping[str, int], *, production: str | None = None
) -> None:
    """InvalidInput unless going from the ``old`` basis points to the ``new`` keeps every key sticky.

    The rule: a bucket may change version only from a version whose weight shrinks to one whose weight
    grows. So a version whose weight stays or grows keeps every key it had, and a version whose weight
    stays or shrinks gets no key it did not have; in particular raising a canary never moves a key back
    to production. It is checked exactly on both splits' arms (``order`` is registration order), and a
    split that routes nothing (no weights) constrains nothing.

    The rule always lets all traffic go to one version (every other shrinks to 0, it grows). The one
    exception: with ``production`` given, a change in which no other version gains weight, i.e. one that
    only takes traffic back to production (lowering canaries, to 0 or not), is always accepted, as
    rollback and the guard are. Stopping a canary must never be blocked, and it cannot always be sticky
    in any layout that keeps two-version splits as they are: with production registered before two
    canaries, stopping either leaves a two-version split in which the other holds the top end, so
    stopping each stickily would need both to hold it before. Such a change may move the keys of a
    canary whose weight it leaves alone.

    The message says which keys would move where and gives steps from ``sticky_steps``, each of which
    keeps the rule itself (not only through the exception).
    """
    if only_back_to(production, old, new):
        return
    bad = unsticky_moves(order, old, new)
    if bad:
        raise InvalidInput(_explain(order, old, new, bad, production))


def sticky_steps(
    order: Sequence[str], old: Mapping[str, int], new: Mapping[str, int], *, production: str | None = None
) -> list[dict[str, int]]:
    """Weights to set one after another to get from ``old`` to ``new``, each step keeping the rule of
    ``check_sticky`` from the one before; ``[new]`` when the change itself keeps it.

    Each step trades weight between production (without it: the first-registered version with traffic)
    and one other version, which goes to its old weight, its new one or 0; or puts all traffic on
    production; or goes from there to ``new``. Of those plans, the one that moves the fewest keys in all,
    then the one with the fewest steps, then the one that keeps the least traffic off production on the
    way (lowering before raising). One always exists: all traffic to production, then ``new``. In the
    first step every other version shrinks to 0 and production grows; in the second only production
    shrinks; so every bucket that moves leaves a version that shrank for one that grew.
    """
    pivot = _pivot(order, old, production)
    if pivot is None or not unsticky_moves(order, old, new):
        return [_positive(new)]
    others = [v for v in order if v != pivot and (old.get(v, 0) or new.get(v, 0))]
    start, goal = tuple(old.get(v, 0) for v in others), tuple(new.get(v, 0) for v in others)

    def weights(state: tuple[int, ...]) -> dict[str, int]:
        return _positive({pivot: BUCKETS - sum(state), **dict(zip(others, state, strict=True))})

    def neighbours(state: tuple[int, ...]) -> list[tuple[int, ...]]:
        near = [(0,) * len(others), goal]
        if len(others) <= MAX_PLANNED:
            near += [
                (*state[:i], bp, *state[i + 1 :])
                for i, v in enumerate(others)
                for bp in sorted({old.get(v, 0), new.get(v, 0), 0} - {state[i]})
            ]
        return [s for s in near if s != state and sum(s) <= BUCKETS]

    cost: dict[tuple[int, ...], tuple[int, int, int]] = {start: (0, 0, 0)}
    came_from: dict[tuple[int, ...], tuple[int, ...]] = {}
    queue = [((0, 0, 0), start)]
    while queue:
        spent, state = heapq.heappop(queue)
        if state == goal:
            break
        if spent > cost[state]:
            continue
        here = weights(state)
        for step in neighbours(state):
            there = weights(step)
            if unsticky_moves(order, here, there):
                continue
            total = (spent[0] + sum(moves(order, here, there).values()), spent[1] + 1, spent[2] + sum(step))
            if step not in cost or total < cost[step]:
                cost[step], came_from[step] = total, state
                heapq.heappush(queue, (total, step))
    path = [goal]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return [weights(state) for state in reversed(path[:-1])]


def _pivot(order: Sequence[str], old: Mapping[str, int], production: str | None) -> str | None:
    return production if production is not None else next((v for v in order if old.get(v, 0) > 0), None)


def _positive(weights: Mapping[str, int]) -> dict[str, int]:
    return {v: bp for v, bp in weights.items() if bp > 0}


def _explain(
    order: Sequence[str], old: Mapping[str, int], new: Mapping[str, int], bad: Moves, production: str | None
) -> str:
    def why(source: str, target: str) -> str:
        held = source if new.get(source, 0) >= old.get(source, 0) else target
        before, after = old.get(held, 0), new.get(held, 0)
        change = "keeps its" if after == before else "grows to" if after > before else "shrinks to"
        return f"{held} {change} {percent(after):g}%"

    moved = "; ".join(
        f"{percent(n):g}% of all keys would move from {a} to {b} although {why(a, b)}"
        for (a, b), n in sorted(bad.items(), key=lambda item: (-item[1], item[0]))
    )
    shape = " | ".join(layout(order, old))
    if layout(order, new) != layout(order, old):
        shape += f" and then as {' | '.join(layout(order, new))}"
    pivot = _pivot(order, old, production)
    path = [dict(old), *sticky_steps(order, old, new, production=production)]
    listed = "; ".join(
        f"{i}) {_as_percents(order, step)}{_what(production, before, step)}"
        for i, (before, step) in enumerate(itertools.pairwise(path), start=1)
    )
    redrawn = [
        v
        for v in order
        if v != pivot
        and any(a.get(v, 0) > b.get(v, 0) for a, b in itertools.pairwise(path))
        and any(a.get(v, 0) < b.get(v, 0) for a, b in itertools.pairwise(path))
    ]
    if redrawn:
        listed += (
            f". On the way {', '.join(redrawn)} {'go' if len(redrawn) > 1 else 'goes'} down and up again,"
            f" which re-draws the keys {'they get' if len(redrawn) > 1 else 'it gets'}"
        )
    return (
        f"this change is not sticky: {moved}. A key may change version only from a version whose weight"
        f" shrinks to one whose weight grows. The arms lie along the buckets as {shape} (the first-registered"
        f" version with traffic between the others, the second at the top end, later ones at the bottom end):"
        f" weight traded between arms that do not touch shifts the arms between them, and a version gaining"
        f" or losing all its traffic can move others. Get there in steps that keep keys sticky, one"
        f" set_traffic call each: {listed}"
    )


def _as_percents(order: Sequence[str], weights: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{v!r}: {percent(weights[v]):g}" for v in order if weights.get(v, 0) > 0) + "}"


def _what(production: str | None, before: Mapping[str, int], after: Mapping[str, int]) -> str:
    if production is None:
        return ""
    if only_back_to(production, before, after):
        return f" (only back to production {production})"
    raised = [v for v, bp in after.items() if v != production and bp > before.get(v, 0)]
    return f" (raises {', '.join(raised)})"


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
