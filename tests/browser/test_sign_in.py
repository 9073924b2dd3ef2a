"""Signing in to the console with a reviewer token, and out again; wrong tokens and agents' tokens stay out."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOT, WAIT_MS, Served, chromium, new_page, sign_in

pytestmark = pytest.mark.slow


async def test_a_reviewer_signs_in_and_out(served: Served) -> None:
    async with chromium() as browser:
        context, page, watched = await new_page(browser)
        await page.goto(f"{served.base}/")
        await expect(page).to_have_url(re.compile(r"/sign-in$"))  # the queue needs a session
        await sign_in(page, served.base, ALICE, "alice")
        await expect(page.get_by_role("heading", name="Queue")).to_be_visible()
        (cookie,) = [c for c in await context.cookies() if c["name"] == "signoff_console"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http here

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.goto(f"{served.base}/")
        await expect(page).to_have_url(re.compile(r"/sign-in$"))  # the old session is gone on the server
        assert watched.errors == [] and watched.dialogs == []
    log = served.log.read_text()
    assert "console sign-in: alice" in log and "console sign-out: alice" in log


async def test_a_wrong_token_and_an_agents_token_are_refused(served: Served) -> None:
    async with chromium() as browser:
        _, page, _ = await new_page(browser)
        await page.goto(f"{served.base}/sign-in")
        await page.get_by_label("Token").fill("so_not-a-real-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("That token is not valid", timeout=WAIT_MS)

        await page.get_by_label("Token").fill(BOT)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("Agents' tokens cannot sign in", timeout=WAIT_MS)
        await page.goto(f"{served.base}/")
        await expect(page).to_have_url(re.compile(r"/sign-in$"))
    assert "console sign-in refused" in served.log.read_text()
