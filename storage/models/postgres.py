"""The PostgreSQL ModelStore: the SQLite one's rules on PostgreSQL (``storage.pg_db``).

Every write is one transaction holding the writers' advisory lock that the approval store takes too, so the model
plane's events join the one audit chain without forking it, and a pending change is settled once on any host. Waiters
wake on this process's changes at once, on other processes' through ``LISTEN``/``NOTIFY``, and on a slow poll of the
state version as a safety net. Telemetry is not chained.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from signoff.storage.approvals.pg_queries import INSERT_EVENT, LAST_EVENT
from signoff.storage.audit import GENESIS_HASH, EncodedEvent
from signoff.storage.audit_models import model_event
from signoff.storage.canonical import canonical_json
from signoff.storage.change_signal import ChangeSignal
from signoff.storage.errors import Conflict, NotFound
from signoff.storage.metrics_queries import InferenceTotals, inference_totals
from signoff.storage.models import pg_queries as q
from signoff.storage.models.records import (
    ChangeKind,
    ChangeStatus,
    Inference,
    ModelChange,
    ModelState,
    ModelVersion,
    NewChange,
    Serving,
    VersionTelemetry,
)
from signoff.storage.models.sampling import (
    RETENTION_PERIODS,
    by_period,
    inclusion_probability,
    minute_of,
    minute_sums,
    period_of,
    reservoir_writes,
    thinning_threshold,
)
from signoff.storage.models.store import Decide, Settle
from signoff.storage.pg_db import Conn, PostgresDatabase
from signoff.storage.records import EventKind, NewEvent
from signoff.storage.timefmt import from_text, to_text

SAFETY_POLL_SECONDS = 1.0


class PostgresModelStore:
    def __init__(self, db: PostgresDatabase, poll_interval: float, seed: int | None) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._signal = ChangeSignal()
        self._rng = random.Random(seed)

    @classmethod
    async def open(
        cls, url: str, *, poll_interval: float = SAFETY_POLL_SECONDS, seed: int | None = None
    ) -> PostgresModelStore:
        """Connect to the database at ``url`` (migrating it as needed) and listen for other processes' changes."""
        db = await PostgresDatabase.open(url)
        store = cls(db, poll_interval, seed)
        try:
            await db.listen(store._signal.notify)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self, *, state_change: bool = True) -> AsyncIterator[Conn]:
        async with self._db.transaction() as db:
            yield db
            if state_change:  # bumped in the same transaction, so other processes see the change
                await db.execute(q.BUMP_STATE)
        if state_change:
            self._signal.notify()

    # -- versions and serving --------------------------------------------------------------------

    async def register(self, version: ModelVersion, salt: str, change: NewChange) -> tuple[ModelVersion, bool]:
        async with self._transaction(state_change=False) as db:  # a version that exists changes nothing
            state = await _load(db, version.model)
            if state is None:
                await db.execute(q.INSERT_MODEL, (version.model, salt, to_text(change.at)))
                state = await _load(db, version.model)
                assert state is not None
            elif (existing := state.version(version.version)) is not None:
                return existing, False
            await db.execute(
                q.INSERT_VERSION,
                (
                    version.model,
                    version.version,
                    version.model,
                    version.endpoint,
                    canonical_json(version.metadata),
                    canonical_json(version.lineage),
                    to_text(version.registered_at),
                    version.registered_by,
                    version.idempotency_key,
                ),
            )
            written = await _append(db, version.model, change, ChangeStatus.APPLIED, state.serving)
            await _chain(db, EventKind.MODEL_REGISTERED, version.model, change=written, version=version)
            await db.execute(q.BUMP_STATE)
        self._signal.notify()
        return version, True

    async def get_model(self, name: str) -> ModelState | None:
        if "\x00" in name:  # no name holds one (PostgreSQL cannot even be asked): unknown, as on every engine
            return None
        return await self._db.reading(lambda db: _load(db, name))

    async def list_models(self) -> list[ModelState]:
        async def states(db: Conn) -> list[ModelState]:
            rows = await (await db.execute(q.SELECT_MODELS)).fetchall()
            return [await _state_from_row(db, row) for row in rows]

        return await self._db.reading(states)

    async def apply_now(self, name: str, change: NewChange, decide: Decide) -> ModelChange:
        async with self._transaction() as db:
            state = await _load(db, name)
            if state is None:
                raise NotFound(f"no model named {name!r}; list_models shows the registered models")
            written = await _append(db, name, change, ChangeStatus.APPLIED, decide(state))
            await _chain(db, EventKind.MODEL_CHANGED, name, change=written)
        return written

    async def add_pending(self, name: str, change: NewChange) -> ModelChange:
        async with self._transaction() as db:
            if await _load(db, name) is None:
                raise NotFound(f"no model named {name!r}; list_models shows the registered models")
            written = await _append(db, name, change, ChangeStatus.PENDING, None)
            await _chain(db, EventKind.MODEL_CHANGED, name, change=written)
        return written

    async def settle(self, seq: int, at: datetime, decide: Settle) -> ModelChange:
        async with self._transaction() as db:
            current = await _change(db, seq)
            if current is None:
                raise NotFound(f"no model change {seq}")
            if current.status is not ChangeStatus.PENDING:
                raise Conflict(f"model change {seq} is already {current.status}")
            state = await _load(db, current.model)
            assert state is not None
            settlement = decide(state, current)
            serving = settlement.serving
            status = ChangeStatus.DROPPED if serving is None else ChangeStatus.APPLIED
            await db.execute(
                q.SETTLE_CHANGE, (status.value, to_text(at), settlement.outcome, *_serving_columns(serving), seq)
            )
            if serving is not None:
                await _set_serving(db, current.model, serving, seq)
            settled = await _change(db, seq)
            assert settled is not None
            await _chain(db, EventKind.MODEL_SETTLED, current.model, change=settled)
        return settled

    async def pending_changes(self, name: str | None = None) -> list[ModelChange]:
        sql, params = (q.SELECT_PENDING, ()) if name is None else (q.SELECT_MODEL_PENDING, (name,))
        return [_change_from_row(row) for row in await self._db.read(sql, params)]

    async def history(self, name: str) -> list[ModelChange]:
        return [_change_from_row(row) for row in await self._db.read(q.SELECT_HISTORY, (name,))]

    async def get_change(self, seq: int) -> ModelChange | None:
        rows = await self._db.read(q.SELECT_CHANGE, (seq,))
        return _change_from_row(rows[0]) if rows else None

    # -- telemetry -------------------------------------------------------------------------------

    async def record_inferences(self, items: Sequence[Inference]) -> None:
        if not items:
            return
        async with self._db.transaction(notify=None) as db, db.cursor() as cur:
            await cur.executemany(
                q.UPSERT_MINUTE,
                [
                    (m, v, minute, s.count, s.errors, s.latency_sum, s.confidence_sum, s.confidence_count)
                    for (m, v, minute), s in minute_sums(items).items()
                ],
            )
            for (model, version, period), group in by_period(items).items():
                row = await (await db.execute(q.SELECT_SEEN, (model, version, period))).fetchone()
                if row is None:  # a new period: drop the reservoirs that have aged out
                    await db.execute(q.PRUNE_SAMPLES, (model, version, period - RETENTION_PERIODS))
                    await db.execute(q.PRUNE_RESERVOIRS, (model, version, period - RETENTION_PERIODS))
                seen, writes = reservoir_writes(row[0] if row else 0, group, self._rng)
                await db.execute(q.UPSERT_SEEN, (model, version, period, seen))
                samples = [
                    (model, version, period, slot, minute, latency) for slot, (minute, latency) in writes.items()
                ]
                if samples:
                    await cur.executemany(q.UPSERT_SAMPLE, samples)

    async def telemetry(self, name: str, since: datetime, until: datetime) -> list[VersionTelemetry]:
        first, last = minute_of(since), minute_of(until)
        versions = [row[0] for row in await self._db.read(q.TELEMETRY_VERSIONS, (name,))]
        result = []
        for version in versions:
            sums = (await self._db.read(q.SUM_MINUTES, (name, version, first, last)))[0]
            if sums[0] == 0:
                continue
            params = (name, version, period_of(first), period_of(last), first, last)
            kept = (await self._db.read(q.COUNT_SAMPLES, params))[0]
            threshold = thinning_threshold(kept[0])
            rows = await self._db.read(q.SELECT_SAMPLES, (*params, threshold))
            result.append(
                VersionTelemetry(
                    version=version,
                    count=sums[1],
                    errors=sums[2],
                    latency_sum=sums[3],
                    confidence_sum=sums[4],
                    confidence_count=sums[5],
                    samples=tuple((row[0], inclusion_probability(row[1])) for row in rows),
                )
            )
        return result

    async def inference_totals(self) -> list[InferenceTotals]:
        return inference_totals(await self._db.read(q.MODEL_COUNTS))

    async def guard_action_totals(self) -> dict[str, int]:
        return {str(model): int(n) for model, n in await self._db.read(q.GUARD_TOTALS)}

    # -- change notification ---------------------------------------------------------------------

    async def state_version(self) -> int:
        return int((await self._db.read(q.STATE_VERSION))[0][0])

    async def change_token(self) -> tuple[int, int]:
        return self._signal.generation, await self.state_version()

    async def wait_for_change(self, token: object, timeout: float) -> None:
        assert isinstance(token, tuple)
        generation, version = token

        async def changed_elsewhere() -> bool:
            return bool(await self.state_version() != version)

        await self._signal.wait(
            generation, timeout, changed_elsewhere=changed_elsewhere, poll_interval=self._poll_interval
        )


