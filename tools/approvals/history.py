"""The history the anomaly, out-of-distribution and fairness checks judge against, grown one request at a time.

At runtime the store and ``streams.Windows`` hold it: the (agent, action) pairs approved before (novelty), the
newest 200 numbers per action and field of approved payloads, the newest ``anomaly.window`` approved payloads of
each action (the out-of-distribution profile; these three under the folded action and field, as rules compare them:
``storage.folding``), and the newest ``window`` outcomes of each ``[[fairness.groups]]`` stream.
``History`` keeps the same four things in memory and is fed requests oldest first, so ``policy replay`` and
``policy test`` judge each request against the history as it stood when the request came.

Pure and deterministic: the same requests, in the same order, give the same history. Each update costs about the
size of one payload, whatever the window sizes, so a replay of a million requests stays linear.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signoff.storage import ActionHistory, DecidedBy, Status
from signoff.storage.folding import fold_action, fold_path
from signoff.storage.payload_numbers import history_names, learnt, numeric_leaves
from signoff.tools.approvals import fairness, shape
from signoff.tools.approvals.policy import Policy, PolicyInput, sorted_spread

__all__ = ["VALUES_KEPT", "History", "Judged"]

VALUES_KEPT = 200  #: numbers kept per action and field, as the store's ``action_history`` reads them

Judged = tuple[ActionHistory | None, Mapping[int, fairness.Counts] | None, shape.PayloadProfile | None]


@dataclass(slots=True)
class _Profile:
    """``shape.profile`` of the newest ``size`` approved payloads of one action, kept up to date as payloads come
    and go: counters are added to and taken from, and each field's longest string is a sliding-window maximum."""

    size: int
    entries: deque[tuple[int, list[tuple[str, Any]]]] = field(default_factory=deque)  #: (seq, leaves), oldest first
    keys: Counter[str] = field(default_factory=Counter)
    values: dict[str, Counter[str]] = field(default_factory=dict)  #: every value (``unusual`` judges the same way)
    strings: Counter[str] = field(default_factory=Counter)
    lengths: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)  #: (seq, length), lengths decreasing
    longest: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    view: shape.PayloadProfile | None = None  #: what ``profile`` gave, until the next payload

    def add(self, payload: Mapping[str, Any], walked: list[tuple[str, Any]] | None = None) -> None:
        """Learn ``payload``; ``walked``: its ``shape.leaves``, when the caller has them."""
        self.seq += 1
        self.view = None
        leaves = shape.leaves(payload) if walked is None else walked
        self.entries.append((self.seq, leaves))
        for path, value in leaves:
            self.keys[path] += 1
            if isinstance(value, str):
                self.strings[path] += 1
                self.values.setdefault(path, Counter())[value] += 1
                lengths = self.lengths.setdefault(path, deque())
                while lengths and lengths[-1][1] <= len(value):
                    lengths.pop()
                lengths.append((self.seq, len(value)))
                self.longest[path] = lengths[0][1]
        if len(self.entries) > self.size:
            self._drop()

    def _drop(self) -> None:
        seq, leaves = self.entries.popleft()
        for path, value in leaves:
            _take(self.keys, path)
            if isinstance(value, str):
                _take(self.strings, path)
                values = self.values[path]
                _take(values, value)
                if not values:
                    del self.values[path]
                lengths = self.lengths[path]
                if lengths and lengths[0][0] == seq:
                    lengths.popleft()
                if lengths:
                    self.longest[path] = lengths[0][1]
                else:
                    del self.lengths[path], self.longest[path]

    def profile(self) -> shape.PayloadProfile:
        """A view of the counters as they are now (``unusual`` only reads it)."""
        if self.view is None:
            self.view = shape.PayloadProfile(
                count=len(self.entries), keys=self.keys, values=self.values, longest=self.longest, strings=self.strings
            )
        return self.view


def _take(counter: Counter[str], key: str) -> None:
    if counter[key] <= 1:
        del counter[key]
    else:
        counter[key] -= 1


@dataclass(slots=True)
class _Stream:
    """One ``[[fairness.groups]]`` stream: its newest ``size`` (group, positive) entries and their counts."""

    size: int
    entries: deque[tuple[str, bool]] = field(default_factory=deque)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, key: str, positive: bool) -> None:
        self.entries.append((key, positive))
        hits, total = self.counts.get(key, (0, 0))
        self.counts[key] = (hits + positive, total + 1)
        if len(self.entries) > self.size:
            old, was_positive = self.entries.popleft()
            hits, total = self.counts[old]
            if total == 1:
                del self.counts[old]
            else:
                self.counts[old] = (hits - was_positive, total - 1)


