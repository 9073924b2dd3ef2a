"""Figure 3: requests created per second through the store, against raw writes of the same rows.

Subject: ``SqliteStore.create_request(request, creation_events(request), notify=True)`` for requests on the
review path (pending, with an outbox row), one after another, as a single writer. Floor: ``RawWriter``
commits the same rows (built beforehand) to another file with the same pragmas and schema. Blocks of the
two alternate; the rate of each is the median over its blocks.
"""

from __future__ import annotations

import time

from bench import samples
from bench.config import Config
from bench.rawdb import RawWriter, rowsets
from bench.report import Check, FigureResult, Row, Target
from bench.stats import median
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.lifecycle import creation_events


async def run(cfg: Config) -> FigureResult:
    pairs, block = cfg.pick(10, 4), cfg.pick(300, 100)
    warmup = block
    workdir = cfg.scratch("fig3")
    total = warmup + pairs * block
    subject_requests = await samples.requests_as_built(total, samples.NEEDS_REVIEW)
    floor_rows = list(rowsets(await samples.requests_as_built(total, samples.NEEDS_REVIEW, start=total)))
    store = await SqliteStore.open(workdir / "signoff.db")
    writer = await RawWriter.open(workdir / "floor.db")
    rates: dict[str, list[float]] = {"subject": [], "floor": []}
    try:
        for request in subject_requests[:warmup]:
            await store.create_request(request, creation_events(request), notify=True)
        for rows in floor_rows[:warmup]:
            await writer.write(rows)
        for pair in range(pairs):
            lo, hi = warmup + pair * block, warmup + (pair + 1) * block
            for kind in ("subject", "floor") if pair % 2 == 0 else ("floor", "subject"):
                start = time.perf_counter()
                if kind == "subject":
                    for request in subject_requests[lo:hi]:
                        await store.create_request(request, creation_events(request), notify=True)
                else:
                    for rows in floor_rows[lo:hi]:
                        await writer.write(rows)
                rates[kind].append(block / (time.perf_counter() - start))
    finally:
        await store.close()
        await writer.close()
    return FigureResult(
        rows=[
            Row(
                figure="3",
                what="requests created/s through SqliteStore (review path)",
                unit="req/s",
                measured=median(rates["subject"]),
                floor=median(rates["floor"]),
                target=Target(Check.RATIO_AT_LEAST, 0.5),
            )
        ],
        details={
            "blocks": pairs,
            "requests_per_block": block,
            "subject_rates": [round(r) for r in rates["subject"]],
            "floor_rates": [round(r) for r in rates["floor"]],
        },
    )
