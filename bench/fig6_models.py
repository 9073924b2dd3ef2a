"""Figure 6: ``resolve_model`` and ``record_inferences`` of 1,000 items, in-process, through the real ModelService.

Set-up, as a server has it: a SQLite file with a ``SqliteModelStore`` and, for the approvals that promotions
need, a ``SqliteStore`` on the same file; ``ModelService(store, ApprovalService(...))``. Model ``fraud`` gets
``v1`` in production and ``v2`` as a canary at 10%, both through the approval flow (a reviewer approves, the
change is settled), so the routing table is the one a real canary has.

Subject 1: ``models.telemetry.resolve("fraud", key)`` (what the ``resolve_model`` tool calls), a different
routing key on every call, with the service's own route cache, refresh (every 20 ms it checks the store's
state version) and settle safety net (once a second), as in production. Floor: the bare routing arithmetic
for the same kind of key: ``bucket_of(salt, key)`` (a sha256) and ``Split.choose`` (a bisection).

Subject 2: ``models.telemetry.record(reports)`` (what ``record_inferences`` calls) with 1,000 reports, each
carrying the version and ``decision_id`` a ``resolve`` returned (resolved beforehand, not timed), so every
report is validated as a real one is; no two batches share a report. Floor: the same number of rows written
with one ``executemany`` INSERT in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), on a plain
connection with the store's pragmas, in one call on a worker thread, into another file on the same disk.

Subject and floor are interleaved call by call. Both targets are absolute (the issue's); floors are for scale.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import anyio

from bench.config import Config
from bench.report import Check, FigureResult, Row, Target
from bench.stats import percentile, summary_ms
from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.storage.sqlite_db import BUSY_TIMEOUT_MS
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.routing import bucket_of
from signoff.tools.models.service import ChangeOutcome, ModelService, ModelSettings
from signoff.tools.models.telemetry import Report

MODEL = "fraud"
BATCH = 1000
REVIEWER = "bench-reviewer"
AGENT = "bench-bot"
FLOOR_TABLE = """
CREATE TABLE inferences (model TEXT, version TEXT, at TEXT, latency_ms REAL, ok INTEGER, confidence REAL)
"""
FLOOR_INSERT = "INSERT INTO inferences VALUES (?, ?, ?, ?, ?, ?)"
FloorRow = tuple[str, str, str, float, int, float | None]
_RESOLVE = Target(Check.BELOW, 1, "ms")
_RECORD = Target(Check.BELOW, 50, "ms")


async def _canary(models: ModelService, approvals: ApprovalService) -> None:
    """v1 in production and v2 at 10%, each change approved by a reviewer and settled."""
    for version in ("v1", "v2"):
        await models.register(MODEL, version, f"http://{MODEL}/{version}", agent_id=AGENT)
    await _approved(models, approvals, await models.promote(MODEL, "v1", "first production", agent_id=AGENT))
    await _approved(
        models, approvals, await models.set_traffic(MODEL, {"v1": 90, "v2": 10}, "try v2 on 10%", agent_id=AGENT)
    )
    serving = (await models.overview(MODEL)).state.serving
    if dict(serving.weights) != {"v1": 9000, "v2": 1000}:
        raise RuntimeError(f"the canary was not set up: {serving}")


async def _approved(models: ModelService, approvals: ApprovalService, outcome: ChangeOutcome) -> None:
    assert outcome.change.request_id is not None
    await approvals.vote(outcome.change.request_id, REVIEWER, Verdict.APPROVE, "checked")
    await models.settle()


def _floor_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    for pragma in (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON"):
        conn.execute(pragma)  # the store's pragmas (storage.sqlite_db.connect)
    conn.execute(FLOOR_TABLE)
    return conn


def _floor_write(conn: sqlite3.Connection, rows: list[FloorRow]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(FLOOR_INSERT, rows)
    conn.execute("COMMIT")


async def run(cfg: Config) -> FigureResult:
    resolve_warmup, resolves = cfg.pick(500, 200), cfg.pick(5000, 1000)
    record_warmup, records = cfg.pick(5, 2), cfg.pick(40, 10)
    workdir = cfg.scratch("fig6")
    rng = random.Random(6)
    approvals_store = await SqliteStore.open(workdir / "signoff.db")  # the server's two stores, on one file
    model_store = await SqliteModelStore.open(workdir / "signoff.db", seed=6)
    floor_conn = await anyio.to_thread.run_sync(_floor_connection, workdir / "floor.db")
    limiter = anyio.CapacityLimiter(1)
    times: dict[str, list[float]] = {"resolve": [], "resolve_rechecked": [], "route": [], "record": [], "insert": []}
    arms: dict[str, int] = {}
    try:
        approvals = ApprovalService(approvals_store)
        models = ModelService(model_store, approvals, settings=ModelSettings(guard_enabled=False), seed=6)
        await _canary(models, approvals)
        # the same registry as seen by a process whose calls come further apart than the refresh interval
        sparse = ModelService(model_store, approvals, settings=ModelSettings(guard_enabled=False, refresh_interval=0))
        route = await models.telemetry.route(MODEL)
        resolvers = {"resolve": models.telemetry.resolve, "resolve_rechecked": sparse.telemetry.resolve}

        def floor(key: str) -> int:
            arm = route.split.choose(bucket := bucket_of(route.salt, key))
            assert arm is not None
            return bucket

        kinds = ("resolve", "resolve_rechecked", "route")
        for i in range(resolve_warmup + resolves):
            for kind in kinds[i % 3 :] + kinds[: i % 3]:
                key = f"{kind}-{i}"
                start = time.perf_counter()
                if kind == "route":
                    bucket = floor(key)
                else:
                    routed = await resolvers[kind](MODEL, key)
                    bucket = routed.bucket
                elapsed = time.perf_counter() - start
                if bucket != bucket_of(route.salt, key):
                    raise RuntimeError(f"{kind} answered bucket {bucket} for {key}")
                if i >= resolve_warmup:
                    times[kind].append(elapsed)
                    if kind == "resolve":
                        arms[routed.arm] = arms.get(routed.arm, 0) + 1

        for b in range(record_warmup + records):
            reports = []
            for j in range(BATCH):  # resolved beforehand, as the caller did before its inferences
                routed = await models.telemetry.resolve(MODEL, f"batch-{b}-{j}")
                reports.append(
                    Report(
                        model=MODEL,
                        version=routed.version,
                        latency_ms=rng.lognormvariate(3.5, 0.4),
                        ok=rng.random() > 0.02,
                        confidence=rng.random(),
                        decision_id=routed.decision_id,
                    )
                )
            at = models.clock.now().isoformat()
            rows: list[FloorRow] = [(MODEL, r.version, at, r.latency_ms, int(r.ok), r.confidence) for r in reports]
            for kind in ("record", "insert") if b % 2 == 0 else ("insert", "record"):
                start = time.perf_counter()
                if kind == "record":
                    if await models.telemetry.record(reports) != BATCH:
                        raise RuntimeError("record_inferences did not record the whole batch")
                else:
                    await anyio.to_thread.run_sync(_floor_write, floor_conn, rows, limiter=limiter)
                if b >= record_warmup:
                    times[kind].append(time.perf_counter() - start)
    finally:
        await anyio.to_thread.run_sync(floor_conn.close, limiter=limiter)
        await model_store.close()
        await approvals_store.close()

    p = {kind: (percentile(ts, 50) * 1000, percentile(ts, 99) * 1000) for kind, ts in times.items()}
    return FigureResult(
        rows=[
            Row(
                figure="6",
                what="resolve_model p50, in-process",
                unit="ms",
                measured=p["resolve"][0],
                floor=p["route"][0],
                target=_RESOLVE,
            ),
            Row(figure="6", what="  same, p99", unit="ms", measured=p["resolve"][1], floor=p["route"][1]),
            Row(
                figure="6",
                what="  same, p50, calls > 20 ms apart (state re-read each call)",
                unit="ms",
                measured=p["resolve_rechecked"][0],
                floor=p["route"][0],
                target=_RESOLVE,
            ),
            Row(
                figure="6",
                what="record_inferences of 1,000 items, p50",
                unit="ms",
                measured=p["record"][0],
                floor=p["insert"][0],
                target=_RECORD,
            ),
            Row(figure="6", what="  same, p99", unit="ms", measured=p["record"][1], floor=p["insert"][1]),
        ],
        details={
            "resolves": resolves,
            "resolve_warmup": resolve_warmup,
            "resolved_arms": arms,
            "batches": records,
            "batch_warmup": record_warmup,
            "items_per_batch": BATCH,
            **{kind: summary_ms(ts) for kind, ts in times.items()},
        },
    )
