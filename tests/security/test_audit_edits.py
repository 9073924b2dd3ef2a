"""Someone who owns the database file edits one column behind signoff's back: `signoff audit verify` names it.

For every column of ``requests``, ``votes`` and the model plane's tables (read from the schema, so a column added
later without audit coverage fails here), on a real SQLite file made through the real services: drop the triggers
that forbid the edit, change that one column with SQL, restore the triggers, then run the real CLI. An edited
approved request also gets no receipt from ``get_status``. Not chained, by design: telemetry (``model_minutes``,
``model_reservoirs``, ``model_samples``) and ``model_state`` (a cache counter): measurements, not decisions.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from signoff.server.app import build_server
from signoff.server.cli import main
from signoff.server.config import Settings
from signoff.storage import EventKind, NewEvent, Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import GENESIS_HASH, link
from signoff.storage.codec import event_row, request_row
from signoff.storage.migrations import available
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.tools.approvals.lifecycle import creation_events
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import load_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.models.service import ModelService
from tests.factories import T0, make_request

CONFIG = """
[[people]]
name = "alice"
aliases = ["U0ALICE"]

[[people]]
name = "bob"
aliases = ["U0BOB"]

[slack]
channel = "C0APPROVALS"
approvers = ["U0ALICE"]

[[rules]]
name = "payments need two people"
action = "payments.*"
outcome = "review"
approvals_required = 2
channel = "C0PAY"
approvers = ["U0ALICE", "U0BOB"]
escalate_after_seconds = 600
escalate_to = "S0ONCALL"
priority = "high"
"""

REQUEST_INSERT_COLUMNS = (
    "id, action, summary, payload, payload_sha256, confidence, flags, agent_id, idempotency_key, status, decided_by,"
    " triggers, approvals_required, priority, created_at, expires_at, decided_at, note, channel, approvers,"
    " escalate_at, escalate_to"
)  #: the order of ``codec.request_row``
AUDITED = ("requests", "votes", "models", "model_versions", "model_changes")
RECEIPT_KEY = "k" * 32

#: columns whose values are a closed set: the edit picks another member
CHOICES = {
    ("requests", "status"): ("approved", "rejected"),
    ("requests", "decided_by"): ("human", "policy"),
    ("requests", "priority"): ("high", "low"),
    ("votes", "verdict"): ("approve", "reject"),
    ("model_changes", "kind"): ("promote", "rollback"),
    ("model_changes", "status"): ("applied", "dropped"),
}


async def build(path: Path, config: Path) -> dict[str, Any]:
    """Requests (approved by two people, pending, approved by policy) and two models with a promotion applied
    and a traffic change pending, all through the services; returns the rows each edit targets."""
    store, model_store = await SqliteStore.open(path), await SqliteModelStore.open(path)
    try:
        approvals = ApprovalService(store, Policy(load_policy_config(config)))

        def payment(summary: str, payload: dict[str, object], key: str | None = None) -> Draft:
            return Draft(
                action="payments.transfer",
                summary=summary,
                payload=payload,
                confidence=0.3,
                flags=("pii",),
                agent_id="billing-bot",
                idempotency_key=key,
            )

        approved = await approvals.request_approval(payment("pay invoice 1", {"amount": 120, "to": "DE00"}, "inv-1"))
        pending = await approvals.request_approval(payment("pay invoice 2", {"amount": 7}))
        await approvals.request_approval(Draft(action="docs.read", summary="read", payload={"p": 1}, confidence=0.99))
        await approvals.vote(approved.id, "alice", Verdict.APPROVE, "checked", reviewer_ids=("U0ALICE",))
        assert (await approvals.vote(approved.id, "bob", Verdict.APPROVE, None)).status is Status.APPROVED

        models = ModelService(model_store, approvals)
        for model, version in (("m", "v1"), ("m", "v2"), ("n", "w1")):
            await models.register(
                model,
                version,
                f"http://{version}",
                metadata={"acc": 0.9},
                lineage={"data": "d1"},
                agent_id="ml",
                idempotency_key=f"reg-{version}",
            )
        promotion = await models.promote("m", "v1", "best offline score", agent_id="ml")
        assert promotion.request is not None
        await approvals.vote(promotion.request.id, "alice", Verdict.APPROVE, None)
        await models.settle("m")
        canary = await models.set_traffic("m", {"v1": 90, "v2": 10}, "try v2", agent_id="ml")
        assert canary.request is not None and canary.request.status is Status.PENDING
    finally:
        await model_store.close()
        await store.close()
    seq = promotion.change.seq
    return {
        # table: (the target row, how verify's message names it, before or after the edit)
        "requests": ("id = ?", (approved.id,), rf"request {approved.id}\b"),
        "votes": (
            "request_id = ? AND reviewer = ?",
            (approved.id, "alice"),
            r"vote by alice( \(edited\))? on request req_",
        ),
        "models": ("name = ?", ("m",), r"model m\b"),
        "model_versions": ("model = ? AND version = ?", ("m", "v1"), r"version v1\b"),
        "model_changes": ("seq = ?", (seq,), rf"model change ({seq}|{seq + 1000}) of model [mn]\b"),
        "approved": approved.id,
        "pending": pending.id,
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "signoff.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, config: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("original") / "signoff.db"
    targets = anyio.run(build, path, config)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path, targets


@pytest.fixture
def copy(original: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path, targets = original
    shutil.copy(path, tmp_path / "signoff.db")
    return tmp_path / "signoff.db", targets


def columns_of(table: str) -> list[str]:
    """The table's columns in a database migrated to the latest schema."""
    with closing(sqlite3.connect(":memory:")) as conn:
        for migration in available():
            conn.executescript(migration.sql)
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def edited(table: str, column: str, value: Any, targets: dict[str, Any]) -> Any:
    """A different value of the same kind, one a careless forger might write."""
    if (table, column) in CHOICES:
        return next(choice for choice in CHOICES[table, column] if choice != value)
    if (table, column) == ("votes", "request_id"):
        return targets["pending"]  # the vote moves to another request
    if column == "model" and table in ("model_versions", "model_changes"):
        return "n"  # to the other model
    if (table, column) == ("model_versions", "seq"):
        return value + 100  # first registered becomes last: the routing order of the arms changes
    if (table, column) == ("model_changes", "seq"):
        return value + 1000
    if (table, column) == ("requests", "approved_payload"):
        return json.dumps({"amount": 1_000_000, "to": "ATTACKER"})  # as if a reviewer had approved another payload
    if value is None:
        return 0.5 if column == "confidence" else "2099-01-01T00:00:00.000000Z" if column.endswith("_at") else "edit"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AssertionError(f"no edit for {table}.{column} = {value!r}")
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value + 0.01, 6)
    if re.match(r"\d{4}-\d\d-\d\dT", value):
        return "2099" + value[4:]
    if value[:1] in "[{":
        document = json.loads(value)
        if isinstance(document, dict):
            return json.dumps({**document, "edited": 1})
        item: Any = {"kind": "rule", "detail": "edited"} if column == "triggers" else "edited"
        return json.dumps([*document, item])
    return value + " (edited)"


