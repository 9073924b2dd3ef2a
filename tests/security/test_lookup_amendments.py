"""Review finding F6: a lookup that cannot answer turns a reject rule into a review trigger (it fails closed for a new
request), and approving with changes refused only "reject" outcomes. So a change to a sanctioned account was
approved wherever the lookup could not be read: by `signoff console`, which read relative `[[lookups]]` paths from
its own working directory instead of the policy file's folder (the docs' own example is relative), and by `serve`
while the lookup file was half-written. Now the console resolves lookups as `serve` does, and an approval with
changes is refused while any rule's lookup cannot answer for the changed payload."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2

from signoff.storage import Status
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.trusted import TrustedData
from tests.browser.support import http_session, running
from tests.integration.support import base_env, free_port
from tests.integration.test_http_auth import ALICE, ALICE_SHA, served

CONFIG = f"""
[[lookups]]
name = "sanctioned"
file = "sanctioned.json"

[[rules]]
name = "sanctioned account"
action = "payments.*"
outcome = "reject"
when = [{{ path = "payload.to_account", op = "exists", lookup = "sanctioned", value = true }}]

[[auth.tokens]]
identity = "alice"
role = "reviewer"
sha256 = "{ALICE_SHA}"
"""
SANCTIONED = json.dumps({"bad-9": True})


async def payments(folder: Path, count: int) -> list[str]:
    """``count`` pending transfers to an account that is not sanctioned, asked as an agent's server asks them."""
    store = await SqliteStore.open(folder / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(CONFIG)), trusted=TrustedData(folder))
        asked = [
            await service.request_approval(
                Draft(action="payments.transfer", summary="pay", payload={"to_account": "ok-1", "amount": n})
            )
            for n in range(count)
        ]
        sanctioned = await service.request_approval(
            Draft(action="payments.transfer", summary="pay", payload={"to_account": "bad-9", "amount": 1})
        )
    finally:
        await store.close()
    assert sanctioned.status is Status.REJECTED  # the guardrail, for a new request
    assert all(request.status is Status.PENDING for request in asked)
    return [request.id for request in asked]


async def stored(folder: Path, request_id: str) -> tuple[Status, object, int]:
    store = await SqliteStore.open(folder / "signoff.db")
    try:
        request = await store.get(request_id)
    finally:
        await store.close()
    assert request is not None
    return request.status, request.approved_payload, len(request.votes)


async def test_the_console_reads_lookups_from_the_policy_files_folder_as_serve_does(tmp_path: Path) -> None:
    (tmp_path / "sanctioned.json").write_text(SANCTIONED)
    async with served(tmp_path, CONFIG) as serve:  # writes signoff.toml beside sanctioned.json
        to_serve, to_console, changed_ok = await payments(tmp_path, 3)
        async with httpx2.AsyncClient(timeout=30) as http:
            api = await http.post(
                f"{serve}/api/requests/{to_serve}/votes",
                headers={"Authorization": f"Bearer {ALICE}"},
                json={"verdict": "approve", "approved_payload": {"to_account": "bad-9", "amount": 0}},
            )
    assert api.status_code == 403 and "sanctioned account" in api.json()["error"], api.text

    elsewhere = tmp_path / "elsewhere"  # the console's working directory is not the policy file's folder
    elsewhere.mkdir()
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"))
    port, log = free_port(), tmp_path / "console.log"
    base = f"http://127.0.0.1:{port}"
    with running(["console", "--port", str(port)], env, log, port, cwd=elsewhere):
        async with http_session(base, ALICE) as (http, csrf):
            sanctioned = await http.post(
                f"/requests/{to_console}/vote",
                headers={"Origin": base},
                data={"csrf": csrf, "verdict": "approve", "approved_payload": json.dumps({"to_account": "bad-9"})},
            )
            fine = await http.post(
                f"/requests/{changed_ok}/vote",
                headers={"Origin": base},
                data={"csrf": csrf, "verdict": "approve", "approved_payload": json.dumps({"to_account": "ok-2"})},
            )
    # the guardrail itself refused it: the console read the lookup, from the policy file's folder
    assert sanctioned.status_code == 403, sanctioned.text
    assert "the policy rejects the changed payload" in sanctioned.text and "sanctioned account" in sanctioned.text
    assert await stored(tmp_path, to_console) == (Status.PENDING, None, 0)
    # and a change the lookup clears is approved (it would be refused if the lookup could not be read)
    assert fine.status_code == 303, fine.text
    assert await stored(tmp_path, changed_ok) == (Status.APPROVED, {"to_account": "ok-2"}, 1)


async def test_while_a_lookup_cannot_answer_no_approval_with_changes_is_taken_and_nothing_changes(
    tmp_path: Path,
) -> None:
    (tmp_path / "sanctioned.json").write_text(SANCTIONED)
    async with served(tmp_path, CONFIG) as base:
        by_api, by_console = await payments(tmp_path, 2)
        (tmp_path / "sanctioned.json").write_text('{"bad-9": tr')  # the file caught half-written
        async with httpx2.AsyncClient(timeout=30) as http:
            api = await http.post(
                f"{base}/api/requests/{by_api}/votes",
                headers={"Authorization": f"Bearer {ALICE}"},
                json={"verdict": "approve", "approved_payload": {"to_account": "bad-9", "amount": 0}},
            )
            api_after = await stored(tmp_path, by_api)
            plain = await http.post(  # what the refusal says to do instead: approve the payload as asked
                f"{base}/api/requests/{by_api}/votes",
                headers={"Authorization": f"Bearer {ALICE}"},
                json={"verdict": "approve"},
            )
        async with http_session(base, ALICE) as (http, csrf):
            console = await http.post(
                f"/requests/{by_console}/vote",
                headers={"Origin": base},
                data={"csrf": csrf, "verdict": "approve", "approved_payload": json.dumps({"to_account": "bad-9"})},
            )
    assert api.status_code == 403, api.text
    error = api.json()["error"]
    assert "lookup sanctioned" in error and "is not valid JSON" in error, error
    assert "approve without changes" in error and "fix the lookup" in error, error
    assert api_after == (Status.PENDING, None, 0)
    assert plain.status_code == 200 and plain.json()["status"] == "approved" and not plain.json()["payload_changed"]
    assert console.status_code == 403 and "approve without changes" in console.text, console.text
    assert await stored(tmp_path, by_console) == (Status.PENDING, None, 0)
