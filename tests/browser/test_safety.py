"""Agent-written strings render inert in the console; state-changing POSTs need the session's CSRF token and
this site's Origin; every page carries the security headers."""

from __future__ import annotations

import json
import re

import httpx2
import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOT, WAIT_MS, Served, chromium, http_session, signed_in_page
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert('summary')</script>"
IMG = '<img src=x onerror="alert(1)">'
LINK = "javascript:alert(document.cookie)"
BIDI = "invoice \u202etxt.exe"  # a right-to-left override would show "exe.txt"
ZERO_WIDTH = "pay\u200bpal"
BIG = "B" * 1_000_000
CLOSE = "</textarea><script>alert('editor')</script>"  # tries to leave the Approve-with-changes editor
HOSTILE = {"html": IMG, "link": LINK, "bidi": BIDI, "zw": ZERO_WIDTH, "big": BIG, "close": CLOSE}


async def test_hostile_strings_render_inert_in_the_queue_and_the_request(served: Served) -> None:
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await expect(page.get_by_text("Live updates: on")).to_be_visible()
        async with agent(served.base, BOT) as bot:
            failed, status = await call(
                bot,
                "request_approval",
                action="ops.cleanup",
                summary=f"{SCRIPT} {BIDI} {ZERO_WIDTH}",
                payload=HOSTILE,
                flags=[f"note:{SCRIPT}"],
            )
        assert not failed, status
        rid = status["request_id"]

        line = page.locator(f'tr[data-request="{rid}"]')  # built by the page's script from the live update
        await expect(line).to_be_visible(timeout=WAIT_MS)
        await expect(line).to_contain_text(SCRIPT)  # shown as text, literally
        await expect(line).to_contain_text("invoice \\u202etxt.exe")  # the override is shown, not obeyed
        await expect(line).to_contain_text("pay\\u200bpal")
        assert await page.locator("main img, main script").count() == 0

        await page.reload()  # the same row, rendered by the server
        await expect(line).to_contain_text(SCRIPT)
        await line.get_by_role("link").click()
        await expect(page.locator("#summary")).to_have_text(f"{SCRIPT} invoice \\u202etxt.exe pay\\u200bpal")
        await expect(page.locator("dl.payload").get_by_text(f'"{LINK}"')).to_be_visible()
        assert await page.locator("main img, main script, a[href^='javascript']").count() == 0
        big = page.locator("dl.payload details", has_text="1,000,002 characters")  # folded, and says how much is folded
        await expect(big).to_be_visible()
        await big.locator("summary").click()
        assert len(await big.locator("pre").inner_text()) == 1_000_002  # all of it, quotes included
        await page.get_by_text("Approve with changes", exact=True).click()
        editor = await page.get_by_label("Approved payload (JSON)").input_value()
        assert json.loads(editor) == HOSTILE  # the editor holds exactly the payload, nothing escaped out of it
        assert "\u202e" not in editor and "\\u202e" in editor  # the override is written as an escape, not obeyed
        assert await page.locator("main script").count() == 0
        assert watched.dialogs == [] and watched.errors == []


async def test_posts_without_the_csrf_token_or_from_another_origin_are_refused(served: Served) -> None:
    async with agent(served.base, BOT) as bot:
        _, status = await call(bot, "request_approval", action="files.delete", summary="rm -rf /srv", payload={})
    vote_url = f"/requests/{status['request_id']}/vote"
    async with http_session(served.base, ALICE) as (http, csrf):
        approve = {"verdict": "approve", "csrf": csrf}
        without = await http.post(vote_url, data={"verdict": "approve"}, headers={"Origin": served.base})
        wrong = await http.post(vote_url, data={**approve, "csrf": "x" + csrf}, headers={"Origin": served.base})
        foreign = await http.post(vote_url, data=approve, headers={"Origin": "http://evil.example"})
        changed = {"verdict": "approve", "approved_payload": '{"path": "/"}'}  # approve with changes, forged
        amend_without = await http.post(vote_url, data=changed, headers={"Origin": served.base})
        claim_url = f"/requests/{status['request_id']}/claim"
        claim_without = await http.post(claim_url, data={"claim": "claim"}, headers={"Origin": served.base})
        amend_foreign = await http.post(
            vote_url, data={**changed, "csrf": csrf}, headers={"Origin": "http://evil.example"}
        )
        opaque = await http.post(vote_url, data=approve, headers={"Origin": "null"})
        sign_out = await http.post("/sign-out", data={}, headers={"Origin": served.base})
        page = await http.get(f"/requests/{status['request_id']}")
        assert re.search(r'id="status">pending<', page.text), page.text  # nothing was recorded
        signed_in = await http.get("/")
        fine = await http.post(vote_url, data=approve, headers={"Origin": served.base})
    refused = (without, wrong, foreign, opaque, sign_out, amend_without, amend_foreign, claim_without)
    assert [r.status_code for r in refused] == [403] * 8
    assert signed_in.status_code == 200  # the refused sign-out changed nothing
    assert fine.status_code == 303  # the same POST from the page itself is taken

    async with httpx2.AsyncClient(base_url=served.base) as stranger:  # a sign-in form needs its own session
        form = await stranger.post("/sign-in", data={"token": ALICE}, headers={"Origin": served.base})
    assert form.status_code == 403 and "This sign-in form expired" in form.text


async def test_every_page_has_the_security_headers(served: Served) -> None:
    async with http_session(served.base, ALICE) as (http, _):
        pages = [await http.get(path) for path in ("/", "/sign-in", "/requests/req_none", "/static/console.js")]
    for response in pages:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_live_streams_need_a_signed_in_session(served: Served) -> None:
    async with agent(served.base, BOT) as bot:
        _, status = await call(bot, "request_approval", action="files.read", summary="read /etc", payload={})
    streams = ("/events", f"/requests/{status['request_id']}/events")
    async with httpx2.AsyncClient(base_url=served.base) as stranger:
        refused = [await stranger.get(path) for path in streams]
    assert [r.status_code for r in refused] == [401, 401]
    assert all("unsafe-inline" not in r.headers["content-security-policy"] for r in refused)
