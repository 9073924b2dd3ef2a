"""Failed sign-ins are limited per address (this module has a server of its own: it locks 127.0.0.1 out)."""

from __future__ import annotations

import re

import httpx2
import pytest

from tests.browser.support import ALICE, Served

pytestmark = pytest.mark.slow


async def test_after_five_failed_sign_ins_the_address_waits_but_a_reviewers_token_still_signs_in(
    served: Served,
) -> None:
    """The limit holds back guesses; it must not lock out the reviewers who share the guesser's address (everyone
    behind one proxy or NAT): a reviewer's token is not a guess, and no one guesses a 256-bit token."""
    async with httpx2.AsyncClient(base_url=served.base, headers={"Origin": served.base}) as guesser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', (await guesser.get("/sign-in")).text)
        assert csrf
        codes = [
            (await guesser.post("/sign-in", data={"csrf": csrf.group(1), "token": f"so_guess{i}"})).status_code
            for i in range(6)
        ]
        held = await guesser.post("/sign-in", data={"csrf": csrf.group(1), "token": "so_guess6"})
    async with httpx2.AsyncClient(base_url=served.base, headers={"Origin": served.base}) as alice:
        csrf = re.search(r'name="csrf" value="([^"]+)"', (await alice.get("/sign-in")).text)
        assert csrf
        signed_in = await alice.post("/sign-in", data={"csrf": csrf.group(1), "token": ALICE})
    assert codes == [401] * 5 + [429]
    assert held.status_code == 429 and "Too many failed sign-ins" in held.text
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/", signed_in.status_code
    assert "console sign-in: alice" in served.log.read_text()
