"""An auditor searches the history (words, status, reviewer, dates), pages through it, exports the search, and
checks the audit chain, in the browser."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOB, BOT, Served, chromium, http_session, signed_in_page
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

FORMULA = '=HYPERLINK("http://evil.example","click")'  # a spreadsheet would run this


async def vote(base: str, token: str, request_id: str, verdict: str, comment: str | None = None) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as api:
        body = {"verdict": verdict, **({"comment": comment} if comment else {})}
        voted = await api.post(f"{base}/api/requests/{request_id}/votes", json=body)
    assert voted.status_code == 200, voted.text


async def test_an_auditor_searches_pages_exports_and_checks_the_chain(served: Served) -> None:
    async with agent(served.base, BOT) as bot:
        ids = []
        for n in range(53):
            _, status = await call(
                bot, "request_approval", action="invoices.pay", summary=f"Pay invoice {n}", payload={"n": n}
            )
            ids.append(status["request_id"])
        _, status = await call(bot, "request_approval", action="notes.add", summary=FORMULA, payload={})
        odd = status["request_id"]
    await vote(served.base, ALICE, ids[0], "approve")
    await vote(served.base, BOB, ids[1], "reject", "wrong supplier")
    today = datetime.now(UTC).date()

    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.get_by_role("link", name="History").click()
        results = page.locator("#results tr")
        await expect(results).to_have_count(50)  # the first page, newest first
        await expect(results.first).to_have_attribute("data-request", odd)

        await page.get_by_label("Words").fill("INVOICE")
        await page.get_by_role("button", name="Search").click()
        await expect(results).to_have_count(50)
        await page.get_by_role("link", name="Next page →").click()
        await expect(results).to_have_count(3)  # 53 invoices: the rest, and no further page
        await expect(page.get_by_role("link", name="Next page →")).to_have_count(0)
        await expect(results.last).to_have_attribute("data-request", ids[0])

        await page.get_by_role("link", name="← First page").click()
        await page.get_by_label("Reviewer").fill("bob")
        await page.get_by_role("button", name="Search").click()
        await expect(results).to_have_count(1)
        await expect(results.first).to_contain_text("rejected")
        await expect(results.first).to_contain_text("bob (reject)")

        await page.get_by_label("Reviewer").fill("")
        await page.get_by_label("Status").select_option("approved")
        await page.get_by_role("button", name="Search").click()
        await expect(results).to_have_count(1)
        await expect(results.first).to_have_attribute("data-request", ids[0])

        await page.get_by_label("Status").select_option("")
        await page.get_by_label("To").fill((today - timedelta(days=1)).isoformat())
        await page.get_by_role("button", name="Search").click()
        await expect(page.locator("#no-results")).to_be_visible()  # nothing before today

        await page.get_by_role("button", name="Check the audit chain now").click()
        await expect(page.locator("#chain")).to_contain_text("ok")
        await expect(page.locator("#chain")).to_contain_text("events verified")
        await expect(page.locator("#chain")).to_contain_text("by alice")
        assert watched.errors == [] and watched.dialogs == []

    async with http_session(served.base, ALICE) as (http, _):
        exported = await http.get("/history/export.csv", params={"text": "invoice", "status": "pending"})
        lines = await http.get("/history/export.jsonl", params={"reviewer": "bob"})
        every = await http.get("/history/export.csv")
        bad = await http.get("/history/export.csv", params={"since": "last week"})
    assert exported.headers["content-disposition"] == 'attachment; filename="signoff-history.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["id"] for r in rows} == set(ids[2:])  # every pending invoice, not just a page of them
    documents = [json.loads(line) for line in lines.text.splitlines()]
    assert [(d["id"], d["status"], d["votes"][0]["comment"]) for d in documents] == [
        (ids[1], "rejected", "wrong supplier")
    ]
    formula_row = next(r for r in csv.DictReader(io.StringIO(every.text)) if r["id"] == odd)
    assert formula_row["summary"] == "'" + FORMULA  # shown as text by a spreadsheet, never run
    assert bad.status_code == 400 and "From must be a date" in bad.text


async def test_history_needs_a_session_and_the_check_needs_the_csrf_token(served: Served) -> None:
    async with httpx2.AsyncClient(base_url=served.base, follow_redirects=False) as stranger:
        page = await stranger.get("/history")
        export = await stranger.get("/history/export.csv")
    assert page.status_code == 303 and export.status_code == 401
    async with http_session(served.base, ALICE) as (http, csrf):
        without = await http.post("/history/verify", data={}, headers={"Origin": served.base})
        foreign = await http.post("/history/verify", data={"csrf": csrf}, headers={"Origin": "http://evil.example"})
        fine = await http.post("/history/verify", data={"csrf": csrf}, headers={"Origin": served.base})
    assert (without.status_code, foreign.status_code, fine.status_code) == (403, 403, 303)