def edit_around_triggers(path: Path, table: str, column: str, targets: dict[str, Any]) -> None:
    """Drop the table's triggers, change one column of the target row, put the triggers back."""
    where, params, _ = targets[table]
    with closing(sqlite3.connect(path)) as conn, conn:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,))
        saved = list(triggers)
        for name, _ in saved:
            conn.execute(f"DROP TRIGGER {name}")
        (value,) = conn.execute(f"SELECT {column} FROM {table} WHERE {where}", params).fetchone()
        new = edited(table, column, value, targets)
        assert new != value
        changed = conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (new, *params))
        assert changed.rowcount == 1
        for _, sql in saved:
            conn.execute(sql)


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def receipt_of(path: Path, config: Path, request_id: str) -> dict[str, Any] | None:
    """What get_status gives an agent for ``request_id``: its receipt, or None (also when it refuses)."""
    settings = Settings(db_path=path, config_path=config, receipt_key=RECEIPT_KEY)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("get_status", {"request_id": request_id})
    if result.is_error:
        return None
    structured = result.structured_content
    assert structured is not None
    receipt: dict[str, Any] | None = structured.get("receipt")
    return receipt


CASES = [(table, column) for table in AUDITED for column in columns_of(table)]


def test_an_untouched_database_verifies_and_gets_its_receipt(
    copy: tuple[Path, dict[str, Any]], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, targets = copy
    code, output = verify(path, capsys)
    assert code == 0 and output.startswith("ok: "), output
    assert "not checked" not in output  # every event was written with every column
    assert anyio.run(receipt_of, path, config, targets["approved"]) is not None


@pytest.mark.parametrize(("table", "column"), CASES, ids=[f"{t}.{c}" for t, c in CASES])
def test_an_edited_column_is_named_by_audit_verify(
    copy: tuple[Path, dict[str, Any]], config: Path, capsys: pytest.CaptureFixture[str], table: str, column: str
) -> None:
    path, targets = copy
    edit_around_triggers(path, table, column, targets)
    code, output = verify(path, capsys)
    assert code == 1, output
    assert output.startswith("FAILED at "), output
    assert re.search(targets[table][2], output), output  # the row
    assert re.search(rf"column [\w, ]*\b{column}\b", output), output  # the column
    if table in ("requests", "votes"):  # the approved request (or its vote) was edited: no receipt for it
        request_id = targets["approved"] + (" (edited)" if column == "id" else "")
        assert anyio.run(receipt_of, path, config, request_id) is None


@pytest.fixture
async def future_db(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "future.db"
    store = await SqliteStore.open(path)
    await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_from_the_future.sql')")
    yield path


@pytest.mark.parametrize(
    "command", [["serve"], ["review", "list"], ["audit", "verify"]], ids=["serve", "review-list", "audit-verify"]
)
def test_a_database_from_a_newer_signoff_is_refused(
    future_db: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--db", str(future_db)]) == 1
    error = capsys.readouterr().err
    known = max(m.version for m in available())
    assert f"schema version 99, but this signoff knows migrations up to version {known}" in error, error
    assert str(future_db) in error and "upgrade signoff" in error
    with closing(sqlite3.connect(future_db)) as conn:
        assert [row[0] for row in conn.execute("SELECT version FROM schema_migrations")][-1] == 99


async def test_a_server_refuses_a_newer_database_at_start(future_db: Path) -> None:
    server = build_server(Settings(db_path=future_db, receipt_key=RECEIPT_KEY))
    with pytest.raises(Exception, match="schema version 99"):
        async with Client(server):
            pass


def old_database(path: Path) -> None:
    """A schema-7 database as an older signoff left it: a model with no events, and an expired request whose
    created event predates ``channel``, ``approvers`` and ``policy_version`` and whose expired event predates
    ``note``."""
    expires = T0 + timedelta(hours=1)
    request = make_request(
        status=Status.EXPIRED, decided_at=expires, note=f"no decision before {expires.isoformat()}", expires_at=expires
    )
    created, triggered = creation_events(dataclasses.replace(request, status=Status.PENDING))
    created = dataclasses.replace(
        created, data={k: v for k, v in created.data.items() if k not in ("channel", "approvers", "policy_version")}
    )
    expired = NewEvent(
        kind=EventKind.EXPIRED, request_id=request.id, at=expires, data={"expires_at": expires.isoformat()}
    )
    chain, prev = [], (0, GENESIS_HASH)
    for new in (created, triggered, expired):
        event = link(new, *prev)
        chain.append(event_row(event))
        prev = (event.seq, event.hash)
    row = request_row(request)[: len(REQUEST_INSERT_COLUMNS.split(","))]  # the columns schema version 7 has
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        for migration in available():
            if migration.version <= 7:
                conn.executescript(migration.sql)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.version, migration.name))
        conn.execute(f"INSERT INTO requests ({REQUEST_INSERT_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", chain)
        at = "2026-01-01T00:00:00.000000Z"
        conn.execute("INSERT INTO models VALUES ('old', 'ab', ?, 'v1', NULL, '{\"v1\":10000}', 1)", (at,))
        conn.execute(
            "INSERT INTO model_versions VALUES ('old', 'v1', 0, 'http://v1', '{}', '{}', ?, NULL, NULL)", (at,)
        )
        conn.execute(
            "INSERT INTO model_changes VALUES (1, 'old', 'register', 'applied', ?, NULL, 'first', '{}', NULL, ?,"
            " 'applied at once', 'v1', NULL, '{\"v1\":10000}')",
            (at, at),
        )


def test_an_upgraded_database_verifies_and_says_what_its_old_events_cannot_vouch_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    code, output = verify(path, capsys)  # a read never migrates: the evidence stays as it was found
    assert code == 1 and "schema version 7" in output and f"signoff init --db {path}" in output, output
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (7,)
    assert main(["init", "--db", str(path)]) == 0  # upgrades it to the latest schema
    code, output = verify(path, capsys)
    assert code == 0, output
    assert "not checked: requests.approvers of 1 row(s)" in output
    assert "not checked: requests.channel of 1 row(s)" in output
    assert "not checked: requests.note of 1 row(s)" in output
    assert "not checked: requests.policy_version of 1 row(s)" in output
    assert re.search(r"not checked: the model plane before event #4\b", output), output

    targets = {"models": ("name = ?", ("old",), "")}
    edit_around_triggers(path, "models", "weights", targets)  # after the upgrade, the baseline is checked
    code, output = verify(path, capsys)
    assert code == 1 and "FAILED at model old, column weights" in output, output
