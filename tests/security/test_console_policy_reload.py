"""Review finding F2: `signoff console` read the policy file once, while `serve` reloads it. After the operator added
`ops-bot` to bob's aliases in `[[people]]` (bob is then the requester of ops-bot's requests, and may not approve
them), the running console still let bob approve his own agent's request; the CLI, reading the file afresh, refused.
Now the console reloads the file as `serve` does: a valid edit applies ([[people]], [redact], rules), a broken one is
refused with a log line and the last good policy stays."""

from __future__ import annotations

from pathlib import Path

import anyio

from signoff.server.auth import new_token
from signoff.storage import Status
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.browser.support import http_session, running
from tests.integration.support import base_env, free_port, signoff

BOB, BOB_SHA = new_token()
SECRET = "4111-0000-SECRET"
CONFIG = f'[[auth.tokens]]\nidentity = "bob"\nrole = "reviewer"\nsha256 = "{BOB_SHA}"\n'
OWNED = CONFIG + '\n[[people]]\nname = "bob"\naliases = ["ops-bot"]\n\n[redact]\npaths = ["payload.card"]\n'
BROKEN = OWNED + '\n[[rules]]\nname = "typo"\nwhen = [{ path = "payload.table", op = "gtt", value = 1 }]\n'


async def logged(log: Path, text: str, times: int = 1) -> None:
    """Wait until the console's log has ``text`` ``times`` times (it says when it reloads; no other event shows it)."""
    with anyio.fail_after(60):
        while log.read_text().count(text) < times:
            await anyio.sleep(0.05)


async def test_the_console_applies_an_edited_policy_and_keeps_the_last_good_one_over_a_broken_edit(
    tmp_path: Path,
) -> None:
    config, db = tmp_path / "signoff.toml", tmp_path / "signoff.db"
    config.write_text(CONFIG)
    store = await SqliteStore.open(db)
    try:
        service = ApprovalService(store)
        first, second = [
            (
                await service.request_approval(
                    Draft(action="db.drop", summary="drop", payload={"table": n, "card": SECRET}, agent_id="ops-bot")
                )
            ).id
            for n in range(2)
        ]
    finally:
        await store.close()
    env = base_env(db, SIGNOFF_CONFIG=str(config))
    port, log = free_port(), tmp_path / "console.log"
    base = f"http://127.0.0.1:{port}"
    with running(["console", "--port", str(port)], env, log, port):
        async with http_session(base, BOB) as (http, csrf):
            before = await http.get(f"/requests/{first}")
            assert SECRET in before.text  # nothing is masked yet

            config.write_text(OWNED)  # the operator: ops-bot is bob's agent, and card numbers are masked
            await logged(log, "policy reloaded from")
            cli = await signoff(env, "review", "approve", first, "--as", "bob")
            assert cli.returncode != 0 and "cannot vote" in cli.stderr, cli  # the CLI reads the file afresh
            voted = await http.post(
                f"/requests/{first}/vote", data={"csrf": csrf, "verdict": "approve"}, headers={"Origin": base}
            )
            assert voted.status_code == 403 and "cannot vote" in voted.text, voted.text
            masked = await http.get(f"/requests/{second}")
            assert SECRET not in masked.text and "[redacted]" in masked.text

            config.write_text(BROKEN)  # a bad edit: refused, and the policy in force stays
            await logged(log, "policy not reloaded")
            again = await http.post(
                f"/requests/{second}/vote", data={"csrf": csrf, "verdict": "approve"}, headers={"Origin": base}
            )
            assert again.status_code == 403 and "cannot vote" in again.text, again.text
    store = await SqliteStore.open(db)
    try:
        left = [await store.get(request_id) for request_id in (first, second)]
    finally:
        await store.close()
    assert [(r.status, r.votes) for r in left if r is not None] == [(Status.PENDING, ()), (Status.PENDING, ())]
