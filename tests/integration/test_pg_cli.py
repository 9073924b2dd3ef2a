"""Every CLI command on a PostgreSQL URL, and ``signoff db copy`` from SQLite to PostgreSQL.

One installation is made on SQLite through the service and the stores' public methods (requests, votes, a claim,
outbox rows, model versions and changes, alert episodes), copied to PostgreSQL with ``signoff db copy``; then each
command runs on the file and on the URL and must print the same. The copy itself: the chain verifies after it, a
vote after it works, an edit of a copied event is caught, and a non-empty target or an outdated source is refused
in one line, leaving the target as it was; a source whose audit log does not verify is refused, and a copy that
does not verify is taken out again.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import psycopg
import pytest

from signoff.server import cli
from signoff.storage import InvalidInput, Verdict, pg_copy
from signoff.storage.alerts import AlertStore
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.migrations import available
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.storage.pg_copy import DERIVED, NOT_COPIED, SQLITE_ONLY, TABLES, source_tables, target_tables
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.models.service import ModelService
from tests.browser.support import running
from tests.integration.conftest import add_future_migration
from tests.integration.support import base_env, free_port, signoff

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "signoff.example.toml"
RECEIPT_KEY = "k" * 40


async def populate(path: Path) -> dict[str, str]:
    """An installation with some of everything, made as the server makes it; the ids of its requests by role."""
    store = await SqliteStore.open(path)
    models = await SqliteModelStore.open(path)
    alerts = await AlertStore.open(path)
    try:
        service = ApprovalService(store)
        ids: dict[str, str] = {}
        for n, (name, action, extra) in enumerate(
            [
                ("approved", "payments.transfer", {"amount": 120, "to": "acme"}),
                ("rejected", "payments.transfer", {"amount": 9000, "to": "unknown"}),
                ("pending", "crm.delete", {"customer": "c-1"}),
                ("claimed", "loans.decide", {"applicant": {"age_band": "30-39"}, "decision": "approve"}),
                ("second", "payments.transfer", {"amount": 77, "to": "acme"}),
            ]
        ):
            draft = Draft(action=action, summary=f"{name} request", payload=extra, agent_id=f"bot-{n % 2}")
            ids[name] = (await service.request_approval(draft)).id
        await service.vote(ids["approved"], "alice", Verdict.APPROVE, "checked")
        await service.vote(ids["rejected"], "bob", Verdict.REJECT, "wrong account")
        await service.vote(ids["second"], "alice", Verdict.APPROVE, None)
        await service.claim(ids["claimed"], "carol")
        auto = Draft(action="notes.add", summary="auto", payload={"text": "hi"}, confidence=0.99, agent_id="bot-0")
        await service.request_approval(auto)

        plane = ModelService(models, service)
        await plane.register("fraud", "v1", "http://fraud.internal/v1", metadata={"owner": "risk"})
        await plane.register("fraud", "v2", "http://fraud.internal/v2", lineage={"from": "v1"})

        now = datetime.now(UTC)
        await alerts.change("queue_age", firing=True, value=42.0, message="oldest waits 42 min", targets=[], now=now)
        later = now + timedelta(minutes=5)
        await alerts.change("queue_age", firing=False, value=1.0, message="ok again", targets=[], now=later)
        await alerts.change("dead_letters", firing=True, value=3.0, message="3 dead", targets=[], now=later)
        return ids
    finally:
        await alerts.close()
        await models.close()
        await store.close()


@pytest.fixture
def installation(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "signoff.db"
    return path, asyncio.run(populate(path))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``signoff ARGS`` in this process (many commands, each twice: a process each would take minutes here)."""
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def copy(capsys: pytest.CaptureFixture[str], source: Path, url: str) -> tuple[int, str, str]:
    return run(capsys, "db", "copy", "--from", str(source), "--to", url)


#: what changes between two runs a moment apart: times, and the age of the oldest pending request
TIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(\+00:00|Z)?"
    r"|(?s:signoff_oldest_pending_age_seconds.{0,80}?[\d.]+$)",
    re.MULTILINE,
)


