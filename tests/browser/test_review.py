"""A reviewer finds, reads and decides requests in the browser; every refusal is shown, never hidden."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from playwright.async_api import Page, expect

from tests.browser.support import ALICE, BOB, BOT, CAROL, WAIT_MS, Served, chromium, signed_in_page
from tests.integration.support import signoff, wait_during
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow


async def ask(base: str, **arguments: Any) -> str:
    async with agent(base, BOT) as bot:
        failed, status = await call(bot, "request_approval", **arguments)
    assert not failed, status
    assert status["status"] == "pending", status
    request_id: str = status["request_id"]
    return request_id


def row(page: Page, request_id: str) -> Any:
    return page.locator(f'tr[data-request="{request_id}"]')


async def test_a_request_made_anywhere_appears_in_an_open_queue_and_leaves_when_decided(served: Served) -> None:
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await expect(page.get_by_text("Live updates: on")).to_be_visible()
        rid = await ask(
            served.base,
            action="payments.transfer",
            summary="Pay invoice 1042 to ACME Ltd",
            payload={"amount": 25000, "currency": "EUR"},
            confidence=0.4,
        )
        line = row(page, rid)  # no reload: the row arrives by server-sent events
        await expect(line).to_be_visible(timeout=WAIT_MS)
        await expect(line).to_contain_text("payments.transfer")
        await expect(line).to_contain_text("Pay invoice 1042 to ACME Ltd")
        await expect(line).to_contain_text("billing-bot")
        await expect(line).to_contain_text("0.40")
        await expect(line).to_contain_text("0 of 2")  # the rule asks for two people
        await expect(line).to_contain_text("urgent")
        await expect(line).to_contain_text("below")  # the confidence trigger, in words
        await expect(line.locator("time")).to_have_text(re.compile(r"^in \d+"))  # a countdown

        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BOB}"}) as api:  # another channel
            voted = await api.post(f"{served.base}/api/requests/{rid}/votes", json={"verdict": "approve"})
        assert voted.status_code == 200, voted.text
        await expect(line).to_contain_text("1 of 2", timeout=WAIT_MS)  # progress shows live too
        rejected = await signoff(served.env, "review", "reject", rid, "--as", "dave", "--comment", "wrong account")
        assert rejected.returncode == 0, rejected  # another process, through the shared database
        await expect(line).to_have_count(0, timeout=WAIT_MS)
        assert watched.errors == [] and watched.dialogs == []


async def test_the_queue_filters_by_action_agent_and_priority(served: Served) -> None:
    deploy = await ask(served.base, action="deploy.web", summary="ship web 2.3", payload={"version": "2.3"})
    purge = await ask(served.base, action="cache.purge", summary="purge the CDN", payload={})
    async with chromium() as browser:
        page, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await expect(row(page, deploy)).to_be_visible()
        await expect(row(page, purge)).to_be_visible()

        async def choose(label: str, value: str, url: str) -> None:
            """Each choice submits the filter form: wait for the new page, and for its script (which submits the
            next choice) to be running, before the next choice, or that choice is lost."""
            await page.get_by_label(label).select_option(value)
            await expect(page).to_have_url(re.compile(url), timeout=WAIT_MS)
            await expect(page.get_by_text("Live updates: on")).to_be_visible()

        await expect(page.get_by_text("Live updates: on")).to_be_visible()
        await choose("Action", "deploy.web", r"action=deploy\.web")
        await expect(row(page, deploy)).to_be_visible()
        await expect(row(page, purge)).to_have_count(0)
        await choose("Action", "", r"action=&")
        await choose("Priority", "urgent", r"priority=urgent")
        await expect(row(page, purge)).to_have_count(0)
        await choose("Priority", "", r"priority=(&|$)")
        await choose("Agent", "billing-bot", r"agent=billing-bot")
        await expect(row(page, purge)).to_be_visible()


async def test_approving_in_the_browser_wakes_an_agent_waiting_in_get_status(served: Served) -> None:
    rid = await ask(served.base, action="email.send", summary="Send the newsletter", payload={"to": "all"})
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{rid}")
        await expect(page.locator("#status")).to_have_text("pending")
        await expect(page.locator("time[data-expires]")).to_have_text(re.compile(r"^in "))  # the page's script runs

        async def approve_with_the_keyboard() -> None:
            await page.keyboard.press("a")
            await expect(page.locator("#status")).to_have_text("approved", timeout=WAIT_MS)
            await expect(page.get_by_role("status")).to_contain_text("Your approval was recorded")

        async with agent(served.base, BOT) as bot:
            waited, _ = await wait_during(bot, rid, approve_with_the_keyboard)
        assert waited.status["status"] == "approved"
        await expect(page.get_by_text("alice approve")).to_be_visible()  # the vote, and the timeline below it
        await expect(page.locator(".timeline")).to_contain_text("decided")
        assert watched.errors == [] and watched.dialogs == []


async def test_a_rejection_needs_a_reason(served: Served) -> None:
    rid = await ask(served.base, action="db.migrate", summary="Run migration 42", payload={"db": "orders"})
    async with chromium() as browser:
        page, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{rid}")
        await page.get_by_role("button", name="Reject").click()
        await expect(page.get_by_role("alert")).to_contain_text("A reason is required to reject")
        await expect(page.locator("#status")).to_have_text("pending")
        await expect(page.locator("time[data-expires]")).to_have_text(re.compile(r"^in "))  # the page's script runs

        await page.keyboard.press("r")  # with no reason written, r puts the cursor in Reason
        await expect(page.get_by_label("Reason")).to_be_focused()
        await page.get_by_label("Reason").fill("the migration has no rollback")
        await page.get_by_role("button", name="Reject").click()
        await expect(page.locator("#status")).to_have_text("rejected")
        await expect(page.locator(".votes")).to_contain_text("the migration has no rollback")


async def test_refusals_are_shown_to_the_requesters_own_person_a_non_approver_and_a_late_clicker(
    served: Served,
) -> None:
    own = await ask(served.base, action="reports.send", summary="Send Q3 report", payload={"quarter": 3})
    deploy = await ask(served.base, action="deploy.api", summary="ship api 9", payload={"version": "9"})
    late = await ask(served.base, action="reports.archive", summary="Archive Q2", payload={"quarter": 2})
    async with chromium() as browser:
        carol, _ = await signed_in_page(browser, served.base, CAROL, "carol")  # carol owns billing-bot
        await carol.goto(f"{served.base}/requests/{own}")
        await carol.get_by_role("button", name="Approve", exact=True).click()
        await expect(carol.get_by_role("alert")).to_contain_text("cannot vote on it")
        await expect(carol.locator("#status")).to_have_text("pending")

        bob, _ = await signed_in_page(browser, served.base, BOB, "bob")
        await bob.goto(f"{served.base}/requests/{deploy}")
        await bob.get_by_role("button", name="Approve", exact=True).click()
        await expect(bob.get_by_role("alert")).to_contain_text("bob is not an approver")
        await expect(bob.locator("#status")).to_have_text("pending")
        await expect(bob.locator(".timeline")).to_contain_text("refused")  # the refusal is in the audit log

        alice, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await alice.goto(f"{served.base}/requests/{late}")
        await alice.get_by_label("Reason").fill("fine by me")  # she is writing: her page is not reloaded under her
        await bob.goto(f"{served.base}/requests/{late}")
        await bob.get_by_role("button", name="Approve", exact=True).click()
        await expect(bob.locator("#status")).to_have_text("approved")
        await expect(alice.locator("#changed")).to_contain_text("approved by human (bob voted approve)")
        await alice.get_by_role("button", name="Approve", exact=True).click()  # too late all the same
        await expect(alice.get_by_role("alert")).to_contain_text("already approved by bob")


async def test_an_open_request_page_follows_a_decision_made_elsewhere(served: Served) -> None:
    rid = await ask(served.base, action="dns.update", summary="Point www at the new host", payload={"ttl": 300})
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, CAROL, "carol")
        await page.goto(f"{served.base}/requests/{rid}")
        await expect(page.locator("#status")).to_have_text("pending")
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BOB}"}) as api:  # another channel
            voted = await api.post(f"{served.base}/api/requests/{rid}/votes", json={"verdict": "approve"})
        assert voted.status_code == 200, voted.text
        await expect(page.locator("#status")).to_have_text("approved", timeout=WAIT_MS)  # no reload by carol
        await expect(page.locator(".votes")).to_contain_text("bob approve")
        await expect(page.locator(".timeline")).to_contain_text("bob voted approve")
        await expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
        assert watched.errors == [] and watched.dialogs == []


async def test_the_request_page_explains_why_and_what_changed_since_the_last_approval(served: Served) -> None:
    first = await ask(served.base, action="budget.raise", summary="Raise Q1 ads", payload={"eur": 1000, "team": "ads"})
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BOB}"}) as api:
        voted = await api.post(f"{served.base}/api/requests/{first}/votes", json={"verdict": "approve"})
    assert voted.status_code == 200, voted.text
    second = await ask(
        served.base, action="budget.raise", summary="Raise Q2 ads", payload={"eur": 9000, "team": "ads"}, confidence=0.5
    )
    async with chromium() as browser:
        page, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{second}")
        why = page.locator(".triggers")
        await expect(why).to_contain_text("confidence 0.5 is below the threshold 0.85")
        await expect(why).to_contain_text("not sure enough of itself")  # the kind of trigger, in words
        await expect(page.locator("#previous")).to_contain_text(first)
        changed = page.locator("#previous-changes")
        await expect(changed).to_contain_text("eur")
        await expect(changed).to_contain_text("1000")
        await expect(changed).to_contain_text("9000")
        await expect(changed).not_to_contain_text("team")  # unchanged keys are left out
        await expect(page.locator(".timeline")).to_contain_text("billing-bot asked for budget.raise")
