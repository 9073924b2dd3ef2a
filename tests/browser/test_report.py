"""The HTML audit report, opened from disk in a real browser: the numbers people read are the database's, the
charts draw, and nothing is fetched or run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from playwright.async_api import Locator, expect

from tests.browser.support import chromium, new_page
from tests.integration.support import base_env, signoff
from tests.integration.test_report import HOSTILE_AGENT, history

pytestmark = pytest.mark.slow


async def test_the_report_reads_right_in_the_browser(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    await history(db)
    out = tmp_path / "report.html"
    period = ("--since", "2026-01-01T00:30:00", "--until", "2026-01-01T03:00:00")
    ran = await signoff(base_env(db), "report", *period, "--output", str(out))
    assert ran.returncode == 0, ran
    with sqlite3.connect(db) as conn:
        window = "created_at >= '2026-01-01T00:30:00' AND created_at < '2026-01-01T03:00:00'"
        [(total, by_people, rejected)] = conn.execute(
            "SELECT count(*), sum(decided_by = 'human'), sum(decided_by = 'human' AND status = 'rejected')"
            f" FROM requests WHERE {window}"
        ).fetchall()

    async with chromium() as browser:
        context, page, watched = await new_page(browser)
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        await page.goto(out.as_uri())
        summary = page.get_by_role("table", name="Summary")

        def value(heading: str) -> Locator:
            header = page.get_by_role("rowheader", name=heading, exact=True)
            return summary.get_by_role("row").filter(has=header).get_by_role("cell")

        await expect(value("requests")).to_have_text(str(total))
        await expect(value("decided by people")).to_have_text(str(by_people))
        await expect(value("rejected by people")).to_have_text(str(rejected))
        agents = page.get_by_role("table", name="By agent")
        await expect(agents.get_by_role("cell", name=HOSTILE_AGENT, exact=True)).to_be_visible()  # as text
        chart = page.get_by_role("img", name="By outcome chart")
        await expect(chart).to_be_visible()
        assert await chart.locator("rect").count() == 4  # approved, rejected, expired, pending
        assert (await chart.bounding_box() or {}).get("height", 0) > 0
        assert watched.dialogs == [] and watched.errors == []
        assert fetched == [out.as_uri()]  # one self-contained file
        await context.close()
