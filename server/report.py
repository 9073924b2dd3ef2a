"""``signoff report``: an audit report for a compliance period, as one self-contained HTML file, Markdown or JSON.

The numbers are computed from the requests made in the period (``[since, until)``, by creation time) and the
alerts fired in it; the audit chain is verified whole, and its head printed, when the report is made.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import jinja2

from signoff.storage import ApprovalRequest, DecidedBy, RequestQuery, Status, Store
from signoff.storage.alerts import Episode
from signoff.storage.audit import ChainReport
from signoff.storage.records import human_outcomes_of
from signoff.storage.text import visible

PAGE = 500
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
HIGH_CONFIDENCE = 0.85  #: a person rejecting a request the agent was at least this sure of overrides the model


async def requests_in(store: Store, since: datetime | None, until: datetime | None) -> list[ApprovalRequest]:
    """Every request made in ``[since, until)``, oldest first."""
    found: list[ApprovalRequest] = []
    cursor = None
    while True:
        page = await store.list_requests(RequestQuery(since=since, until=until, limit=PAGE, before=cursor))
        found += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return sorted(found, key=lambda r: (r.created_at, r.id))


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least ``share`` of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _counts(values: Iterable[str]) -> dict[str, int]:
    """Counts, largest first, then by name."""
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def build(
    requests: Sequence[ApprovalRequest],
    episodes: Sequence[Episode],
    audit: ChainReport,
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    sla_seconds: float,
) -> dict[str, Any]:
    """The report's numbers (what the JSON format prints; the HTML and Markdown show the same)."""
    by_people = [r for r in requests if r.decided_by is DecidedBy.HUMAN and r.decided_at is not None]
    seconds = [(r.decided_at - r.created_at).total_seconds() for r in by_people if r.decided_at]
    reviewers: dict[str, dict[str, int]] = {}
    for r in requests:
        for vote in r.votes:
            tally = reviewers.setdefault(vote.reviewer, {"approve": 0, "reject": 0})
            tally[vote.verdict.value] += 1
    overrides = [
        r.id
        for r in by_people
        if r.status is Status.REJECTED and r.confidence is not None and r.confidence >= HIGH_CONFIDENCE
    ]
    fired = [e for e in episodes if (since is None or e.fired_at >= since) and (until is None or e.fired_at < until)]
    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "generated_at": now.isoformat(),
        },
        "requests": {
            "total": len(requests),
            "by_status": _counts(r.status.value for r in requests),
            "by_decided_by": _counts(r.decided_by.value if r.decided_by else "undecided" for r in requests),
            "by_action": _counts(r.action for r in requests),
            "by_agent": _counts(r.agent_id or "(none)" for r in requests),
        },
        "people": {
            "decisions": len(by_people),
            "approved": sum(r.status is Status.APPROVED for r in by_people),
            "rejected": sum(r.status is Status.REJECTED for r in by_people),
            "decision_seconds": {
                q: percentile(seconds, share) for q, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
            },
            "sla_seconds": sla_seconds,
            "sla_breaches": sum(s > sla_seconds for s in seconds),
            "quorum_decisions": sum(r.approvals_required > 1 for r in by_people),
            "overrides": len(overrides),
            "override_ids": overrides[:100],
        },
        "escalations": sum(r.escalated_at is not None for r in requests),
        "expired": sum(r.status is Status.EXPIRED for r in requests),
        "reviewers": dict(sorted(reviewers.items())),
        "models": _model_outcomes(requests),
        "alerts": [
            {
                "rule": e.rule,
                "fired_at": e.fired_at.isoformat(),
                "resolved_at": e.resolved_at.isoformat() if e.resolved_at else None,
                "message": e.message,
            }
            for e in fired
        ],
        "audit": {
            "ok": audit.ok,
            "events_checked": audit.events_checked,
            "head": f"{audit.head_seq}:{audit.head_hash}",
            "problem": None if audit.ok else (audit.reason or "the chain does not verify"),
        },
    }


def _model_outcomes(requests: Sequence[ApprovalRequest]) -> list[dict[str, Any]]:
    """Per model version the agents linked: its requests, how many went to people, and what people made of them."""
    rows = []
    for model in sorted({r.model for r in requests if r.model is not None}):
        for version, o in sorted(human_outcomes_of(requests, model).items()):
            rows.append(
                {
                    "model": model,
                    "version": version,
                    "requests": o.requests,
                    "to_people": o.to_people,
                    "decided_by_people": o.decided_by_people,
                    "rejected": o.rejected,
                    "changed": o.changed,
                }
            )
    return rows


def _bars(counts: dict[str, int], width: int = 360) -> list[dict[str, Any]]:
    """Horizontal bars for an inline SVG chart: label, count, and the bar's length in pixels."""
    top = max(counts.values(), default=0) or 1
    return [
        {"label": k, "count": v, "length": round(width * v / top, 1), "y": i * 22}
        for i, (k, v) in enumerate(counts.items())
    ]


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_HTML = _ENV.from_string(resources.files(__package__).joinpath("templates/report.html").read_text("utf-8"))


def as_html(report: dict[str, Any]) -> str:
    """One self-contained page (no script, no external resource; charts are inline SVG); every string escaped."""
    return _HTML.render(r=report, chart=_bars)


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2) + "\n"


def as_markdown(report: dict[str, Any]) -> str:
    def cell(value: object) -> str:
        return visible(str(value)).replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;")

    people, lines = report["people"], ["# signoff audit report", ""]
    period = report["period"]
    lines += [f"Requests made from {period['since'] or 'the beginning'} until {period['until'] or 'now'}.", ""]
    lines += ["| | |", "|---|---|", f"| requests | {report['requests']['total']} |"]
    for key in ("decisions", "approved", "rejected", "sla_breaches", "quorum_decisions", "overrides"):
        lines.append(f"| people: {key.replace('_', ' ')} | {people[key]} |")
    for q, value in people["decision_seconds"].items():
        lines.append(f"| people's decision time {q} (s) | {'-' if value is None else f'{value:.1f}'} |")
    lines += [f"| escalations | {report['escalations']} |", f"| expired | {report['expired']} |", ""]
    for title, key in (
        ("outcome", "by_status"),
        ("decided by", "by_decided_by"),
        ("action", "by_action"),
        ("agent", "by_agent"),
    ):
        lines += [f"## By {title}", "", f"| {title} | requests |", "|---|---|"]
        lines += [f"| {cell(k)} | {v} |" for k, v in report["requests"][key].items()]
        lines.append("")
    lines += ["## Reviewers", "", "| reviewer | approved | rejected |", "|---|---|---|"]
    lines += [f"| {cell(k)} | {t['approve']} | {t['reject']} |" for k, t in report["reviewers"].items()]
    lines += ["", "## Model versions", "", "| model | version | requests | to people | rejected | changed |"]
    lines.append("|---|---|---|---|---|---|")
    lines += [
        f"| {cell(m['model'])} | {cell(m['version'])} | {m['requests']} | {m['to_people']} | {m['rejected']} |"
        f" {m['changed']} |"
        for m in report["models"]
    ]
    lines += ["", "## Alerts", ""]
    lines += [f"- {a['rule']}: fired {a['fired_at']}, {a['resolved_at'] or 'firing'}" for a in report["alerts"]] or [
        "none"
    ]
    audit = report["audit"]
    verdict = (
        f"verified, {audit['events_checked']} events, head `{audit['head']}`"
        if audit["ok"]
        else f"FAILED: {cell(audit['problem'])}"
    )
    lines += ["", "## Audit log", "", verdict, ""]
    return "\n".join(lines)
