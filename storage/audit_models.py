"""The model plane in the audit chain: row images written with every change, replayed and compared.

Every transaction that changes a model's versions, serving state or changes appends one event whose data holds
the images of the rows it wrote (``models``, ``model_versions``, ``model_changes``), column by column. Replaying
the events gives each row as signoff last wrote it; ``compare`` reads the rows as they are and names the first
column that differs, a row no event wrote, or an event whose row is gone. Telemetry (minutes, reservoirs,
samples) and the ``model_state`` change counter are not in the chain: they are measurements and a cache key,
not decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from signoff.storage.audit_requests import Finding
from signoff.storage.models.records import ModelChange, ModelState, ModelVersion
from signoff.storage.models.store import ModelStore
from signoff.storage.records import Event, EventKind, NewEvent
from signoff.storage.timefmt import to_text


def subject(model: str) -> str:
    """The ``request_id`` of a model's events: never an approval request's id (those start ``req_``)."""
    return f"model:{model}"


def model_image(state: ModelState) -> dict[str, Any]:
    serving = state.serving
    return {
        "name": state.name,
        "salt": state.salt,
        "created_at": to_text(state.created_at),
        "production": serving.production,
        "previous": serving.previous,
        "weights": dict(serving.weights),
        "revision": state.revision,
    }


def version_image(version: ModelVersion, seq: int) -> dict[str, Any]:
    return {
        "model": version.model,
        "version": version.version,
        "seq": seq,  #: its place in registration order (what routing orders arms by)
        "endpoint": version.endpoint,
        "metadata": dict(version.metadata),
        "lineage": dict(version.lineage),
        "registered_at": to_text(version.registered_at),
        "registered_by": version.registered_by,
        "idempotency_key": version.idempotency_key,
    }


def change_image(change: ModelChange) -> dict[str, Any]:
    serving = change.serving
    return {
        "seq": change.seq,
        "model": change.model,
        "kind": change.kind.value,
        "status": change.status.value,
        "requested_at": to_text(change.requested_at),
        "requested_by": change.requested_by,
        "reason": change.reason,
        "payload": dict(change.payload),
        "request_id": change.request_id,
        "settled_at": to_text(change.settled_at) if change.settled_at else None,
        "outcome": change.outcome,
        "production": serving.production if serving else None,
        "previous": serving.previous if serving else None,
        "weights": dict(serving.weights) if serving else None,
    }


def model_event(
    kind: EventKind,
    state: ModelState,
    *,
    change: ModelChange | None = None,
    version: ModelVersion | None = None,
) -> NewEvent:
    """The event for one transaction on ``state.name``: the model row after it, and the rows it wrote."""
    data: dict[str, Any] = {"model": model_image(state)}
    if version is not None:
        data["version"] = version_image(version, [v.version for v in state.versions].index(version.version))
    if change is not None:
        data["change"] = change_image(change)
    at = (change.settled_at or change.requested_at) if change is not None else state.created_at
    return NewEvent(kind=kind, request_id=subject(state.name), at=at, data=data)


def baseline_event(state: ModelState, changes: list[ModelChange], at: datetime) -> NewEvent:
    """The state found when the model plane entered the chain (an upgrade): adopted, not checked."""
    return NewEvent(
        kind=EventKind.MODEL_BASELINE,
        request_id=subject(state.name),
        at=at,
        data={
            "model": model_image(state),
            "versions": [version_image(v, i) for i, v in enumerate(state.versions)],
            "changes": [change_image(c) for c in changes],
        },
    )


@dataclass(slots=True)
class ModelReplay:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    baselines: list[int] = field(default_factory=list)  #: seqs of baseline events (state adopted unchecked)

    def apply(self, event: Event) -> None:
        data = event.data
        if event.kind is EventKind.MODEL_BASELINE:
            self.baselines.append(event.seq)
        if (model := data.get("model")) is not None:
            self.models[str(model["name"])] = dict(model)
        for version in [data["version"]] if "version" in data else data.get("versions", []):
            self.versions[(str(version["model"]), str(version["version"]))] = dict(version)
        for change in [data["change"]] if "change" in data else data.get("changes", []):
            self.changes[int(change["seq"])] = dict(change)


async def compare(store: ModelStore, replay: ModelReplay) -> Finding | None:
    """The first model-plane row without its event, event without its row, or column that differs from what the
    chain replays to (rows missing or added are looked for first, as they shift what the other rows say)."""
    models, versions, changes = dict(replay.models), dict(replay.versions), dict(replay.changes)
    rows: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = []
    for state in await store.list_models():
        rows.append((f"model {state.name}", model_image(state), models.pop(state.name, None), "name"))
        images = {v.version: version_image(v, seq) for seq, v in enumerate(state.versions)}
        expected = {name: versions.pop((state.name, name), None) for name in images}
        for name in sorted(images, key=lambda n: (expected[n] or {}).get("seq", len(images))):  # as registered
            rows.append((f"version {name} of model {state.name}", images[name], expected[name], "model, version"))
        for change in await store.history(state.name):
            row = f"model change {change.seq} of model {state.name}"
            rows.append((row, change_image(change), changes.pop(change.seq, None), "seq"))
    for where, _, want, key_columns in rows:
        if want is None:
            return Finding(
                row=where,
                column=key_columns,
                reason=f"no event wrote this row: it was added, or its {key_columns} changed, outside signoff",
            )
    leftovers: list[tuple[str, str, dict[Any, Any], Callable[[Any], str]]] = [
        ("name", "models", models, lambda k: f"model {k}"),
        ("model, version", "model_versions", versions, lambda k: f"version {k[1]} of model {k[0]}"),
        ("seq, model", "model_changes", changes, lambda k: f"model change {k}"),
    ]
    for key_columns, table, left, row_name in leftovers:
        for key in left:
            return Finding(
                row=row_name(key),
                column=key_columns,
                reason=f"its events have no {table} row: the row was removed, or its {key_columns} changed",
            )
    for where, image, want, _ in rows:
        if (found := _differs(where, image, want or {})) is not None:
            return found
    return None


def _differs(where: str, row: dict[str, Any], want: dict[str, Any]) -> Finding | None:
    for column, value in row.items():
        if value != want.get(column):
            reason = f"its row says {value!r} but its events say {want.get(column)!r}"
            return Finding(row=where, column=column, reason=reason)
    return None
