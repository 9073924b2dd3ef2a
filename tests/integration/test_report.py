"""`signoff report`: the numbers in the HTML, Markdown and JSON reports are the database's."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.integration.support import base_env, signoff
from tests.rows import query

CONFIG = """
[[rules]]
name = "payments need people"
outcome = "review"
action = "payments.*"

[[rules]]
name = "deploys need two"
outcome = "review"
action = "deploy.*"
approvals_required = 2

[[rules]]
name = "never drop"
outcome = "reject"
action = "db.drop*"
"""
HOSTILE_AGENT = "<script>alert(1)</script>\u202e"


async def history(db: Path) -> None:
    store = await SqliteStore.open(db)
    clock = FakeClock()
    service = ApprovalService(store, Policy(parse_policy_config(CONFIG)), clock)

    async def ask(action: str, confidence: float | None = None, expires: int | None = None, agent: str = "bot") -> str:
        draft = Draft(
            action=action,
            summary=action,
            payload={"a": 1},
            confidence=confidence,
            agent_id=agent,
            expires_in_seconds=expires,
        )
        return (await service.request_approval(draft)).id

    try:
        await ask("payments.before")  # made before the period
        clock.advance(3600)
        confident = await ask("payments.transfer", 0.95)
        unsure = await ask("payments.transfer", 0.5, agent=HOSTILE_AGENT)
        deploy = await ask("deploy.web", expires=86_400)
        await ask("db.drop_users")  # rejected by the policy
        await ask("email.send", 0.99)  # approved by the policy
        await ask("payments.refund", expires=60)
        await ask("payments.refund")  # stays pending
        clock.advance(30)
        await service.vote(confident, "alice", Verdict.REJECT, "no")  # an override of a confident agent
        clock.advance(90)
        await service.vote(unsure, "alice", Verdict.APPROVE, None)
        await service.expire_due()
        clock.advance(4000)
        await service.vote(deploy, "alice", Verdict.APPROVE, None)
        await service.vote(deploy, "bob", Verdict.APPROVE, None)  # a quorum decision, slower than the SLA
        clock.advance(3600)
        await ask("payments.after")  # made after the period
    finally:
        await store.close()


class Cells(HTMLParser):
    """The text of every element with an id, and the tables' rows."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self._open: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self._open = dict(attrs).get("id") or self._open

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "p"):
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.by_id[self._open] = self.by_id.get(self._open, "") + data


async def test_the_report_shows_the_databases_numbers(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    await history(db)
    env = base_env(db)
    period = ("--since", "2026-01-01T00:30:00", "--until", "2026-01-01T03:00:00")
    ran = await signoff(env, "report", *period, "--format", "json")
    assert ran.returncode == 0, ran
    report = ran.json()

    window = "created_at >= '2026-01-01T00:30:00' AND created_at < '2026-01-01T03:00:00'"
    by_status = dict(query(db, f"SELECT status, count(*) FROM requests WHERE {window} GROUP BY status"))
    assert report["requests"]["by_status"] == by_status
    assert by_status == {"approved": 3, "rejected": 2, "expired": 1, "pending": 1}
    assert report["requests"]["total"] == sum(by_status.values()) == 7
    by_action = dict(query(db, f"SELECT action, count(*) FROM requests WHERE {window} GROUP BY action"))
    assert report["requests"]["by_action"] == by_action
    people = query(
        db,
        "SELECT count(*), sum(status = 'approved'), sum(status = 'rejected'), sum(approvals_required > 1),"
        " sum(status = 'rejected' AND confidence >= 0.85),"
        " sum((julianday(decided_at) - julianday(created_at)) * 86400 > 3600)"
        f" FROM requests WHERE decided_by = 'human' AND {window}",
    )[0]
    numbers = report["people"]
    assert (
        numbers["decisions"],
        numbers["approved"],
        numbers["rejected"],
        numbers["quorum_decisions"],
        numbers["overrides"],
        numbers["sla_breaches"],
    ) == people
    assert people == (3, 2, 1, 1, 1, 1)
    assert numbers["decision_seconds"] == {"p50": 120.0, "p90": 4120.0, "p99": 4120.0}  # 30 s, 120 s, 4120 s
    votes = query(db, "SELECT reviewer, verdict, count(*) FROM votes GROUP BY 1, 2")
    assert report["reviewers"] == {"alice": {"approve": 2, "reject": 1}, "bob": {"approve": 1, "reject": 0}}
    assert sorted(votes) == [("alice", "approve", 2), ("alice", "reject", 1), ("bob", "approve", 1)]
    assert report["expired"] == 1
    head = query(db, "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")[0]
    [(events,)] = query(db, "SELECT count(*) FROM events")
    assert report["audit"] == {"ok": True, "events_checked": events, "head": f"{head[0]}:{head[1]}", "problem": None}

    out = tmp_path / "report.html"
    ran = await signoff(env, "report", *period, "--output", str(out))
    assert ran.returncode == 0, ran
    page = out.read_text()
    cells = Cells()
    cells.feed(page)
    assert cells.scripts == 0  # nothing runs: the agent's <script> is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    shown = {k: cells.by_id[k].strip() for k in ("total", "people-decisions", "people-rejected", "overrides", "quorum")}
    assert shown == {"total": "7", "people-decisions": "3", "people-rejected": "1", "overrides": "1", "quorum": "1"}
    assert cells.by_id["decision-seconds"].split() == ["120.0", "/", "4120.0", "/", "4120.0"]
    assert f"{head[0]}:{head[1]}" in cells.by_id["audit"]

    markdown = await signoff(env, "report", *period, "--format", "md")
    assert "| requests | 7 |" in markdown.stdout and "| people: overrides | 1 |" in markdown.stdout
    assert "\u202e" not in markdown.stdout
