"""The Models pages: a reviewer sees each model's versions, aliases, traffic, stats, canary verdict, the changes
waiting for approval (and approves one from its request page) and the history; what agents wrote stays inert."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, MODELER, Served, chromium, signed_in_page
from tests.browser.test_safety import BIDI, IMG, LINK, SCRIPT, ZERO_WIDTH
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

REASON = f"{SCRIPT} ship it {BIDI} {ZERO_WIDTH}"


async def test_a_reviewer_reads_a_model_and_approves_its_pending_change(served: Served) -> None:
    async with agent(served.base, MODELER) as team:
        for version in ("v1", "v2"):
            failed, _ = await call(
                team,
                "register_model_version",
                name="fraud",
                version=version,
                endpoint=f"http://models.internal/fraud/{version}",
                metadata={"note": IMG, "docs": LINK},
            )
            assert not failed
        failed, asked = await call(team, "promote_model", name="fraud", version="v1", reason=REASON)
        assert not failed and asked["change"]["status"] == "pending", asked
        request_id = asked["change"]["request_id"]

    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.get_by_role("link", name="Models", exact=True).click()
        listed = page.locator('tr[data-model="fraud"]')
        await expect(listed).to_contain_text("no traffic")
        await expect(listed).to_contain_text("1 change(s)")

        await listed.get_by_role("link", name="fraud").click()
        await expect(page.get_by_role("heading", name="Model fraud")).to_be_visible()
        await expect(page.locator("#versions tbody tr")).to_have_count(2)
        await expect(page.locator("#stats tbody tr")).to_have_count(2)  # one row per version, served or not
        change = page.locator("#pending-changes tbody tr")
        await expect(change).to_have_count(1)
        await expect(change).to_contain_text("promote")
        await expect(change).to_contain_text(SCRIPT)  # shown as text
        await expect(change).to_contain_text("\\u202e")  # the override is shown, not obeyed
        await expect(change).to_contain_text("\\u200b")
        await expect(page.locator('#versions tr[data-version="v1"]')).to_contain_text(
            IMG.replace('"', '\\"')
        )  # as JSON, quotes escaped
        assert await page.locator("main script, main img, main a[href^='javascript']").count() == 0

        await change.get_by_role("link", name=f"Review request {request_id}").click()
        await expect(page).to_have_url(f"{served.base}/requests/{request_id}")
        await page.get_by_role("button", name="Approve", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Your approval was recorded.")

        await page.goto(f"{served.base}/models/fraud")
        await expect(page.locator("#facts")).to_contain_text("v1")
        await expect(page.locator("#traffic")).to_have_text("v1 100%")
        await expect(page.locator("#no-pending")).to_be_visible()
        await expect(page.locator('#versions tr[data-version="v1"]')).to_contain_text("production")
        await expect(page.locator('#stats tr[data-version="v1"]')).to_contain_text("too few to judge")
        await expect(page.locator("#no-canary")).to_be_visible()
        applied = page.locator("#history tbody tr").first
        await expect(applied).to_contain_text("promote")
        await expect(applied).to_contain_text("applied")
        await expect(applied).to_contain_text("alice")

        async with agent(served.base, MODELER) as team:
            failed, asked = await call(
                team, "set_traffic", name="fraud", weights={"v1": 90, "v2": 10}, reason="canary v2"
            )
            assert not failed, asked
        await page.reload()
        await expect(page.locator("#pending-changes tbody tr")).to_contain_text("set_traffic")

        assert watched.dialogs == [] and watched.errors == []
        await page.goto(f"{served.base}/models/no%20such")
        await expect(page.get_by_role("heading", name="No model named no such")).to_be_visible()


async def test_a_canary_shows_its_verdict(served: Served) -> None:
    async with agent(served.base, MODELER) as team:
        for version in ("v1", "v2"):
            await call(team, "register_model_version", name="churn", version=version, endpoint=f"http://c/{version}")
        _, asked = await call(team, "promote_model", name="churn", version="v1", reason="first")
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{asked['change']['request_id']}")
        await page.get_by_role("button", name="Approve", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Your approval was recorded.")
        async with agent(served.base, MODELER) as team:
            _, asked = await call(team, "set_traffic", name="churn", weights={"v1": 80, "v2": 20}, reason="try v2")
        await page.goto(f"{served.base}/requests/{asked['change']['request_id']}")
        await page.get_by_role("button", name="Approve", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Your approval was recorded.")
        await page.goto(f"{served.base}/models/churn")
        await expect(page.locator("#traffic")).to_have_text("v1 80%, v2 20%")
        canary = page.locator('#canaries li[data-version="v2"]')
        await expect(canary.locator(".verdict")).to_have_text("insufficient data")
        await expect(page.locator("#stats tbody tr")).to_have_count(2)
        assert watched.dialogs == [] and watched.errors == []
