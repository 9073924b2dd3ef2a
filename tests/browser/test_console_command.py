"""`signoff console` alone, over the database that stdio agents use: a one-time sign-in link, live updates from
another process, and a vote that the agent's own server reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp import Client
from playwright.async_api import expect

from tests.browser.support import WAIT_MS, chromium, new_page, running
from tests.integration.support import ask, base_env, free_port, signoff, status_of, stdio_params

pytestmark = pytest.mark.slow


def links(log: Path) -> list[str]:
    return re.findall(r"sign in once at (\S+)", log.read_text())


async def test_the_console_alone_signs_in_by_a_one_time_link_and_decides_for_a_stdio_agent(tmp_path: Path) -> None:
    env = base_env(tmp_path / "signoff.db")
    port, log = free_port(), tmp_path / "console.log"
    assert (await signoff(env, "init")).returncode == 0  # the console decides on a database; it does not make one
    with running(["console", "--port", str(port), "--as", "dave"], env, log, port):
        (link,) = links(log)
        assert link.startswith(f"http://127.0.0.1:{port}/sign-in/link?key=")
        async with chromium() as browser:
            _, page, watched = await new_page(browser)
            await page.goto(link)
            await expect(page.get_by_text("Signed in as dave")).to_be_visible()
            await expect(page.get_by_text("Live updates: on")).to_be_visible()

            _, again, _ = await new_page(browser)  # the same link, in another browser profile
            await again.goto(link)
            await expect(again.get_by_role("alert")).to_contain_text("already used")
            assert len(links(log)) == 2  # the sign-in page printed a fresh link for the person at the terminal
            await again.goto(links(log)[-1])
            await expect(again.get_by_text("Signed in as dave")).to_be_visible()

            async with Client(stdio_params(env)) as agent:  # its own server process, the same database
                asked = await ask(agent, confidence=0.2)
                line = page.locator(f'tr[data-request="{asked["request_id"]}"]')
                await expect(line).to_be_visible(timeout=WAIT_MS)
                await line.get_by_role("link").click()
                await page.get_by_role("button", name="Approve", exact=True).click()
                await expect(page.locator("#status")).to_have_text("approved")
                status = status_of(await agent.call_tool("get_status", {"request_id": asked["request_id"]}))
            assert status["status"] == "approved"
            assert watched.errors == [] and watched.dialogs == []
