"""Claims in the browser: "alice is reviewing" shows in another reviewer's open queue and request page and in the
agent's status; it keeps nobody from voting; the queue filters by it."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOB, BOT, WAIT_MS, Served, chromium, signed_in_page
from tests.browser.test_review import ask, row
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow


async def test_a_claim_shows_everywhere_and_blocks_no_vote(served: Served) -> None:
    rid = await ask(served.base, action="vendor.add", summary="Add ACME as a vendor", payload={"name": "ACME"})
    other = await ask(served.base, action="vendor.remove", summary="Remove Initech", payload={"name": "Initech"})
    async with chromium() as browser:
        bob, bob_watched = await signed_in_page(browser, served.base, BOB, "bob")
        await expect(bob.get_by_text("Live updates: on")).to_be_visible()
        await expect(row(bob, rid)).to_be_visible()
        bob_request, _ = await signed_in_page(browser, served.base, BOB, "bob")
        await bob_request.goto(f"{served.base}/requests/{rid}")
        await expect(bob_request.locator("#claimed-by")).to_contain_text("Nobody")

        alice, alice_watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await alice.goto(f"{served.base}/requests/{rid}")
        await alice.get_by_role("button", name="Claim: I am reviewing this").click()
        await expect(alice.get_by_role("status")).to_contain_text("You are reviewing this request")
        await expect(alice.locator("#claimed-by")).to_contain_text("alice is reviewing this")

        await expect(row(bob, rid)).to_contain_text("alice is reviewing", timeout=WAIT_MS)  # live, no reload
        await expect(bob_request.locator("#claimed-by")).to_contain_text("alice is reviewing", timeout=WAIT_MS)
        async with agent(served.base, BOT) as bot:
            _, status = await call(bot, "get_status", request_id=rid)
        assert status["status"] == "pending" and status["claimed_by"] == "alice" and status["claimed_at"]

        await alice.goto(f"{served.base}/?claim=mine")
        await expect(row(alice, rid)).to_be_visible()
        await expect(row(alice, other)).to_have_count(0)
        await alice.goto(f"{served.base}/?claim=unclaimed")
        await expect(row(alice, other)).to_be_visible()
        await expect(row(alice, rid)).to_have_count(0)

        await bob_request.get_by_role("button", name="Approve", exact=True).click()  # alice's claim blocks nothing
        await expect(bob_request.locator("#status")).to_have_text("approved")
        await expect(bob_request.locator(".timeline")).to_contain_text(re.compile(r"alice is reviewing it"))
        await expect(row(bob, rid)).to_have_count(0, timeout=WAIT_MS)
        assert bob_watched.errors == [] and alice_watched.errors == []


async def test_a_claim_is_released_by_its_holder(served: Served) -> None:
    rid = await ask(served.base, action="vendor.pay", summary="Pay ACME", payload={"eur": 5})
    async with chromium() as browser:
        alice, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await alice.goto(f"{served.base}/requests/{rid}")
        await alice.get_by_role("button", name="Claim: I am reviewing this").click()
        await alice.get_by_role("button", name="Release").click()
        await expect(alice.get_by_role("status")).to_contain_text("You released this request")
        await expect(alice.locator("#claimed-by")).to_contain_text("Nobody")
        await expect(alice.locator(".timeline")).to_contain_text("alice stopped reviewing it")
