"""What a reviewer or an operator sees at the terminal: the real ``signoff`` console script in its own process."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from signoff.server.render import HISTORY_FIELDS
from signoff.storage import Priority, Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals import receipts
from signoff.tools.approvals.service import ApprovalService
from tests.factories import add
from tests.integration.support import REPO, SIGNOFF, signoff

NOW = datetime.now(UTC).replace(microsecond=0)
KEY = "r" * 40


async def seed(db: Path, *specs: dict[str, Any]) -> None:
    """Requests as ``tests.factories`` makes them, deadlines relative to now (so none is overdue)."""
    store = await SqliteStore.open(db)
    try:
        for index, spec in enumerate(specs):
            fields = {"created_at": NOW - timedelta(minutes=60 - index), "expires_at": NOW + timedelta(hours=1)}
            await add(store, **{**fields, **spec})
    finally:
        await store.close()


async def approve(db: Path, request_id: str, reviewer: str, comment: str) -> None:
    store = await SqliteStore.open(db)
    try:
        await ApprovalService(store).vote(request_id, reviewer, Verdict.APPROVE, comment)
    finally:
        await store.close()


async def test_init_creates_the_database_and_says_where(db: Path, env: dict[str, str]) -> None:
    made = await signoff(env, "init")
    assert made.returncode == 0 and f"database created: {db} (from SIGNOFF_DB)" in made.stdout, made
    again = await signoff(env, "init", "--db", str(db))
    assert again.returncode == 0 and f"database up to date: {db} (from --db)" in again.stdout, again
    listed = await signoff(env, "review", "list")
    assert listed.returncode == 0 and listed.stdout.strip() == "no requests", listed


async def test_global_options_work_before_the_command_and_each_command_takes_only_what_it_uses(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    assert (await signoff(env, "--db", str(other), "init")).returncode == 0
    await seed(other, {"id": "req_beforecommand1"})
    before = await signoff(env, "--db", str(other), "review", "list")
    assert before.returncode == 0 and "req_beforecommand1" in before.stdout, before
    assert not db.exists()

    for args in (
        ("--db", str(db), "token", "new", "--identity", "bot", "--role", "agent"),
        ("--config", "x.toml", "slack", "manifest"),
    ):
        refused = await signoff(env, *args)
        assert refused.returncode == 2 and "does not use --" in refused.stderr, refused
    after = await signoff(env, "token", "new", "--identity", "bot", "--role", "agent", "--db", str(db))
    assert after.returncode == 2 and "unrecognized arguments: --db" in after.stderr, after
    for command in (("token", "new"), ("slack", "manifest")):
        text = (await signoff(env, *command, "--help")).stdout
        assert "--db" not in text and "--config" not in text, text
    assert "streamable HTTP" in (await signoff(env, "serve", "--help")).stdout


async def test_review_list_sorts_by_priority_then_deadline_and_shows_both(db: Path, env: dict[str, str]) -> None:
    await seed(
        db,
        {"id": "req_low0000000001", "priority": Priority.LOW, "expires_at": NOW + timedelta(minutes=5)},
        {"id": "req_urgentlater01", "priority": Priority.URGENT, "expires_at": NOW + timedelta(hours=3)},
        {"id": "req_normal0000001", "priority": Priority.NORMAL, "expires_at": NOW + timedelta(minutes=10)},
        {"id": "req_urgentsoon001", "priority": Priority.URGENT, "expires_at": NOW + timedelta(hours=2)},
        {"id": "req_approved00001", "status": Status.APPROVED, "decided_at": NOW},
    )
    listed = await signoff(env, "review", "list")
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "PRIORITY", "DEADLINE", "(UTC)"], listed
    assert [row.split()[:2] for row in rows] == [
        ["req_urgentsoon001", "urgent"],
        ["req_urgentlater01", "urgent"],
        ["req_normal0000001", "normal"],
        ["req_low0000000001", "low"],
    ], listed
    deadline = (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    assert deadline in rows[0], listed
    as_json = (await signoff(env, "review", "list", "--json")).json()
    assert [r["priority"] for r in as_json] == ["urgent", "urgent", "normal", "low"]


async def test_ids_are_found_by_a_unique_start_and_an_ambiguous_one_lists_the_candidates(
    db: Path, env: dict[str, str]
) -> None:
    await seed(db, {"id": "req_abcdef111111"}, {"id": "req_abcdef222222"}, {"id": "req_zyxwvu333333"})
    shown = await signoff(env, "review", "show", "req_zyxwvu")
    assert shown.returncode == 0 and "req_zyxwvu333333" in shown.stdout, shown
    labels = shown.stdout.splitlines()[:12]
    assert len({line.index(line.split()[1]) for line in labels}) == 1, shown  # every value in one column

    ambiguous = await signoff(env, "review", "approve", "req_abcdef", "--as", "alice")
    assert ambiguous.returncode == 1 and "req_abcdef111111, req_abcdef222222" in ambiguous.stderr, ambiguous
    short = await signoff(env, "review", "show", "req_zyxwv")
    assert short.returncode == 1 and "at least 6" in short.stderr, short

    voted = await signoff(env, "review", "approve", "req_abcdef2", "--as", "alice", "--comment", "ok")
    assert voted.returncode == 0 and "req_abcdef222222 is now approved" in voted.stdout, voted


async def test_history_exports_what_was_asked_and_decided_with_receipts(db: Path, env: dict[str, str]) -> None:
    await seed(
        db,
        {"id": "req_approvedbyalice", "payload": {"amount": 7}, "confidence": 0.4, "flags": ("pii",)},
        {"id": "req_stillpending001", "summary": '=HYPERLINK("http://evil")\x1b[2J', "priority": Priority.HIGH},
    )
    await approve(db, "req_approvedbyalice", "alice", "checked the invoice")
    env = {**env, "SIGNOFF_RECEIPT_KEY": KEY}

    lines = (await signoff(env, "history", "--format", "jsonl")).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [list(r) for r in records] == [list(HISTORY_FIELDS)] * 2
    pending, approved = records
    assert approved["payload"] == {"amount": 7} and approved["confidence"] == 0.4 and approved["flags"] == ["pii"]
    assert [(v["reviewer"], v["comment"]) for v in approved["votes"]] == [("alice", "checked the invoice")]
    assert approved["triggers"] and approved["priority"] == "normal" and pending["priority"] == "high"
    now = datetime.now(UTC)
    assert receipts.check(KEY.encode(), approved["receipt"], "payments.transfer", {"amount": 7}, now=now) is None
    assert pending["receipt"] is None

    as_json = await signoff(env, "history", "--json")
    assert as_json.json() == (await signoff(env, "history", "--format", "json")).json() == records

    table = list(csv.reader(io.StringIO((await signoff(env, "history", "--format", "csv")).stdout)))
    assert table[0] == list(HISTORY_FIELDS) and len(table) == 3
    row = dict(zip(table[0], table[1], strict=True))
    assert row["summary"] == '\'=HYPERLINK("http://evil")\\x1b[2J'  # not a formula, and no escape reaches a terminal
    assert json.loads(dict(zip(table[0], table[2], strict=True))["payload"]) == {"amount": 7}

    keyless = await signoff({**env, "SIGNOFF_RECEIPT_KEY": ""}, "history", "--format", "jsonl")
    assert keyless.returncode == 0 and "without receipts" in keyless.stderr, keyless
    assert all(json.loads(line)["receipt"] is None for line in keyless.stdout.splitlines())


async def test_history_filters_and_pages(db: Path, env: dict[str, str]) -> None:
    await seed(db, *[{"id": f"req_page{i:010d}", "agent_id": "etl" if i % 2 else "ops"} for i in range(7)])
    seen: list[str] = []
    args = ["history", "--agent", "ops", "--limit", "2", "--until", NOW.isoformat(), "--format", "jsonl"]
    while True:
        page = await signoff(env, *args)
        assert page.returncode == 0, page
        seen += [json.loads(line)["request_id"] for line in page.stdout.splitlines()]
        if "--cursor" not in page.stderr:
            break
        args = [*args[:9], "--cursor", page.stderr.split("--cursor ")[1].split()[0]]
    assert seen == [f"req_page{i:010d}" for i in (6, 4, 2, 0)]
    bad = await signoff(env, "history", "--cursor", "nonsense")
    assert bad.returncode == 1 and bad.stderr.startswith("error: cursor is not one"), bad


async def test_a_bad_config_file_is_reported_as_serve_reports_it(db: Path, env: dict[str, str], tmp_path: Path) -> None:
    await seed(db, {"id": "req_configcase0001"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]\nname = 'x'\n")
    for config in (bad, tmp_path / "missing.toml"):
        listed = await signoff(env, "review", "list", "--config", str(config))
        assert listed.returncode == 1 and listed.stderr.count("\n") == 1 and str(config) in listed.stderr, listed
        served = await signoff(env, "serve", "--config", str(config))
        assert served.returncode == 1 and served.stderr.splitlines()[-1] == listed.stderr.strip(), served


async def test_output_to_a_closed_pipe_ends_quietly(db: Path, env: dict[str, str]) -> None:
    await seed(db, *[{"id": f"req_pipe{i:010d}"} for i in range(3)])
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already exited: every write fails with EPIPE
    try:
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [str(SIGNOFF), "audit", "verify"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write,
                check=False,
                cwd=str(REPO),
            )
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == b"", done.stderr.decode()
