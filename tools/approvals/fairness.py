"""Outcome fairness: per-group rates of an outcome over a rolling window, and a two-proportion test per group.

Pure: the service fetches the recent requests and passes them (or the counts) in. For a group ``g`` with ``x`` of
``n`` requests positive, against the rest of the window with ``y`` of ``m``: the pooled rate ``p = (x+y)/(n+m)``,
``z = (x/n - y/m) / sqrt(p(1-p)(1/n + 1/m))``, and the two-sided p-value ``erfc(|z|/sqrt 2)``. A group is flagged
when both sides have ``min_samples``, the rates differ by more than ``margin``, and the p-value is below
``alpha / k`` for the ``k`` groups tested (Bonferroni), so a fair stream raises a false alarm for any of its groups
with a chance of at most about ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signoff.storage import ApprovalRequest, DecidedBy, Status
from signoff.storage.canonical import canonical_json, is_finite_number
from signoff.tools.approvals.conditions import Unclear, action_glob, resolve, show
from signoff.tools.approvals.policy_config import STREAM_OUTCOMES, FairnessGroup

__all__ = [
    "Counts",
    "GroupRate",
    "count_outcomes",
    "counted",
    "group_key",
    "judge_groups",
    "outcome_words",
    "two_proportion",
]

Counts = Mapping[str, tuple[int, int]]  #: group key (canonical JSON of its value) -> (positive, total)


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupRate:
    """One group's rate against the rest of the window, and whether it is flagged."""

    key: str  #: canonical JSON of the group's value
    positive: int
    total: int
    rest_positive: int
    rest_total: int
    p_value: float | None  #: None: too few requests on one side to test
    tested: int  #: groups tested in this window (the Bonferroni divisor)
    flagged: bool

    @property
    def rate(self) -> float:
        return self.positive / self.total if self.total else 0.0

    @property
    def rest_rate(self) -> float:
        return self.rest_positive / self.rest_total if self.rest_total else 0.0


def group_key(value: Any) -> str | None:
    """The key a group's value is counted under; None for a value that names no group (missing, an object…)."""
    if isinstance(value, str | bool) or is_finite_number(value):
        return canonical_json(value)
    return None


def outcome_words(group: FairnessGroup) -> str:
    if group.outcome in STREAM_OUTCOMES:
        return STREAM_OUTCOMES[group.outcome]
    return f"{group.outcome} = {show(group.positive)}"


def _outcome(group: FairnessGroup, request: Any, status: Status, decided_by: DecidedBy | None) -> bool | None:
    """Whether ``request`` counts as positive, negative, or not at all (None) in ``group``'s stream."""
    if group.outcome == "policy":
        return decided_by is DecidedBy.POLICY and status is Status.APPROVED
    if group.outcome == "approved":
        return status is Status.APPROVED if status in (Status.APPROVED, Status.REJECTED) else None
    value = resolve(request, group.outcome)
    if isinstance(value, Unclear) or group_key(value) is None:
        return None
    return bool(canonical_json(value) == canonical_json(group.positive))


def count_outcomes(group: FairnessGroup, requests: Iterable[ApprovalRequest]) -> dict[str, tuple[int, int]]:
    """Per group, (positive, total) over the first ``group.window`` of ``requests`` (newest first) that match the
    group's actions and have both a group and an outcome."""
    counts: dict[str, tuple[int, int]] = {}
    counted = 0
    for request in requests:
        if counted >= group.window:
            break
        found = counted_as(group, request)
        if found is None:
            continue
        key, positive = found
        hits, total = counts.get(key, (0, 0))
        counts[key] = (hits + positive, total + 1)
        counted += 1
    return counts


def counted_as(group: FairnessGroup, request: ApprovalRequest) -> tuple[str, bool] | None:
    """What ``request`` adds to ``group``'s stream: (its group's key, whether positive); None if it does not count
    (another action, no group, no outcome)."""
    return counted(group, request, request.status, request.decided_by)


def counted(
    group: FairnessGroup, request: Any, status: Status, decided_by: DecidedBy | None
) -> tuple[str, bool] | None:
    """``counted_as`` for any request with paths to resolve (a ``RecordedRequest``, a ``PolicyInput``), given the
    outcome it got: what replay folds into the stream when the candidate policy decides otherwise."""
    if group.action and action_glob(request.action, group.action) is None:
        return None
    value = resolve(request, group.attribute)
    key = None if isinstance(value, Unclear) else group_key(value)
    positive = _outcome(group, request, status, decided_by) if key is not None else None
    if key is None or positive is None:
        return None
    return key, positive


def two_proportion(x: int, n: int, y: int, m: int) -> float:
    """The two-sided p-value of a pooled two-proportion z-test of x/n against y/m (1.0 when nothing varies)."""
    pooled = (x + y) / (n + m)
    spread = pooled * (1 - pooled) * (1 / n + 1 / m)
    if spread <= 0:
        return 1.0  # all positive or all negative on both sides: no difference to see
    z = (x / n - y / m) / math.sqrt(spread)
    return math.erfc(abs(z) / math.sqrt(2))


def judge_groups(group: FairnessGroup, counts: Counts) -> list[GroupRate]:
    """Every group's rate against the rest, tested and flagged as the module docstring says; largest groups first."""
    all_positive = sum(x for x, _ in counts.values())
    all_total = sum(n for _, n in counts.values())
    sides = {
        key: (x, n, all_positive - x, all_total - n)
        for key, (x, n) in counts.items()  # the rest: every other group in the window
    }
    testable = [k for k, (_, n, _, m) in sides.items() if n >= group.min_samples and m >= group.min_samples]
    tested = len(testable)
    rates = []
    for key, (x, n, y, m) in sides.items():
        p_value = two_proportion(x, n, y, m) if key in testable else None
        flagged = p_value is not None and abs(x / n - y / m) > group.margin and p_value < group.alpha / max(tested, 1)
        rates.append(
            GroupRate(
                key=key, positive=x, total=n, rest_positive=y, rest_total=m, p_value=p_value, tested=tested,
                flagged=flagged,
            )
        )  # fmt: skip
    return sorted(rates, key=lambda r: (-r.total, r.key))


def detail(group: FairnessGroup, rate: GroupRate) -> str:
    """The trigger detail a reviewer reads for a flagged group."""
    return (
        f"{group.attribute} = {rate.key}: {outcome_words(group)} in {rate.rate:.0%} of this group's last"
        f" {rate.total:,} requests against {rate.rest_rate:.0%} of the other {rate.rest_total:,} (a difference of"
        f" {abs(rate.rate - rate.rest_rate) * 100:.0f} points, more than the margin of {group.margin * 100:g};"
        f" two-proportion test p = {rate.p_value:.2g}, below {group.alpha:g} / {rate.tested} groups)"
    )