def test_each_command_prints_the_same_on_postgresql_as_on_sqlite(
    installation: tuple[Path, dict[str, str]],
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ids = installation
    monkeypatch.delenv("SIGNOFF_DB", raising=False)
    monkeypatch.delenv("SIGNOFF_CONFIG", raising=False)
    monkeypatch.setenv("SIGNOFF_RECEIPT_KEY", RECEIPT_KEY)
    code, out, err = copy(capsys, path, pg_url)
    assert code == 0, (out, err)

    reads = [
        ("review", "list"),
        ("review", "list", "--json"),
        ("review", "show", ids["second"]),
        ("review", "show", ids["approved"][:10], "--json"),
        ("history",),
        ("history", "--format", "json"),
        ("history", "--format", "csv", "--status", "approved"),
        ("history", "--agent", "bot-1", "--limit", "2"),
        ("stats",),
        ("stats", "--json"),
        ("alerts",),
        ("alerts", "--json"),
        ("outbox", "list"),
        ("export", "training-data"),
        ("export", "training-data", "--format", "csv"),
        ("report", "--format", "json"),
        ("report", "--format", "md"),
        ("policy", "replay", str(EXAMPLE_POLICY), "--json"),
        ("fairness", "--json", "--config", str(EXAMPLE_POLICY)),
        ("audit", "verify"),
    ]
    writes = [
        ("review", "release", ids["claimed"], "--as", "carol"),
        ("review", "claim", ids["pending"], "--as", "dave"),
        ("review", "approve", ids["claimed"], "--as", "erin"),
        ("review", "reject", ids["pending"], "--as", "dave", "--comment", "no"),
        ("outbox", "retry", "--all-dead"),
        ("init",),
        ("history", "--format", "jsonl"),
        ("audit", "verify"),
    ]
    for command in [*reads, *writes]:
        on_sqlite = run(capsys, *command, "--db", str(path))
        on_postgresql = run(capsys, *command, "--db", pg_url)
        assert on_sqlite[0] == 0, (command, on_sqlite)
        if command == ("init",):  # names the database it created
            assert on_postgresql[0] == 0 and "schema version" in on_postgresql[1], on_postgresql
            continue
        expected, got = (TIME.sub("<time>", "\n".join(map(str, r))) for r in (on_sqlite, on_postgresql))
        if command in writes:  # decided a moment apart: the receipts' signatures and the chain's hashes differ
            expected, got = (re.sub("[0-9a-f]{64}", "<hash>", text) for text in (expected, got))
        assert got == expected, command


def test_db_copy_moves_an_installation_that_verifies_and_keeps_working(
    installation: tuple[Path, dict[str, str]],
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ids = installation
    monkeypatch.delenv("SIGNOFF_DB", raising=False)
    verified = run(capsys, "audit", "verify", "--db", str(path))
    head = verified[1].splitlines()[-1].split()[1]
    code, out, err = copy(capsys, path, pg_url)
    assert code == 0, (out, err)
    with closing(sqlite3.connect(path)) as src:
        counts = {t: src.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (*TABLES, *DERIVED)}
    assert counts["votes"] == 3 and counts["alert_episodes"] == 2 and counts["model_versions"] == 2, counts
    assert out.startswith(f"copied {sum(counts.values())} rows from {path} to {pg_url}: "), out
    assert all(f"{table} {n}" in out for table, n in counts.items() if n), out
    assert f"head {head} " in out, out

    voted = run(capsys, "review", "approve", ids["pending"], "--as", "frank", "--db", pg_url)
    assert voted[0] == 0 and "approved" in voted[1], voted

    async def more() -> None:  # new rows get ids after the copied ones (outbox, alert episodes)
        store = await PostgresStore.open(pg_url)
        try:
            await ApprovalService(store).request_approval(Draft(action="crm.delete", summary="new", payload={}))
        finally:
            await store.close()

    asyncio.run(more())
    after = run(capsys, "audit", "verify", "--db", pg_url)
    assert after[0] == 0, after
    assert int(after[1].splitlines()[-1].split()[1].split(":")[0]) > int(head.split(":")[0]), after

    # a copied event edited in PostgreSQL is caught as on SQLite
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute("UPDATE events SET data = replace(data, 'checked', 'checkeD') WHERE data LIKE '%checked%'")
    tampered = run(capsys, "audit", "verify", "--db", pg_url)
    assert tampered[0] == 1 and tampered[2].startswith("FAILED at event #"), tampered


def test_db_copy_refuses_a_target_with_data_and_leaves_it_as_it_was(
    installation: tuple[Path, dict[str, str]], pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = installation
    assert copy(capsys, path, pg_url)[0] == 0
    run(capsys, "review", "approve", ids["pending"], "--as", "frank", "--db", pg_url)
    before = run(capsys, "history", "--format", "json", "--db", pg_url)
    code, out, err = copy(capsys, path, pg_url)
    assert code == 1 and out == "" and err.count("\n") == 1, (out, err)
    assert "already holds data (in requests, votes, events" in err and "empty database" in err, err
    assert run(capsys, "history", "--format", "json", "--db", pg_url) == before
    assert run(capsys, "audit", "verify", "--db", pg_url)[0] == 0


def test_db_copy_refuses_an_outdated_source_and_leaves_the_target_empty(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as conn:  # a database an older signoff made: its first migrations only
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        for migration in available()[:12]:
            conn.executescript(migration.sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.version, migration.name))
        conn.commit()
    code, out, err = copy(capsys, old, pg_url)
    assert code == 1 and err.count("\n") == 1, (out, err)
    assert "schema version 12" in err and f"signoff db upgrade --db {old}" in err, err
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('requests')").fetchone() == (None,)

    upgraded = run(capsys, "db", "upgrade", "--db", str(old))
    assert upgraded[0] == 0, upgraded
    assert copy(capsys, old, pg_url)[0] == 0  # upgraded, it copies (no rows yet)


def test_db_copy_refuses_a_source_whose_audit_log_does_not_verify_and_leaves_the_target_empty(
    installation: tuple[Path, dict[str, str]], pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event edited in the SQLite file: the copy is refused before anything is written, and says what to run."""
    path, _ = installation
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TRIGGER events_append_only_update")
        conn.execute("UPDATE events SET data = replace(data, 'checked', 'checkeD') WHERE data LIKE '%checked%'")
        conn.commit()
    code, out, err = copy(capsys, path, pg_url)
    assert code == 1 and out == "", (out, err)
    assert err.startswith("FAILED at event #") and "nothing was copied" in err, err
    assert f"run `signoff audit verify --db {path}`" in err, err
    with psycopg.connect(pg_url) as conn:  # not even the schema: the copy never started
        assert conn.execute("SELECT to_regclass('requests')").fetchone() == (None,)


def test_db_copy_takes_a_copy_that_does_not_verify_out_again(
    installation: tuple[Path, dict[str, str]], pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The source verifies, but the rows PostgreSQL keeps differ from it (here a trigger of the target's edits an
    event as it goes in): the command exits 1 and the target holds none of the copy's rows, only the schema."""
    path, _ = installation
    assert run(capsys, "db", "upgrade", "--db", pg_url)[0] == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION edit_event() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.data := replace(NEW.data, 'checked', 'checkeD'); RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER edit_event BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION edit_event()")
        before = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in (*TABLES, *DERIVED)}
    code, out, err = copy(capsys, path, pg_url)
    assert code == 1 and out.startswith("copied "), (out, err)
    assert "FAILED at event #" in err and "its rows were taken out again" in err, err
    assert f"signoff audit verify --db {path}" in err, err
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in before} == before
        conn.execute("DROP TRIGGER edit_event ON events")
    code, out, err = copy(capsys, path, pg_url)  # the same target takes the copy again, and it verifies
    assert code == 0 and "ok: " in out, (out, err)
    assert run(capsys, "audit", "verify", "--db", pg_url)[0] == 0


def test_a_copy_is_taken_out_again_only_while_nobody_wrote_to_it(
    installation: tuple[Path, dict[str, str]], pg_url: str
) -> None:
    """``pg_copy.discard`` (what ``db copy`` does when the copy does not verify) refuses, changing nothing, once a
    server wrote to the copy: those rows are not the copy's to take."""
    path, _ = installation

    async def copy_then_write_then_discard() -> pg_copy.Copied:
        copied = await pg_copy.copy(path, pg_url)
        store = await PostgresStore.open(pg_url)
        try:
            await ApprovalService(store).request_approval(Draft(action="crm.delete", summary="new", payload={}))
        finally:
            await store.close()
        with pytest.raises(InvalidInput, match=r"was written to since the copy \(in requests, events"):
            await pg_copy.discard(pg_url, copied)
        return copied

    copied = asyncio.run(copy_then_write_then_discard())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (copied.rows["requests"] + 1,)


def test_db_copy_refuses_a_newer_source_and_a_newer_target(
    installation: tuple[Path, dict[str, str]], tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = installation
    newer = tmp_path / "newer.db"
    newer.write_bytes(path.read_bytes())
    add_future_migration(str(newer))
    code, _, err = copy(capsys, newer, pg_url)
    assert code == 1 and "schema version 9999" in err and "a newer signoff wrote it" in err, err

    assert run(capsys, "db", "upgrade", "--db", pg_url)[0] == 0
    add_future_migration(pg_url)
    code, _, err = copy(capsys, path, pg_url)
    assert code == 1 and err.count("\n") == 1 and "schema version 9999" in err, err
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (0,)


def test_db_copy_refuses_a_missing_source_and_a_target_that_is_not_a_url(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = copy(capsys, tmp_path / "nope.db", pg_url)
    assert code == 1 and "no SQLite database at" in err, err
    with pytest.raises(SystemExit):
        run(capsys, "db", "copy", "--from", str(tmp_path / "nope.db"), "--to", str(tmp_path / "other.db"))
    assert "is not a postgresql:// URL" in capsys.readouterr().err


def test_db_copy_knows_every_table_of_both_schemas(tmp_path: Path, pg_url: str) -> None:
    """A new table in a migration must be copied (TABLES, parents first) or derived (DERIVED), or say why not
    (NOT_COPIED; SQLITE_ONLY for SQLite's own index tables, which PostgreSQL does not have)."""
    asyncio.run(populate(tmp_path / "fresh.db"))
    handled = {*TABLES, *DERIVED, *NOT_COPIED}
    assert len(handled) == len(TABLES) + len(DERIVED) + len(NOT_COPIED)
    with closing(sqlite3.connect(tmp_path / "fresh.db")) as src:
        assert set(source_tables(src)) == handled | SQLITE_ONLY

    async def postgres_tables() -> list[str]:
        store = await PostgresStore.open(pg_url)  # migrates
        await store.close()
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            return await target_tables(conn)

    assert set(asyncio.run(postgres_tables())) == handled


async def test_db_copy_as_a_command_says_what_it_copied(tmp_path: Path, pg_url: str) -> None:
    """The real command, in its own process: the summary, the audit log's head, exit 0."""
    path = tmp_path / "signoff.db"
    await populate(path)
    env = base_env(path)
    ran = await signoff(env, "db", "copy", "--from", str(path), "--to", pg_url)
    assert ran.returncode == 0, ran
    assert "ok: " in ran.stdout and "\nhead " in ran.stdout, ran
    verify = await signoff({**env, "SIGNOFF_DB": pg_url}, "audit", "verify")
    assert verify.returncode == 0 and verify.stdout.splitlines()[-1] in ran.stdout, verify
    assert json.loads((await signoff({**env, "SIGNOFF_DB": pg_url}, "stats", "--json")).stdout)["metrics"]


def test_the_console_alone_serves_a_postgresql_database(tmp_path: Path, pg_url: str) -> None:
    """`signoff console --db URL`: the queue on PostgreSQL, after the one-time sign-in link."""

    async def ask() -> str:
        store = await PostgresStore.open(pg_url)
        try:
            draft = Draft(action="crm.delete", summary="delete customer c-9", payload={"customer": "c-9"})
            return (await ApprovalService(store).request_approval(draft)).id
        finally:
            await store.close()

    request_id = asyncio.run(ask())
    env = {**base_env(tmp_path / "unused.db"), "SIGNOFF_DB": pg_url}
    port, log = free_port(), tmp_path / "console.log"
    with running(["console", "--port", str(port), "--as", "dave"], env, log, port):
        (link,) = re.findall(r"sign in once at (\S+)", log.read_text())
        with httpx2.Client(follow_redirects=True, timeout=30) as http:
            queue = http.get(link)
    assert queue.status_code == 200 and f'data-request="{request_id}"' in queue.text, queue.text
    assert "postgresql://signoff@" in log.read_text() and not (tmp_path / "unused.db").exists()


def test_db_copy_reads_the_file_it_is_given_even_with_a_hash_in_its_name(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `#` or `?` in the path must not cut the read-only flag off the SQLite URI (and open another file)."""
    monkeypatch.delenv("SIGNOFF_DB", raising=False)
    monkeypatch.setenv("SIGNOFF_RECEIPT_KEY", RECEIPT_KEY)
    odd = tmp_path / "team#1 ?copy.db"
    asyncio.run(populate(odd))
    before = {p.name for p in tmp_path.iterdir()}
    code, out, err = copy(capsys, odd, pg_url)
    assert code == 0, (out, err)
    assert "copied" in out and "requests" in out
    opened = {p.name for p in tmp_path.iterdir()} - before
    assert opened <= {f"{odd.name}-wal", f"{odd.name}-shm"}, opened  # no stray file opened beside it
