"""An in-process ModelStore for fast tests; same contract as the SQLite one, no durability."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from signoff.storage.change_signal import ChangeSignal
from signoff.storage.errors import Conflict, NotFound
from signoff.storage.metrics_queries import InferenceTotals
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
    MinuteSums,
    by_period,
    inclusion_probability,
    minute_of,
    minute_sums,
    period_of,
    reservoir_writes,
    sample_hash,
    thinning_threshold,
)
from signoff.storage.models.store import Decide, Settle


class MemoryModelStore:
    def __init__(self, *, seed: int | None = None) -> None:
        self._models: dict[str, ModelState] = {}
        self._changes: list[ModelChange] = []
        self._minutes: dict[tuple[str, str], dict[int, MinuteSums]] = defaultdict(dict)
        self._seen: dict[tuple[str, str, int], int] = {}
        self._samples: dict[tuple[str, str, int], dict[int, tuple[int, float]]] = defaultdict(dict)
        self._rng = random.Random(seed)
        self._signal = ChangeSignal()

    async def close(self) -> None:
        pass

    # Every method runs without awaiting between its reads and writes, so each is atomic on the event loop.

    async def register(self, version: ModelVersion, salt: str, change: NewChange) -> tuple[ModelVersion, bool]:
        state = self._models.get(version.model)
        if state is not None and (existing := state.version(version.version)) is not None:
            return existing, False
        if state is None:
            state = ModelState(
                name=version.model, salt=salt, created_at=change.at, serving=Serving(), revision=0, versions=()
            )
        state = dataclasses.replace(state, versions=(*state.versions, version))
        self._models[version.model] = state
        self._append(version.model, change, ChangeStatus.APPLIED, state.serving)
        return version, True

    async def get_model(self, name: str) -> ModelState | None:
        return self._models.get(name)

    async def list_models(self) -> list[ModelState]:
        return [self._models[name] for name in sorted(self._models)]

    async def apply_now(self, name: str, change: NewChange, decide: Decide) -> ModelChange:
        state = self._models.get(name)
        if state is None:
            raise NotFound(f"no model named {name!r}; list_models shows the registered models")
        return self._append(name, change, ChangeStatus.APPLIED, decide(state))

    async def add_pending(self, name: str, change: NewChange) -> ModelChange:
        if name not in self._models:
            raise NotFound(f"no model named {name!r}; list_models shows the registered models")
        return self._append(name, change, ChangeStatus.PENDING, None)

    async def settle(self, seq: int, at: datetime, decide: Settle) -> ModelChange:
        index = seq - 1
        if not 0 <= index < len(self._changes):
            raise NotFound(f"no model change {seq}")
        current = self._changes[index]
        if current.status is not ChangeStatus.PENDING:
            raise Conflict(f"model change {seq} is already {current.status}")
        state = self._models[current.model]
        settlement = decide(state, current)
        status = ChangeStatus.DROPPED if settlement.serving is None else ChangeStatus.APPLIED
        settled = dataclasses.replace(
            current, status=status, settled_at=at, outcome=settlement.outcome, serving=settlement.serving
        )
        self._changes[index] = settled
        if settlement.serving is not None:
            self._models[current.model] = dataclasses.replace(state, serving=settlement.serving, revision=seq)
        self._signal.notify()
        return settled

    async def pending_changes(self, name: str | None = None) -> list[ModelChange]:
        return [c for c in self._changes if c.status is ChangeStatus.PENDING and (name is None or c.model == name)]

    async def history(self, name: str) -> list[ModelChange]:
        return [c for c in self._changes if c.model == name]

    async def get_change(self, seq: int) -> ModelChange | None:
        return self._changes[seq - 1] if 0 < seq <= len(self._changes) else None

    def _append(self, name: str, new: NewChange, status: ChangeStatus, serving: Serving | None) -> ModelChange:
        if new.request_id is not None and any(c.request_id == new.request_id for c in self._changes):
            raise Conflict(f"approval request {new.request_id} is already linked to a model change")
        change = ModelChange(
            seq=len(self._changes) + 1,
            model=name,
            kind=new.kind,
            status=status,
            requested_at=new.at,
            requested_by=new.requested_by,
            reason=new.reason,
            payload=new.payload,
            request_id=new.request_id,
            settled_at=new.at if status is ChangeStatus.APPLIED else None,
            outcome=new.outcome if status is ChangeStatus.APPLIED else None,
            serving=serving,
        )
        self._changes.append(change)
        if serving is not None:
            self._models[name] = dataclasses.replace(self._models[name], serving=serving, revision=change.seq)
        self._signal.notify()
        return change

    # -- telemetry -------------------------------------------------------------------------------

    async def record_inferences(self, items: Sequence[Inference]) -> None:
        for (model, version, minute), sums in minute_sums(items).items():
            total = self._minutes[(model, version)].setdefault(minute, MinuteSums())
            total.count += sums.count
            total.errors += sums.errors
            total.latency_sum += sums.latency_sum
            total.confidence_sum += sums.confidence_sum
            total.confidence_count += sums.confidence_count
        for key, group in by_period(items).items():
            if key not in self._seen:
                self._prune(key)
            self._seen[key], writes = reservoir_writes(self._seen.get(key, 0), group, self._rng)
            self._samples[key].update(writes)

    def _prune(self, key: tuple[str, str, int]) -> None:
        model, version, period = key
        for old in [k for k in self._seen if k[:2] == (model, version) and k[2] < period - RETENTION_PERIODS]:
            del self._seen[old]
            self._samples.pop(old, None)

    async def telemetry(self, name: str, since: datetime, until: datetime) -> list[VersionTelemetry]:
        first, last = minute_of(since), minute_of(until)
        result = []
        for (model, version), minutes in sorted(self._minutes.items()):
            if model != name:
                continue
            rows = [s for m, s in minutes.items() if first <= m < last]
            if not rows:
                continue
            kept = [
                (period, slot, latency)
                for period in range(period_of(first), period_of(last) + 1)
                for slot, (minute, latency) in self._samples.get((model, version, period), {}).items()
                if first <= minute < last
            ]
            threshold = thinning_threshold(len(kept))
            samples = [
                (latency, inclusion_probability(self._seen[(model, version, period)]))
                for period, slot, latency in kept
                if sample_hash(period, slot) < threshold
            ]
            result.append(
                VersionTelemetry(
                    version=version,
                    count=sum(s.count for s in rows),
                    errors=sum(s.errors for s in rows),
                    latency_sum=sum(s.latency_sum for s in rows),
                    confidence_sum=sum(s.confidence_sum for s in rows),
                    confidence_count=sum(s.confidence_count for s in rows),
                    samples=tuple(samples),
                )
            )
        return result

    # -- change notification ---------------------------------------------------------------------

    async def guard_action_totals(self) -> dict[str, int]:
        applied = [c.model for c in self._changes if c.kind is ChangeKind.GUARD and c.status is ChangeStatus.APPLIED]
        return dict(Counter(applied))

    async def inference_totals(self) -> list[InferenceTotals]:
        totals = []
        for (model, version), minutes in sorted(self._minutes.items()):
            sums = minutes.values()
            totals.append(
                InferenceTotals(
                    model=model,
                    version=version,
                    inferences=sum(s.count for s in sums),
                    errors=sum(s.errors for s in sums),
                    latency_seconds_sum=sum(s.latency_sum for s in sums) / 1000,
                )
            )
        return totals

    async def state_version(self) -> int:
        return self._signal.generation

    async def change_token(self) -> int:
        return self._signal.generation

    async def wait_for_change(self, token: object, timeout: float) -> None:
        assert isinstance(token, int)
        await self._signal.wait(token, timeout)
