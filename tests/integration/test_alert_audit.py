"""Every alert episode's start and end is an audit event (`signoff audit verify` checks the episode rows against
them), and an alert that still holds is repeated at most every SIGNOFF_ALERT_REPEAT_MINUTES."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from signoff.notifiers.alerts import document, text
from signoff.server import alerts
from signoff.server.alerts import AlertSettings
from signoff.server.config import Settings
from signoff.server.stores import open_alert_store, open_store
from signoff.storage import ConfigError, EventKind, Store, Verdict
from signoff.storage.alerts import AlertMessage, Alerts
from signoff.storage.audit import verify_store
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.browser.support import ALICE, CONFIG, http_session, running
from tests.fakes.clock import FakeClock
from tests.integration.support import base_env, free_port, signoff
from tests.integration.test_alerts import ask


class Recorder:
    name = "webhook"

    def __init__(self) -> None:
        self.sent: list[AlertMessage] = []

    async def send(self, alert: AlertMessage) -> None:
        self.sent.append(alert)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The database the processes share: an SQLite file, or a PostgreSQL database."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return Settings(db_path=tmp_path / "signoff.db", db_url=url)


@pytest.fixture
async def store(database: Settings) -> AsyncIterator[Store]:
    opened = await open_store(database)
    try:
        yield opened
    finally:
        await opened.close()


def edit(database: Settings, sql: str) -> None:
    """Change the database behind signoff's back, as someone with write access to it could."""
    if database.db_url is None:
        with closing(sqlite3.connect(database.db_path)) as conn, conn:
            conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(database.db_url, autocommit=True) as pg:
            pg.execute(sql.encode())


def cli_env(database: Settings) -> dict[str, Any]:
    return base_env(database.db_path) | ({"SIGNOFF_DB": database.db_url} if database.db_url else {})


async def test_firing_and_resolving_are_audit_events_that_audit_verify_checks(database: Settings, store: Store) -> None:
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    process = await open_alert_store(database.db_path, database.db_url)
    try:
        [request_id] = await ask(service, 1)
        settings = AlertSettings(max_pending=0)
        assert await alerts.evaluate(process, settings, ["webhook"], clock) == ["pending_backlog firing"]
        await service.vote(request_id, "alice", Verdict.APPROVE, None)  # an event between the two
        clock.advance(60)
        assert await alerts.evaluate(process, settings, ["webhook"], clock) == ["pending_backlog resolved"]
        assert await alerts.evaluate(process, settings, ["webhook"], clock) == []
        chain = [e async for e in store.events()]
        episodes = await process.episodes()
    finally:
        await process.close()
    fired, resolved = [e for e in chain if e.kind.is_alert]
    assert (fired.kind, resolved.kind) == (EventKind.ALERT_FIRED, EventKind.ALERT_RESOLVED)
    assert fired.request_id == resolved.request_id == "alert:pending_backlog"
    assert fired.data["episode"] == episodes[0].id and fired.data["value"] == 1.0
    assert "1 requests are waiting" in fired.data["message"]
    assert resolved.at == episodes[0].resolved_at and resolved.seq > fired.seq
    report = await verify_store(store, alerts=episodes)
    assert report.ok, report.reason

    env = cli_env(database)
    verified = await signoff(env, "audit", "verify")
    assert verified.returncode == 0, verified
    assert "alert row" in verified.stdout and "not checked" not in verified.stdout

    # an edit of an episode behind signoff's back, and a forged one, are caught
    edit(database, "UPDATE alert_episodes SET fired_value = 0")
    failed = await signoff(env, "audit", "verify")
    assert failed.returncode == 1 and "alert episode" in failed.stderr and "fired_value" in failed.stderr, failed
    edit(database, "UPDATE alert_episodes SET fired_value = 1")
    edit(database, "INSERT INTO alert_episodes (rule, fired_at, fired_value, message) VALUES ('x', 'y', 1, 'z')")
    unreadable = await signoff(env, "audit", "verify")
    assert unreadable.returncode == 1 and "alert episode row: it cannot be read" in unreadable.stderr, unreadable
    edit(database, "UPDATE alert_episodes SET fired_at = '2026-01-01T00:00:00.000000Z' WHERE rule = 'x'")
    forged = await signoff(env, "audit", "verify")
    assert forged.returncode == 1 and "no alert_fired event" in forged.stderr, forged


