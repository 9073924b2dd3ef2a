"""``signoff export training-data``: people's decisions, one record per request, for training and evaluation.

Only requests that people decided (approved or rejected by reviewers; not the policy's decisions, not expired or
cancelled ones) are exported, oldest first (by creation time, then id), so a re-export of the same window gives the
same bytes. JSONL keeps every value exact; CSV holds nested values as compact JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from signoff.server.spreadsheet import csv_writer, json_cell, text_cell
from signoff.storage import ApprovalRequest, DecidedBy, RequestQuery, Status, Store

PAGE = 500

#: The columns, in order; the JSONL records have the same keys in the same order.
FIELDS = (
    "request_id",
    "created_at",
    "decided_at",
    "decision_seconds",
    "action",
    "summary",
    "agent_id",
    "payload",
    "payload_sha256",
    "model",
    "model_version",
    "model_decision_id",
    "confidence",
    "flags",
    "triggers",
    "trigger_kinds",
    "label",
    "approved_payload",
    "reviewers",
    "comments",
    "votes",
)


async def decided_by_people(
    store: Store, *, since: datetime | None = None, until: datetime | None = None, action: str | None = None
) -> list[ApprovalRequest]:
    """Every request people approved or rejected, made in ``[since, until)``, oldest first."""
    found: list[ApprovalRequest] = []
    for status in (Status.APPROVED, Status.REJECTED):
        cursor = None
        while True:
            query = RequestQuery(status=status, action=action, since=since, until=until, limit=PAGE, before=cursor)
            page = await store.list_requests(query)
            found += [r for r in page.items if r.decided_by is DecidedBy.HUMAN]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return sorted(found, key=lambda r: (r.created_at, r.id))


def at_path(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path in the payload (``model``, ``model.version``), or None."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def record(
    request: ApprovalRequest, *, model_path: str = "model", version_path: str = "model_version"
) -> dict[str, Any]:
    """One training record. ``label`` is the people's verdict (``approved`` or ``rejected``); ``model`` and
    ``model_version`` are the model the agent linked with request_approval, else read from the payload at the given
    paths when it names them (else null)."""
    if request.model is not None:
        model, version = request.model, request.model_version
    else:
        model, version = at_path(request.payload, model_path), at_path(request.payload, version_path)
    decided = request.decided_at
    return {
        "request_id": request.id,
        "created_at": request.created_at.isoformat(),
        "decided_at": decided.isoformat() if decided else None,
        "decision_seconds": round((decided - request.created_at).total_seconds(), 3) if decided else None,
        "action": request.action,
        "summary": request.summary,
        "agent_id": request.agent_id,
        "payload": dict(request.payload),
        "payload_sha256": request.payload_sha256 or None,  # null: [redact] masked a value (Redaction.request)
        "model": None if model is None else str(model),
        "model_version": None if version is None else str(version),
        "model_decision_id": request.model_decision_id,
        "confidence": request.confidence,
        "flags": list(request.flags),
        "triggers": [{"kind": t.kind.value, "detail": t.detail} for t in request.triggers],
        "trigger_kinds": sorted({t.kind.value for t in request.triggers}),
        "label": request.status.value,
        "approved_payload": dict(request.approved_payload) if request.approved_payload is not None else None,
        "reviewers": [v.reviewer for v in request.votes],
        "comments": [v.comment for v in request.votes if v.comment],
        "votes": [
            {"reviewer": v.reviewer, "verdict": v.verdict.value, "comment": v.comment, "at": v.at.isoformat()}
            for v in request.votes
        ],
    }


def as_jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object a line, ASCII (every other character escaped): exact values, inert in a terminal."""
    return "".join(json.dumps(r) + "\n" for r in records)


def as_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """A header and one row per record. Lists and objects are compact JSON; null is an empty cell; text is quoted,
    a cell that a spreadsheet would run as a formula with a leading ``'`` (``spreadsheet``; JSONL has the exact
    values)."""
    out = io.StringIO()
    writer = csv_writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in records:
        writer.writerow([_cell(r[name]) for name in FIELDS])
    return out.getvalue()


def _cell(value: Any) -> str | float | int:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json_cell(value)
    if isinstance(value, int | float):
        return value
    return text_cell(str(value))


def select_model(records: Sequence[dict[str, Any]], model: str | None) -> list[dict[str, Any]]:
    """The records whose model is ``model`` (``name`` or ``name@version``), or all of them."""
    if model is None:
        return list(records)
    name, _, version = model.partition("@")
    return [r for r in records if r["model"] == name and (not version or r["model_version"] == version)]
