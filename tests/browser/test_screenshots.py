"""Each console page, photographed: into the test's folder always, and into docs/img when CONSOLE_SCREENSHOTS
names that folder (``CONSOLE_SCREENSHOTS=docs/img pytest tests/browser/test_screenshots.py``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser.support import ALICE, BOT, MODELER, Served, chromium, new_page, sign_in
from tests.browser.test_history import vote
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow


async def a_model_in_canary(base: str) -> None:
    """fraud-score: v1 in production, v2 on a 10% canary approved by alice, and an hour's inferences of both."""
    async with agent(base, MODELER) as team:
        for version in ("v1", "v2"):
            await call(
                team,
                "register_model_version",
                name="fraud-score",
                version=version,
                endpoint=f"https://models.internal/fraud-score/{version}",
                metadata={"framework": "onnx", "trained_on": "2026-11"},
            )
        _, asked = await call(team, "promote_model", name="fraud-score", version="v1", reason="first release")
        await vote(base, ALICE, asked["change"]["request_id"], "approve")
        weights = {"v1": 90, "v2": 10}
        _, asked = await call(team, "set_traffic", name="fraud-score", weights=weights, reason="canary v2 at 10%")
        await vote(base, ALICE, asked["change"]["request_id"], "approve")
        items = [
            {"name": "fraud-score", "version": v, "latency_ms": 20 + n % 17, "ok": n % 50 != 0, "confidence": 0.9}
            for v, count in (("v1", 900), ("v2", 150))
            for n in range(count)
        ]
        failed, recorded = await call(team, "record_inferences", items=items)
        assert not failed, recorded


async def test_every_page_renders_for_a_screenshot(served: Served, tmp_path: Path) -> None:
    async with agent(served.base, BOT) as bot:
        for action, summary, payload, confidence in [
            ("payments.transfer", "Pay invoice 1042 to ACME Ltd", {"amount": 25000, "currency": "EUR"}, 0.62),
            ("deploy.web", "Ship web 2.3 to production", {"version": "2.3", "environment": "production"}, None),
            ("email.send", "Send the December newsletter", {"recipients": 18250, "template": "dec"}, 0.71),
        ]:
            extra = {"confidence": confidence} if confidence is not None else {}
            _, asked = await call(bot, "request_approval", action=action, summary=summary, payload=payload, **extra)
    shots = {}
    async with chromium() as browser:
        _, page, watched = await new_page(browser)
        await page.set_viewport_size({"width": 1280, "height": 720})
        await page.goto(f"{served.base}/sign-in")
        shots["console-sign-in.png"] = await page.screenshot()
        await sign_in(page, served.base, ALICE, "alice")
        await expect(page.get_by_text("Live updates: on")).to_be_visible()
        shots["console-queue.png"] = await page.screenshot()
        await page.locator(f'tr[data-request="{asked["request_id"]}"]').get_by_role("link").click()
        await expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
        shots["console-request.png"] = await page.screenshot(full_page=True)
        await page.get_by_text("Approve with changes", exact=True).click()
        editor = page.get_by_label("Approved payload (JSON)")
        await editor.fill(json.dumps({"recipients": 500, "template": "dec"}, indent=2))
        await page.get_by_label("Comment for the agent").fill("a test batch of 500 first")
        shots["console-approve-with-changes.png"] = await page.locator("#amend-box").screenshot()
        await page.get_by_role("button", name="Approve the changed payload").click()
        await expect(page.locator("#status")).to_have_text("approved")
        shots["console-approved-with-changes.png"] = await page.screenshot(full_page=True)
        await page.get_by_role("link", name="History").click()
        await page.get_by_role("button", name="Check the audit chain now").click()
        await expect(page.locator("#chain")).to_contain_text("events verified")
        shots["console-history.png"] = await page.screenshot(full_page=True)
        await a_model_in_canary(served.base)
        await page.get_by_role("link", name="Models", exact=True).click()
        await expect(page.locator('tr[data-model="fraud-score"]')).to_contain_text("canary")
        shots["console-models.png"] = await page.screenshot()
        await page.get_by_role("link", name="fraud-score").click()
        await expect(page.locator("#canaries .verdict")).to_be_visible()
        shots["console-model.png"] = await page.screenshot(full_page=True)
        assert watched.errors == [] and watched.dialogs == []
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    for name, png in shots.items():
        assert png.startswith(b"\x89PNG") and len(png) > 5000, name  # an image of a page, not a blank
        (tmp_path / name).write_bytes(png)
        if target:
            shutil.copy(tmp_path / name, Path(target) / name)