class History:
    """What ``policy`` judges requests against, fed requests oldest first with the outcome each got.

    ``judged`` gives what ``Policy.evaluate`` takes for a request (``history``, ``streams``, ``profile``), before
    the request is ``add``-ed. A request counts from its creation on with the outcome it finally got: a request
    people approved an hour later teaches the history at once here, where the server learns it on approval."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        anomaly = policy.config.anomaly
        self._numbers = policy.wants_history
        self._shapes = bool(policy.wants_profile)
        self._window = anomaly.window
        self._groups = policy.config.fairness.groups
        self._seen: set[tuple[str, str]] = set()
        self._values: dict[tuple[str, str], deque[float]] = {}
        self._ordered: dict[tuple[str, str], list[float]] = {}  #: the same numbers, sorted
        #: what ``judged`` hands out, until the next number: sorted, which the check does not mind (a median and
        #: a MAD ignore order) and which makes its sorts linear
        self._snapshots: dict[tuple[str, str], tuple[float, ...]] = {}
        #: ``policy.sorted_spread`` of the same numbers, with their count, until the next number
        self._spreads: dict[tuple[str, str], tuple[int, float, float, float]] = {}
        self._profiles: dict[str, _Profile] = {}
        self._streams = [_Stream(group.window) for group in self._groups]
        self._watched: dict[str, list[int]] = {}  #: ``policy.watched_groups`` per action

    def judged(self, request: PolicyInput, walked: shape.Walk | None = None) -> Judged:
        """``walked``: ``shape.walk(request.payload)``, when the caller has it (replay walks each payload once)."""
        history = None
        if self._numbers:
            action = fold_action(request.action)  # as the stores keep it: folded, as rules compare (``folding``)
            values = {}
            spreads = {}
            numbers = numeric_leaves(request.payload) if walked is None else walked.numbers
            for name in history_names(numbers):
                key = (action, fold_path(name))
                snapshot = self._snapshots.get(key)
                if snapshot is None:
                    snapshot = self._snapshots[key] = tuple(self._ordered.get(key, ()))
                values[name] = snapshot
                if snapshot:
                    spread = self._spreads.get(key)
                    if spread is None:
                        spread = self._spreads[key] = (len(snapshot), *sorted_spread(snapshot))
                    spreads[name] = spread
            seen = (request.agent_id or "", action) in self._seen
            history = ActionHistory(seen_from_agent=seen, values=values, spreads=spreads)
        streams = None
        watched = self._watched.get(request.action)
        if watched is None:
            watched = self._watched[request.action] = self.policy.watched_groups(request.action)
        if watched:
            streams = {index: self._streams[index].counts for index in watched}
        profile = None
        if self._shapes:
            found = self._profiles.get(fold_action(request.action))  # every spelling, as ``streams.Windows``
            profile = found.profile() if found is not None else shape.PayloadProfile(count=0)
        return history, streams, profile

    def add(
        self,
        request: Any,
        status: Status,
        decided_by: DecidedBy | None,
        approved_payload: Any = None,
        walked: shape.Walk | None = None,
    ) -> None:
        """Learn from ``request`` (a ``PolicyInput`` or a ``RecordedRequest``) with the outcome it got; a reviewer's
        changed payload (``approved_payload``) is what the numbers learn, as in the store. ``walked``:
        ``shape.walk(request.payload)``, when the caller has it."""
        action = request.action
        if status is Status.APPROVED:
            if self._numbers:
                folded = fold_action(action)
                self._seen.add((request.agent_id or "", folded))
                if approved_payload is None and walked is not None:
                    numbers = walked.numbers
                else:
                    numbers = numeric_leaves(request.payload if approved_payload is None else approved_payload)
                for name, value in learnt(numbers):  # as the stores learn them (``codec.approved_values``)
                    if not math.isfinite(value):
                        continue
                    key = (folded, fold_path(name))
                    kept = self._values.get(key)
                    if kept is None:
                        kept = self._values[key] = deque()
                        self._ordered[key] = []
                    ordered = self._ordered[key]
                    kept.append(value)
                    bisect.insort(ordered, value)
                    if len(kept) > VALUES_KEPT:
                        del ordered[bisect.bisect_left(ordered, kept.popleft())]
                    self._snapshots.pop(key, None)
                    self._spreads.pop(key, None)
            if self._shapes:
                folded = fold_action(action)
                found = self._profiles.get(folded)
                if found is None:
                    found = self._profiles[folded] = _Profile(self._window)
                # the windows read the payload as asked, as ``streams.Windows`` does
                found.add(request.payload, None if walked is None else walked.leaves)
        if not self._groups:
            return
        watched = self._watched.get(action)
        if watched is None:
            watched = self._watched[action] = self.policy.watched_groups(action)
        for index in watched:  # the others do not count requests of this action
            counted = fairness.counted(self._groups[index], request, status, decided_by)
            if counted is not None:
                self._streams[index].add(*counted)
