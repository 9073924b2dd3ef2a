"""The windows fairness and the out-of-distribution checks judge against, kept current by reading only what is new:
always the same counts and profile as reading the whole window again."""

from __future__ import annotations

import random

from signoff.storage import DecidedBy, Page, RequestQuery, Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals import fairness, shape
from signoff.tools.approvals.policy_config import Anomaly, FairnessGroup
from signoff.tools.approvals.streams import Windows, outcome_counts
from tests.factories import add

GROUP = FairnessGroup(attribute="payload.band", outcome="policy", window=200, action=("loans.*",))
SETTINGS = Anomaly(enabled=True, window=100, warmup=10)


class Reading(MemoryStore):
    """The memory store, counting the requests each list_requests hands back."""

    read = 0

    async def list_requests(self, query: RequestQuery) -> Page:
        page = await super().list_requests(query)
        self.read += len(page.items)
        return page


async def some(store: MemoryStore, rng: random.Random, count: int) -> None:
    for _ in range(count):
        approved = rng.random() < 0.6
        await add(
            store,
            action=rng.choice(("loans.decide", "loans.decide", "mail.send")),
            payload={"band": rng.choice(("a", "b", "c")), "note": rng.choice(("x", "y", "z" * rng.randrange(9)))},
            flags=(),
            status=Status.APPROVED if approved else Status.PENDING,
            decided_by=DecidedBy.POLICY if approved else None,
        )


async def test_counts_kept_current_match_a_full_read_and_read_only_the_new_requests() -> None:
    store, rng = Reading(), random.Random(17)
    await some(store, rng, 400)
    windows = Windows(store)
    assert await windows.outcome_counts(GROUP) == await outcome_counts(store, GROUP)
    for batch in (1, 7, 30, 0, 120):
        await some(store, rng, batch)
        store.read = 0
        kept = await windows.outcome_counts(GROUP)
        assert store.read <= batch + 6, "more than the new requests were read"  # + 5 s of overlap, 1 a second
        assert kept == await outcome_counts(store, GROUP)


async def test_a_profile_kept_current_matches_one_made_from_a_full_read() -> None:
    store, rng = Reading(), random.Random(18)
    await some(store, rng, 300)
    windows = Windows(store)

    async def full() -> shape.PayloadProfile:
        page = await store.list_requests(
            RequestQuery(action="loans.decide", status=Status.APPROVED, limit=SETTINGS.window)
        )
        return shape.profile((r.payload for r in page.items), SETTINGS.max_categories)

    assert await windows.recent_profile("loans.decide", SETTINGS) == await full()
    for batch in (3, 50, 0, 200):
        await some(store, rng, batch)
        assert await windows.recent_profile("loans.decide", SETTINGS) == await full()


async def test_every_refresh_every_looks_the_window_is_read_whole_again() -> None:
    store, rng = Reading(), random.Random(19)
    await some(store, rng, 300)
    windows = Windows(store, refresh_every=3)
    reads = []
    for _ in range(6):
        store.read = 0
        await windows.outcome_counts(GROUP)
        reads.append(store.read)
    assert reads[0] == reads[3] > 100 and max(reads[1], reads[2], reads[4], reads[5]) < 10, reads
    assert isinstance(await windows.outcome_counts(GROUP), dict) and fairness.judge_groups(GROUP, {}) == []