async def _load(db: Conn, name: str) -> ModelState | None:
    row = await (await db.execute(q.SELECT_MODEL, (name,))).fetchone()
    return await _state_from_row(db, row) if row else None


async def _state_from_row(db: Conn, row: Sequence[Any]) -> ModelState:
    rows = await (await db.execute(q.SELECT_VERSIONS, (row[0],))).fetchall()
    versions = tuple(
        ModelVersion(
            model=v[0],
            version=v[1],
            endpoint=v[2],
            metadata=json.loads(v[3]),
            lineage=json.loads(v[4]),
            registered_at=from_text(v[5]),
            registered_by=v[6],
            idempotency_key=v[7],
        )
        for v in rows
    )
    return ModelState(
        name=row[0],
        salt=row[1],
        created_at=from_text(row[2]),
        serving=Serving(production=row[3], previous=row[4], weights=json.loads(row[5])),
        revision=row[6],
        versions=versions,
    )


def _serving_columns(serving: Serving | None) -> tuple[Any, Any, Any]:
    if serving is None:
        return None, None, None
    return serving.production, serving.previous, canonical_json(dict(serving.weights))


async def _set_serving(db: Conn, name: str, serving: Serving, revision: int) -> None:
    await db.execute(q.UPDATE_SERVING, (*_serving_columns(serving), revision, name))


