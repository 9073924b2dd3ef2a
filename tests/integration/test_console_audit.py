"""Console sign-ins, sign-outs and refused sign-ins are audit events on the chain, on SQLite and PostgreSQL, and
`signoff audit verify`, history and metrics take them in their stride."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from signoff.server.config import Settings
from signoff.server.stores import open_store
from signoff.storage import Event, EventKind, NewEvent, RequestQuery, Status
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.browser.support import ALICE, BOT, CONFIG, _csrf, http_session, running
from tests.integration.support import base_env, free_port, signoff

WRONG = "so_not-a-real-token-at-all"


async def refused_sign_in(base: str, token: str) -> int:
    async with httpx2.AsyncClient(base_url=base, follow_redirects=False, timeout=30) as http:
        csrf = _csrf((await http.get("/sign-in")).text)
        answer = await http.post("/sign-in", data={"csrf": csrf, "token": token}, headers={"Origin": base})
        return answer.status_code


def settings_of(database: str, tmp_path: Path) -> Settings:
    if database.startswith("postgresql://"):
        return Settings(db_path=tmp_path / "unused.db", db_url=database)
    return Settings(db_path=Path(database))


async def test_sign_ins_sign_outs_and_refusals_are_chained_and_audit_verify_passes(
    database: str, tmp_path: Path
) -> None:
    (tmp_path / "signoff.toml").write_text(CONFIG)
    env = base_env(tmp_path / "unused.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml")) | {"SIGNOFF_DB": database}
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        async with http_session(base, ALICE) as (http, csrf):
            signed_out = await http.post("/sign-out", data={"csrf": csrf}, headers={"Origin": base})
            assert signed_out.status_code == 303
        assert await refused_sign_in(base, WRONG) == 401
        assert await refused_sign_in(base, BOT) == 403
        async with httpx2.AsyncClient(base_url=base, timeout=30) as http:  # a console with tokens issues no links
            for _ in range(3):
                assert (await http.get("/sign-in/link", params={"key": "forged"})).status_code == 404

    store = await open_store(settings_of(database, tmp_path))
    try:
        request = await ApprovalService(store).request_approval(Draft(action="deploy.web", summary="x", payload={}))
        events = [e async for e in store.events()]
        history = await store.list_requests(RequestQuery(limit=50))
        text_history = await store.list_requests(RequestQuery(limit=50, text="console"))
        metrics = await store.metrics()
    finally:
        await store.close()

    console: list[Event] = [e for e in events if e.kind.is_console]
    assert [(e.kind, e.request_id) for e in console] == [
        (EventKind.CONSOLE_SIGNED_IN, "console:alice"),
        (EventKind.CONSOLE_SIGNED_OUT, "console:alice"),
        (EventKind.CONSOLE_SIGN_IN_REFUSED, "console:unknown"),
        (EventKind.CONSOLE_SIGN_IN_REFUSED, "console:billing-bot"),
    ]
    assert console[0].data == {"address": "127.0.0.1", "via": "token"}
    assert console[2].data["reason"] == "unknown token"
    assert console[3].data["reason"] == "the agent token of billing-bot"
    recorded = str([(e.request_id, e.data) for e in events])
    assert ALICE not in recorded and BOT not in recorded and WRONG not in recorded  # never a token

    # history, search and metrics know only requests
    assert [r.id for r in history.items] == [request.id] and text_history.items == ()
    assert metrics is not None and request.status is Status.PENDING

    verified = await signoff(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(events)} events" in verified.stdout + verified.stderr


async def test_a_request_event_cannot_be_appended_alone(database: str, tmp_path: Path) -> None:
    store = await open_store(settings_of(database, tmp_path))
    try:
        forged = NewEvent(kind=EventKind.DECIDED, request_id="req_x", at=datetime.now(UTC), data={})
        with pytest.raises(ValueError, match="only console events"):
            await store.append_event(forged)
        misplaced = NewEvent(kind=EventKind.CONSOLE_SIGNED_IN, request_id="req_x", at=datetime.now(UTC), data={})
        with pytest.raises(ValueError, match="console:<name>"):
            await store.append_event(misplaced)
        assert [e async for e in store.events()] == []
    finally:
        await store.close()