async def test_the_consoles_audit_check_is_the_whole_audit_verify_and_catches_an_edited_alert_episode(
    database: Settings, store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    process = await open_alert_store(database.db_path, database.db_url)
    try:
        await ask(ApprovalService(store, clock=clock), 1)
        firing = await alerts.evaluate(process, AlertSettings(max_pending=0), ["webhook"], clock)
        assert firing == ["pending_backlog firing"]
    finally:
        await process.close()
    edit(database, "UPDATE alert_episodes SET fired_value = 0")  # the chain itself is untouched
    (tmp_path / "signoff.toml").write_text(CONFIG)
    env = cli_env(database) | {"SIGNOFF_CONFIG": str(tmp_path / "signoff.toml")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(["serve", "--transport", "http", "--port", str(port)], env, tmp_path / "serve.log", port):
        async with http_session(base, ALICE) as (http, csrf):
            checked = await http.post("/history/verify", data={"csrf": csrf}, headers={"Origin": base})
            assert checked.status_code == 303, checked.text
            page = (await http.get("/history?checked=1")).text
    chain = page[page.index('id="chain"') :]
    assert "FAILED" in chain and "alert episode 1 (pending_backlog)" in chain, chain[:2000]


async def test_an_alert_that_still_holds_repeats_at_most_every_interval(database: Settings, store: Store) -> None:
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    settings = AlertSettings(max_pending=0, repeat_minutes=30)
    recorder = Recorder()
    first = await open_alert_store(database.db_path, database.db_url)
    second = await open_alert_store(database.db_path, database.db_url)
    try:
        draft = Draft(action="payments.transfer", summary="pay", payload={}, expires_in_seconds=86_400)
        request_id = (await service.request_approval(draft)).id
        assert await alerts.evaluate(first, settings, ["webhook"], clock) == ["pending_backlog firing"]
        clock.advance(29 * 60)
        assert await alerts.evaluate(first, settings, ["webhook"], clock) == []  # not yet
        clock.advance(60)
        changes: list[str] = []

        async def evaluate(process: Alerts) -> None:
            changes.extend(await alerts.evaluate(process, settings, ["webhook"], clock))

        async with anyio.create_task_group() as tg:  # two processes see it due at once: one reminder
            for process in (first, second, first, second):
                tg.start_soon(evaluate, process)
        assert changes == ["pending_backlog repeated"]
        clock.advance(29 * 60)
        assert await alerts.evaluate(second, settings, ["webhook"], clock) == []  # 30 minutes from the reminder
        clock.advance(60)
        assert await alerts.evaluate(second, settings, ["webhook"], clock) == ["pending_backlog repeated"]
        await service.vote(request_id, "alice", Verdict.APPROVE, None)
        assert await alerts.evaluate(first, settings, ["webhook"], clock) == ["pending_backlog resolved"]
        clock.advance(3600)
        assert await alerts.evaluate(first, settings, ["webhook"], clock) == []  # resolved: no reminders
        while await alerts.deliver(first, [recorder], settings, clock):
            pass
        [episode] = await first.episodes()
        chain = [e async for e in store.events()]
    finally:
        await first.close()
        await second.close()
    assert [(m.kind.value, m.repeat) for m in recorder.sent] == [
        ("firing", 0),
        ("firing", 1),
        ("firing", 2),
        ("resolved", 0),
    ]
    assert text(recorder.sent[1]).startswith("[signoff STILL FIRING] pending_backlog: 1 requests are waiting")
    assert document(recorder.sent[2])["alert"]["repeat"] == 2
    assert episode.repeats == 2
    assert [e.kind for e in chain if e.kind.is_alert] == [EventKind.ALERT_FIRED, EventKind.ALERT_RESOLVED]
    assert (await verify_store(store, alerts=[episode])).ok


async def test_no_reminder_when_the_repeat_interval_is_zero(database: Settings, store: Store) -> None:
    clock = FakeClock()
    settings = AlertSettings(max_pending=0, repeat_minutes=None)
    process = await open_alert_store(database.db_path, database.db_url)
    try:
        await ask(ApprovalService(store, clock=clock), 1)
        assert await alerts.evaluate(process, settings, ["webhook"], clock) == ["pending_backlog firing"]
        clock.advance(86_400 * 30)
        assert await alerts.evaluate(process, settings, ["webhook"], clock) == []
    finally:
        await process.close()


def test_the_repeat_interval_comes_from_the_environment(tmp_path: Path) -> None:
    db = {"SIGNOFF_DB": str(tmp_path / "x.db")}
    assert Settings.from_env(db).alerts.repeat_minutes == 240
    assert Settings.from_env({**db, "SIGNOFF_ALERT_REPEAT_MINUTES": "15"}).alerts.repeat_minutes == 15
    assert Settings.from_env({**db, "SIGNOFF_ALERT_REPEAT_MINUTES": "0"}).alerts.repeat_minutes is None
    with pytest.raises(ConfigError, match="SIGNOFF_ALERT_REPEAT_MINUTES=-1 is out of range"):
        Settings.from_env({**db, "SIGNOFF_ALERT_REPEAT_MINUTES": "-1"})
