"""Evidence for an open finding (see README "Open findings"): what a status + action index would change.

On figure 5's cached database, times the SQL ``list_requests`` runs for each filter shape, then creates
``PROPOSED_INDEX`` inside a transaction, times the same SQL again, and rolls back: the cached file is left
as it was. Run after ``python -m bench --only 5`` has built the database:
``python -m bench.probe_history [ROWS]`` (ROWS defaults to 1,000,000).
"""

from __future__ import annotations

import sys
import time

import aiosqlite
import anyio

from bench import history_db
from bench.config import RESULTS_DIR
from bench.fig5_history import FILTERED_SQL, PAGE, SHAPES
from bench.stats import percentile
from signoff.storage.sqlite_db import connect

PROPOSED_INDEX = "CREATE INDEX requests_status_action_created ON requests (status, action, created_at DESC, id DESC)"
RUNS = 50


async def _measure(db: aiosqlite.Connection) -> dict[str, tuple[float, str]]:
    """p50 in ms and the index used, per shape (the first page of each)."""
    results = {}
    for shape in SHAPES:
        if shape.pages_deep > 1:
            continue
        params = (str(shape.query.status), shape.query.action, PAGE + 1)
        async with db.execute(f"EXPLAIN QUERY PLAN {FILTERED_SQL}", params) as cur:
            plan = next(row[3] for row in await cur.fetchall())
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            async with db.execute(FILTERED_SQL, params) as cur:
                await cur.fetchall()
            times.append(time.perf_counter() - start)
        results[shape.label] = (percentile(times, 50) * 1000, plan)
    return results


async def main(rows: int) -> None:
    path = history_db.cached_path(RESULTS_DIR, rows)
    if not path.exists():
        raise SystemExit(f"{path.name} is not built yet: run python -m bench --only 5 --history-rows {rows}")
    db = await connect(path)
    try:
        before = await _measure(db)
        await db.execute("BEGIN IMMEDIATE")
        start = time.perf_counter()
        await db.execute(PROPOSED_INDEX)
        built = time.perf_counter() - start
        after = await _measure(db)
        await db.rollback()
    finally:
        await db.close()
    print(f"{rows:,} requests; {PROPOSED_INDEX} (built in {built:.1f} s, rolled back afterwards)")
    for shape in SHAPES:
        if shape.label in before:
            (b, b_plan), (a, a_plan) = before[shape.label], after[shape.label]
            print(f"  {shape.label} {shape.what}")
            print(f"     now      p50 {b:8.2f} ms  {b_plan}")
            print(f"     proposed p50 {a:8.2f} ms  {a_plan}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
