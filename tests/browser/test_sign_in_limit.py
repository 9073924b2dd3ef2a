"""Failed sign-ins are limited per address (this module has a server of its own: it locks 127.0.0.1 out)."""

from __future__ import annotations

import re

import httpx2
import pytest

from tests.browser.support import ALICE, Served

pytestmark = pytest.mark.slow


async def test_after_five_failed_sign_ins_the_address_waits_even_with_a_good_token(served: Served) -> None:
    async with httpx2.AsyncClient(base_url=served.base, headers={"Origin": served.base}) as http:
        csrf = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/sign-in")).text)
        assert csrf
        codes = [
            (await http.post("/sign-in", data={"csrf": csrf.group(1), "token": f"so_guess{i}"})).status_code
            for i in range(5)
        ]
        held = await http.post("/sign-in", data={"csrf": csrf.group(1), "token": ALICE})
    assert codes == [401] * 5
    assert held.status_code == 429 and "Too many failed sign-ins" in held.text
    assert "console sign-in: alice" not in served.log.read_text()
