"""What the pure policy judges against, read from the store: the outcome streams ``[[fairness.groups]]`` watch, and
the recent approved payloads of an action the out-of-distribution checks learn from (of every spelling of it: the
action folded as rules compare it, ``storage.folding``, as the anomaly history is kept)."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff.storage import ApprovalRequest, RequestQuery, Status, Store
from signoff.storage.folding import fold_action
from signoff.tools.approvals import fairness, shape
from signoff.tools.approvals.policy_config import Anomaly, FairnessGroup

PAGE = 500
SCAN_FACTOR = 20  #: at most this many times ``window`` recent requests are read to fill a window


async def recent_requests(store: Store, group: FairnessGroup) -> list[ApprovalRequest]:
    """The newest requests, enough to fill ``group.window`` (or all there are, up to the scan limit)."""
    found: list[ApprovalRequest] = []
    cursor = None
    while len(found) < group.window * SCAN_FACTOR:
        page = await store.list_requests(RequestQuery(limit=PAGE, before=cursor))
        found += page.items
        counts = fairness.count_outcomes(group, found)
        if sum(n for _, n in counts.values()) >= group.window or (cursor := page.next_cursor) is None:
            break
    return found


async def outcome_counts(store: Store, group: FairnessGroup) -> dict[str, tuple[int, int]]:
    """Per group value, (positive, total) over the group's window of recent requests."""
    return fairness.count_outcomes(group, await recent_requests(store, group))


async def recent_profile(store: Store, action: str, settings: Anomaly) -> shape.PayloadProfile:
    """The newest ``settings.window`` approved requests of ``action`` under any spelling, summarised."""
    query = RequestQuery(folded_action=action, status=Status.APPROVED, limit=settings.window)
    page = await store.list_requests(query)
    return shape.profile((r.payload for r in page.items), settings.max_categories)


OVERLAP = timedelta(seconds=5)  #: requests this much older than the newest seen are read again (late commits)
REFRESH_EVERY = 100  #: a window is read whole again after this many looks (picks up later decisions by people)
MAX_WINDOWS = 64


@dataclass(slots=True)
class _Window:
    """The newest entries of one stream, oldest first, and where the last look ended."""

    entries: deque[tuple[str, Any]] = field(default_factory=deque)  #: (request id, what it adds)
    newest: datetime | None = None  #: created_at of the newest request seen
    recent: dict[str, datetime] = field(default_factory=dict)  #: ids seen within OVERLAP of ``newest``
    looks: int = 0
    derived: Any = None  #: what is computed from ``entries`` (counts, a profile); None: compute again


class Windows:
    """Per process: the windows fairness and the out-of-distribution checks judge against, kept current by reading
    only the requests created since the last look, with everything read again every ``refresh_every`` looks.

    Outcomes fixed when a request is created (approval by policy, a payload field) are exact this way; what people
    decide later (the ``approved`` outcome, and requests people approve for the profiles) shows at the next full
    read, so at most ``refresh_every`` looks late. Shared by every policy version; windows of a config no longer in
    use are dropped when there are more than ``MAX_WINDOWS``."""

    def __init__(self, store: Store, refresh_every: int = REFRESH_EVERY) -> None:
        self.store = store
        self.refresh_every = refresh_every
        self._windows: dict[Any, _Window] = {}

    async def outcome_counts(self, group: FairnessGroup) -> fairness.Counts:
        window = self._window(("fairness", group))
        if window.newest is None or window.looks % self.refresh_every == 0:
            found = await recent_requests(self.store, group)
            self._reset(window, found, [(r.id, fairness.counted_as(group, r)) for r in reversed(found)], group.window)
        else:
            new = await self._newer(window, RequestQuery(limit=PAGE))
            if new is None:
                window.looks = 0
                return await self.outcome_counts(group)
            self._extend(window, [(r.id, fairness.counted_as(group, r)) for r in new], group.window)
        window.looks += 1
        if window.derived is None:
            counts: dict[str, tuple[int, int]] = {}
            for _, entry in window.entries:
                key, positive = entry
                hits, total = counts.get(key, (0, 0))
                counts[key] = (hits + positive, total + 1)
            window.derived = counts
        result: fairness.Counts = window.derived
        return result

    async def recent_profile(self, action: str, settings: Anomaly) -> shape.PayloadProfile:
        action = fold_action(action)  # one window for every spelling of the action
        window = self._window(("profile", action, settings.window, settings.max_categories))
        if window.newest is None or window.looks % self.refresh_every == 0:
            query = RequestQuery(folded_action=action, status=Status.APPROVED, limit=settings.window)
            found = list((await self.store.list_requests(query)).items)
            self._reset(window, found, [(r.id, r.payload) for r in reversed(found)], settings.window)
        else:
            new = await self._newer(window, RequestQuery(folded_action=action, status=Status.APPROVED, limit=PAGE))
            if new is None:
                window.looks = 0
                return await self.recent_profile(action, settings)
            self._extend(window, [(r.id, r.payload) for r in new], settings.window)
        window.looks += 1
        if window.derived is None:
            window.derived = shape.profile((p for _, p in reversed(window.entries)), settings.max_categories)
        result: shape.PayloadProfile = window.derived
        return result

    def _window(self, key: Any) -> _Window:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= MAX_WINDOWS:
                self._windows.clear()
            window = self._windows[key] = _Window()
        return window

    async def _newer(self, window: _Window, query: RequestQuery) -> list[ApprovalRequest] | None:
        """Requests created since the last look, oldest first; None when there are too many to read in one page."""
        assert window.newest is not None
        page = await self.store.list_requests(dataclasses.replace(query, since=window.newest - OVERLAP))
        if page.next_cursor is not None:
            return None
        new = [r for r in reversed(page.items) if r.id not in window.recent]
        for request in new:
            window.recent[request.id] = request.created_at
            if request.created_at > window.newest:
                window.newest = request.created_at
        edge = window.newest - OVERLAP
        window.recent = {i: at for i, at in window.recent.items() if at >= edge}
        return new

    def _reset(self, window: _Window, found: list[ApprovalRequest], entries: list[tuple[str, Any]], size: int) -> None:
        """Start again from ``found`` (newest first)."""
        window.entries.clear()
        window.derived = None
        window.newest = found[0].created_at if found else datetime(2000, 1, 1, tzinfo=UTC)
        edge = window.newest - OVERLAP
        window.recent = {r.id: r.created_at for r in found if r.created_at >= edge}
        self._extend(window, entries, size)

    def _extend(self, window: _Window, entries: list[tuple[str, Any]], size: int) -> None:
        added = [(request_id, entry) for request_id, entry in entries if entry is not None]
        if not added:
            return
        window.entries.extend(added)
        while len(window.entries) > size:
            window.entries.popleft()
        window.derived = None
