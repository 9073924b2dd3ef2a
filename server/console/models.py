"""The Models pages (read-mostly): each model's versions, aliases, traffic split, recent stats, canary verdict,
the changes waiting for approval (each a request, decided on its own page like any other) and its history."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from signoff.server.console import present
from signoff.server.console.core import Console, redirect
from signoff.storage import ModelChange, NotFound, SignoffError
from signoff.tools.models.service import ModelService, Overview
from signoff.tools.models.stats import VersionStats
from signoff.tools.models.views import ModelView, traffic

STATS_WINDOW_SECONDS = 3600  #: the "recent" of recent stats: the last hour, like model_stats' default
HISTORY_SHOWN = 100  #: the newest changes shown on a model's page; `signoff` model_history has them all


def model_url(name: str) -> str:
    return "/models/" + quote(name, safe="")


async def index(console: Console, request: Request) -> Response:
    session = console.signed_in(request)
    if session is None:
        return redirect("/sign-in")
    models = console.models
    overviews = await models.overviews() if models is not None else []
    rows = [_summary(o) for o in sorted(overviews, key=lambda o: o.state.name)]
    return console.page("models.html", session=session, rows=rows, plane=models is not None)


async def show(console: Console, request: Request) -> Response:
    session = console.signed_in(request)
    if session is None:
        return redirect("/sign-in")
    name = request.path_params["name"]
    models = console.models
    if models is None:
        return console.page("models.html", 404, session=session, rows=[], plane=False)
    try:
        overview = await models.overview(name)
        history = await models.history(name)
    except NotFound:
        return console.page("model.html", 404, session=session, m=None, model_name=present.text(name))
    view = ModelView.of(overview)
    stats = await models.telemetry.stats(name, STATS_WINDOW_SECONDS, models.settings.guard_min_samples)
    m: dict[str, Any] = {
        **_summary(overview),
        "message": view.message,
        "versions": [
            {
                "version": present.text(v.version),
                "endpoint": present.text(v.endpoint),
                "aliases": ", ".join(v.aliases) or "-",
                "traffic": f"{v.traffic_percent:g}%",
                "registered": present.moment(v.registered_at),
                "registered_by": present.text(v.registered_by) or "-",
                "metadata": present.pretty(v.metadata) if v.metadata else "",
            }
            for v in view.versions
        ],
        "stats": [_stats(s) for s in stats.versions],
        "since": present.moment(stats.since),
        "min_samples": stats.min_samples,
        "canaries": await _canaries(models, view),
        "pending": [_change(c) for c in overview.pending],
        "history": [_change(c) for c in reversed(history.changes[-HISTORY_SHOWN:])],
        "history_total": len(history.changes),
    }
    return console.page("model.html", session=session, m=m, model_name=m["name"])


def _summary(overview: Overview) -> dict[str, Any]:
    view = ModelView.of(overview)
    return {
        "name": present.text(view.name),
        "url": model_url(view.name),
        "production": present.text(view.production) or "-",
        "previous": present.text(view.previous) or "-",
        "rollout": view.rollout.replace("_", " "),
        "traffic": ", ".join(f"{present.text(a.version)} {a.percent:g}%" for a in view.traffic) or "no traffic",
        "versions_count": len(view.versions),
        "pending_count": len(view.pending),
    }


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def _stats(s: VersionStats) -> dict[str, Any]:
    interval = s.error_rate_ci95
    return {
        "version": present.text(s.version),
        "count": s.count,
        "errors": s.errors,
        "error_rate": _number(s.error_rate, ".2%"),
        "ci95": "-" if interval is None else f"{interval[0]:.2%} to {interval[1]:.2%}",
        "p50": _number(s.latency_p50_ms, ".1f"),
        "p95": _number(s.latency_p95_ms, ".1f"),
        "confidence": _number(s.mean_confidence, ".2f"),
        "enough": s.enough_samples,
    }


async def _canaries(models: ModelService, view: ModelView) -> list[dict[str, Any]]:
    """The verdict of each canary arm against production, as ``analyze_canary`` gives it (limits as configured)."""
    if view.production is None:
        return []
    found = []
    for arm in view.traffic:
        if arm.arm != "canary":
            continue
        try:
            report = await models.telemetry.analyze(
                view.name,
                view.production,
                arm.version,
                min_samples=models.settings.guard_min_samples,
                window_seconds=STATS_WINDOW_SECONDS,
            )
        except SignoffError as exc:  # e.g. the split changed between the two reads
            found.append({"version": present.text(arm.version), "verdict": "unknown", "detail": [exc.message]})
            continue
        result = report.result
        found.append(
            {
                "version": present.text(arm.version),
                "percent": f"{arm.percent:g}%",
                "verdict": result.verdict.value.replace("_", " "),
                "detail": [present.text(f"{m.metric}: {m.verdict.value} ({m.detail})") for m in result.metrics],
            }
        )
    return found


def _change(change: ModelChange) -> dict[str, Any]:
    serving = change.serving
    return {
        "seq": change.seq,
        "kind": change.kind.value,
        "status": change.status.value,
        "requested_by": present.text(change.requested_by) or "-",
        "requested_at": present.moment(change.requested_at),
        "reason": present.text(change.reason),
        "payload": present.pretty(dict(change.payload)),
        "request_id": change.request_id,
        "request_url": f"/requests/{quote(change.request_id, safe='')}" if change.request_id else None,
        "outcome": present.text(change.outcome) or "",
        "settled_at": present.moment(change.settled_at) if change.settled_at else "",
        "after": ", ".join(f"{present.text(v)} {pct:g}%" for v, pct in traffic(serving).items()) if serving else "",
    }
