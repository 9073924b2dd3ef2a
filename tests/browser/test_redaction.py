"""[redact] in the console and the reviewer API: masked by default, shown when asked, and approving with changes
from the masked view keeps the masked values as asked. In the real browser, and over plain HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import httpx2
import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOT, CONFIG, Served, chromium, http_session, running, signed_in_page
from tests.integration.support import base_env, free_port, signoff
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

SSN, CARD = "123-45-6789", "4111111111111111"
PAYLOAD = {"amount": 5, "order": 7, "ssn": SSN, "card": {"card_number": CARD, "holder": "Ann Lee"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("redact")
    (root / "signoff.toml").write_text(CONFIG + '\n[redact]\npaths = ["payload.ssn", "payload.*.card_number"]\n')
    db = root / "signoff.db"
    env = base_env(db, SIGNOFF_CONFIG=str(root / "signoff.toml"))
    port, log = free_port(), root / "serve.log"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        yield Served(f"http://127.0.0.1:{port}", db, env, log)


async def ask(served: Served) -> str:
    async with agent(served.base, BOT) as bot:
        failed, status = await call(bot, "request_approval", action="refunds.issue", summary="Refund", payload=PAYLOAD)
    assert not failed, status
    return str(status["request_id"])


async def test_the_console_masks_by_default_shows_when_asked_and_keeps_masked_values_on_changes(
    served: Served,
) -> None:
    request_id = await ask(served)
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{request_id}")
        await expect(page.locator("#redacted")).to_contain_text("masked by the policy")
        content = await page.content()
        assert "Ann Lee" in content and "[redacted]" in content
        assert SSN not in content and CARD not in content
        assert revealed_by(served, request_id) == []
        await page.get_by_role("link", name="Show them").click()
        await expect(page.locator("#redacted")).to_contain_text("Showing the fields the policy masks")
        assert SSN in await page.content() and CARD in await page.content()
        assert revealed_by(served, request_id) == [{"reviewer": "alice", "via": "console"}]  # in the audit chain
        await expect(page.get_by_text("alice was shown its masked values (console)")).to_be_visible()
        await page.get_by_role("link", name="Mask them again").click()
        await expect(page.locator("#redacted")).to_contain_text("masked by the policy")
        assert SSN not in await page.content()

        # approve with changes from the masked editor: the amount changes, the masked fields keep their values
        await page.get_by_text("Approve with changes", exact=True).click()
        editor = page.get_by_label("Approved payload (JSON)")
        edited = json.loads(await editor.input_value())
        assert edited["ssn"] == "[redacted]"
        await editor.fill(json.dumps({**edited, "amount": 4}))
        await page.get_by_role("button", name="Approve the changed payload").click()
        await expect(page.locator("#status")).to_have_text("approved")
        assert SSN not in await page.content()
        assert watched.errors == [] and watched.dialogs == []
    with closing(sqlite3.connect(served.db)) as conn:
        (approved,) = conn.execute("SELECT approved_payload FROM requests WHERE id = ?", (request_id,)).fetchone()
    assert json.loads(approved) == {**PAYLOAD, "amount": 4}


def revealed_by(served: Served, request_id: str) -> list[dict[str, str]]:
    """The ``revealed`` audit events of a request: who was shown its masked values, and where."""
    with closing(sqlite3.connect(served.db)) as conn:
        rows = conn.execute("SELECT data FROM events WHERE request_id = ? AND kind = 'revealed'", (request_id,))
        return [json.loads(data) for (data,) in rows]


async def test_the_reviewer_api_and_the_console_export_mask_too(served: Served) -> None:
    request_id = await ask(served)
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with httpx2.AsyncClient(base_url=served.base, headers=headers) as api:
        listed = (await api.get("/api/requests", params={"status": "pending"})).text
        shown = (await api.get(f"/api/requests/{request_id}")).json()
        assert revealed_by(served, request_id) == []  # the masked view records nothing
        revealed = (await api.get(f"/api/requests/{request_id}", params={"reveal": "1"})).json()
    assert revealed_by(served, request_id) == [{"reviewer": "alice", "via": "api"}]
    verified = await signoff(served.env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert SSN not in listed and "[redacted]" in listed
    assert shown["payload"]["ssn"] == "[redacted]" and shown["payload"]["card"]["card_number"] == "[redacted]"
    assert SSN not in json.dumps(shown) and CARD not in json.dumps(shown)  # the events' copies too
    assert revealed["payload"] == PAYLOAD
    async with http_session(served.base, ALICE) as (http, _):
        exported = (await http.get("/history/export.jsonl")).text
        page = (await http.get(f"/requests/{request_id}")).text
    assert exported and SSN not in exported and CARD not in exported and "[redacted]" in exported
    assert SSN not in page and re.search(r"\[redacted\]", page)
