"""The issue's "done when", in a real browser: a reviewer who has never seen signoff signs in, finds the most
urgent request, sees why it is there, approves it with a change, and the waiting agent has the changed payload and
a receipt for it (and Claude Code's permission prompt runs the tool with the changed input)."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest
from playwright.async_api import Page, expect

from tests.browser.support import ALICE, BOT, WAIT_MS, Served, chromium, signed_in_page
from tests.browser.test_review import ask
from tests.integration.support import wait_during
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

ASKED = {"amount": 900, "order": "A-17", "method": "card"}
CHANGED = {"amount": 90, "order": "A-17", "method": "card"}


async def amend(page: Page, text: str) -> None:
    """Open Approve with changes, put ``text`` in the editor, and approve."""
    box = page.locator("#amend-box")
    if await box.get_attribute("open") is None:
        await page.get_by_text("Approve with changes", exact=True).click()
    await page.get_by_label("Approved payload (JSON)").fill(text)
    await page.get_by_role("button", name="Approve the changed payload").click()


async def test_a_new_reviewer_approves_the_most_urgent_request_with_a_change(served: Served) -> None:
    await ask(served.base, action="reports.send", summary="Send the Q3 report", payload={"quarter": 3})
    refund = await ask(served.base, action="refunds.issue", summary="Refund order A-17", payload=ASKED, confidence=0.3)
    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        first = page.locator("#rows tr").first  # the most urgent: high priority before normal
        await expect(first).to_have_attribute("data-request", refund)
        await first.get_by_role("link", name="refunds.issue").click()
        await expect(page.locator("#status")).to_have_text("pending")
        why = page.locator(".triggers")
        await expect(why).to_contain_text("refunds go to a person first")  # the rule by name
        await expect(why).to_contain_text("confidence 0.3 is below the threshold 0.85")

        await expect(page.locator("time[data-expires]")).to_have_text(re.compile(r"^in "))  # the page's script runs
        await page.keyboard.press("e")  # the shortcut opens the editor with the payload as asked
        editor = page.get_by_label("Approved payload (JSON)")
        await expect(editor).to_be_focused()
        assert json.loads(await editor.input_value()) == ASKED

        await amend(page, '{"amount": 90, "order": ')  # not JSON: refused, the text kept to fix
        await expect(page.get_by_role("alert")).to_contain_text("not valid JSON (line 1")
        await expect(editor).to_have_value('{"amount": 90, "order": ')
        await amend(page, json.dumps({**CHANGED, "amount": 9000}))  # the policy's schema caps refunds
        await expect(page.get_by_role("alert")).to_contain_text("schema")
        await amend(page, json.dumps({**CHANGED, "method": "gift-card"}))  # a guardrail would reject it
        await expect(page.get_by_role("alert")).to_contain_text("no refunds to gift cards")
        await expect(page.locator("#status")).to_have_text("pending")

        async def approve_changed() -> None:
            await page.get_by_label("Comment for the agent").fill("refund the item, not the shipping")
            await amend(page, json.dumps(CHANGED, indent=2))
            await expect(page.locator("#status")).to_have_text("approved", timeout=WAIT_MS)

        async with agent(served.base, BOT) as bot:
            waited, _ = await wait_during(bot, refund, approve_changed)
            status = waited.status
            _, with_changed = await call(
                bot, "verify_receipt", receipt=status["receipt"], action="refunds.issue", payload=CHANGED
            )
            _, with_asked = await call(
                bot, "verify_receipt", receipt=status["receipt"], action="refunds.issue", payload=ASKED
            )
        await expect(page.get_by_role("status")).to_contain_text("Your approval with changes was recorded")
        changes = page.locator("#changes")
        await expect(changes).to_contain_text("amount")
        await expect(changes).to_contain_text("900")
        await expect(changes).to_contain_text("90")
        await expect(page.locator(".timeline")).to_contain_text("approved_payload")  # the audit log has both
        refused = "Failed to load resource"  # the 400 and 403 pages of the refusals above, nothing else
        assert [e for e in watched.errors if not e.startswith(refused)] == [] and watched.dialogs == []
    assert status["status"] == "approved" and status["payload_changed"] is True
    assert status["approved_payload"] == CHANGED
    assert "approved_payload" in status["message"]
    assert status["votes"][0]["comment"] == "refund the item, not the shipping"
    assert with_changed == {"valid": True, "reason": None}
    assert with_asked["valid"] is False and "with changes" in with_asked["reason"]


async def test_a_permission_prompt_runs_the_tool_with_the_input_the_reviewer_approved(served: Served) -> None:
    asked = {"command": "rm -rf /srv/app/build /srv/app/data"}
    changed = {"command": "rm -rf /srv/app/build"}
    answer: list[dict[str, Any]] = []
    async with chromium() as browser, agent(served.base, BOT) as bot:
        page, _ = await signed_in_page(browser, served.base, ALICE, "alice")

        async def prompt() -> None:
            result = await bot.call_tool("permission_prompt", {"tool_name": "Bash", "input": asked})
            answer.append(json.loads(result.content[0].text))  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            tg.start_soon(prompt)
            waiting = page.locator("#rows tr", has_text="Bash")
            await expect(waiting).to_have_count(1, timeout=WAIT_MS)  # the prompt's request, live in the queue
            await waiting.get_by_role("link", name="Bash").click()
            await amend(page, json.dumps(changed))
            await expect(page.locator("#status")).to_have_text("approved", timeout=WAIT_MS)
    assert answer == [{"behavior": "allow", "updatedInput": changed}]


async def test_a_request_needing_two_people_offers_no_change(served: Served) -> None:
    rid = await ask(served.base, action="payments.transfer", summary="Pay ACME", payload={"amount": 5})
    async with chromium() as browser:
        page, _ = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{rid}")
        await expect(page.locator("#no-change")).to_contain_text("needs 2 approvals")
        await expect(page.get_by_text("Approve with changes", exact=True)).to_have_count(0)
