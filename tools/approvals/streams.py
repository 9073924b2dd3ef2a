"""What the pure policy judges against, read from the store: the outcome streams ``[[fairness.groups]]`` watch, and
the recent approved payloads of an action the out-of-distribution checks learn from."""

from __future__ import annotations

from signoff.storage import ApprovalRequest, RequestQuery, Status, Store
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
    """The newest ``settings.window`` approved requests of ``action``, summarised."""
    page = await store.list_requests(RequestQuery(action=action, status=Status.APPROVED, limit=settings.window))
    return shape.profile((r.payload for r in page.items), settings.max_categories)
