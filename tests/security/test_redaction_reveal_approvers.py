"""Who may see what ``[redact]`` masks (review R4): only someone who may vote on the request. A reviewer the rule
does not name as an approver was refused the vote but could still read the masked values with ``?reveal=1``, in
the reviewer API and in the console; now both refuse it, record nothing, and still show the masked request."""

from __future__ import annotations

from pathlib import Path

import httpx2

from signoff.storage import EventKind, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.browser.support import ALICE as ALICE_CONSOLE
from tests.browser.support import BOB, http_session, running
from tests.browser.support import CONFIG as BROWSER_CONFIG
from tests.integration.support import base_env, free_port
from tests.integration.test_http_auth import ALICE, CAROL, CONFIG, served

RULES = """\
[redact]
paths = ["payload.ssn"]

[[rules]]
name = "hr-only-alice"
action = "hr.*"
outcome = "review"
approvers = ["alice"]

"""
SSN = "987-65-4321"


async def test_only_an_approver_of_the_request_sees_its_masked_values(tmp_path: Path) -> None:
    config = RULES + CONFIG
    async with served(tmp_path, config) as base:
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config(config)))
            draft = Draft(action="hr.update", summary="s", payload={"ssn": SSN}, agent_id="etl-bot")
            request = await service.request_approval(draft)
            async with (
                httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {CAROL}"}, timeout=30) as carol,
                httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30) as alice,
            ):
                refused = await carol.get(f"/api/requests/{request.id}", params={"reveal": "1"})
                after_refusal = [e.kind for e in await store.request_events(request.id)]
                shown = await alice.get(f"/api/requests/{request.id}", params={"reveal": "1"})
            revealed = [e for e in await store.request_events(request.id) if e.kind is EventKind.REVEALED]
        finally:
            await store.close()
    assert refused.status_code == 403, refused.text
    assert SSN not in refused.text and "shown to its approvers only" in refused.json()["error"]
    assert EventKind.REVEALED not in after_refusal  # nothing recorded for a refusal
    assert shown.status_code == 200 and shown.json()["payload"]["ssn"] == SSN
    assert [(e.data["reviewer"], e.data["via"]) for e in revealed] == [("alice", "api")]


async def test_the_console_shows_masked_values_to_an_approver_only(tmp_path: Path) -> None:
    config = '[redact]\npaths = ["payload.ssn"]\n' + BROWSER_CONFIG
    (tmp_path / "signoff.toml").write_text(config)
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"))
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            draft = Draft(action="deploy.web", summary="s", payload={"ssn": SSN}, agent_id="etl-bot")
            service = ApprovalService(store, Policy(parse_policy_config(config)))
            request = await service.request_approval(draft)  # "deploys need alice"
        finally:
            await store.close()
        async with http_session(base, BOB) as (bob, _):
            refused = await bob.get(f"/requests/{request.id}", params={"reveal": "1"})
        async with http_session(base, ALICE_CONSOLE) as (alice, _):
            shown = await alice.get(f"/requests/{request.id}", params={"reveal": "1"})
    assert refused.status_code == 403 and SSN not in refused.text
    assert "shown to its approvers only" in refused.text
    assert shown.status_code == 200 and SSN in shown.text


PREVIOUS_RULES = """\
[redact]
paths = ["payload.ssn"]

[[rules]]
name = "exec records need bob"
action = "hr.*"
when = [ { path = "payload.level", op = "eq", value = "exec" } ]
outcome = "review"
approvers = ["bob"]

[[rules]]
name = "hr needs alice"
action = "hr.*"
outcome = "review"
approvers = ["alice"]

"""
EXEC_SSN = "111-22-3333"


async def test_revealing_a_request_shows_nothing_masked_of_the_request_before_it(tmp_path: Path) -> None:
    """The request page compares the payload with the previous approval of the same action and agent: revealing
    this request (alice may) must not reveal that one's masked values (only bob may: review R5)."""
    config = PREVIOUS_RULES + BROWSER_CONFIG
    (tmp_path / "signoff.toml").write_text(config)
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"))
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        store = await SqliteStore.open(tmp_path / "signoff.db")
        try:
            service = ApprovalService(store, Policy(parse_policy_config(config)))
            exec_payload = {"level": "exec", "ssn": EXEC_SSN}
            earlier = await service.request_approval(
                Draft(action="hr.update", summary="s", payload=exec_payload, agent_id="etl-bot")
            )
            await service.vote(earlier.id, "bob", Verdict.APPROVE, None)
            staff_payload = {"level": "staff", "ssn": "999-88-7777"}
            shown_request = await service.request_approval(
                Draft(action="hr.update", summary="s", payload=staff_payload, agent_id="etl-bot")
            )
        finally:
            await store.close()
        async with http_session(base, ALICE_CONSOLE) as (alice, _):
            shown = await alice.get(f"/requests/{shown_request.id}", params={"reveal": "1"})
    assert (earlier.approvers, shown_request.approvers) == (("bob",), ("alice",))
    assert shown.status_code == 200 and "999-88-7777" in shown.text  # alice sees what she may
    assert EXEC_SSN not in shown.text  # and nothing of the request only bob may see