async def _append(db: Conn, name: str, new: NewChange, status: ChangeStatus, serving: Serving | None) -> ModelChange:
    applied = status is ChangeStatus.APPLIED
    if new.request_id is not None and await (await db.execute(q.LINKED_CHANGE, (new.request_id,))).fetchone():
        raise Conflict(f"approval request {new.request_id} is already linked to a model change")
    inserted = await (
        await db.execute(
            q.INSERT_CHANGE,
            (
                name,
                new.kind.value,
                status.value,
                to_text(new.at),
                new.requested_by,
                new.reason,
                canonical_json(new.payload),
                new.request_id,
                to_text(new.at) if applied else None,
                new.outcome if applied else None,
                *_serving_columns(serving),
            ),
        )
    ).fetchone()
    assert inserted is not None
    seq = int(inserted[0])
    if serving is not None:
        await _set_serving(db, name, serving, seq)
    change = await _change(db, seq)
    assert change is not None
    return change


async def _chain(
    db: Conn, kind: EventKind, name: str, *, change: ModelChange, version: ModelVersion | None = None
) -> None:
    """Append the transaction's event (the rows it wrote, as images) to the audit chain, in the transaction."""
    state = await _load(db, name)
    assert state is not None
    await _append_event(db, model_event(kind, state, change=change, version=version))


async def _append_event(db: Conn, new: NewEvent) -> None:
    """Chain ``new`` after the newest event; the writers' lock is held, so the chain cannot fork."""
    last = await (await db.execute(LAST_EVENT)).fetchone()
    seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
    await db.execute(INSERT_EVENT, EncodedEvent.of(new).row(seq + 1, prev_hash))


async def _change(db: Conn, seq: int) -> ModelChange | None:
    row = await (await db.execute(q.SELECT_CHANGE, (seq,))).fetchone()
    return _change_from_row(row) if row else None


def _change_from_row(row: Sequence[Any]) -> ModelChange:
    return ModelChange(
        seq=row[0],
        model=row[1],
        kind=ChangeKind(row[2]),
        status=ChangeStatus(row[3]),
        requested_at=from_text(row[4]),
        requested_by=row[5],
        reason=row[6],
        payload=json.loads(row[7]),
        request_id=row[8],
        settled_at=from_text(row[9]) if row[9] else None,
        outcome=row[10],
        serving=Serving(production=row[11], previous=row[12], weights=json.loads(row[13])) if row[13] else None,
    )
