"""The reviewer HTTP API shows what is approved, pages through everything, and refuses what it does not know."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from tests.integration.test_http_auth import AGENT_A, AGENT_B, ALICE, agent, call, served

AS_ALICE = {"Authorization": f"Bearer {ALICE}"}


async def test_a_reviewer_sees_the_payload_and_the_whole_story_before_voting(tmp_path: Path) -> None:
    long_note = "x" * 5000
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            _, asked = await call(
                a,
                "request_approval",
                action="payments.transfer",
                summary="pay the invoice",
                payload={"amount": 25000, "to": "acct_42", "note": long_note},
            )
        rid = asked["request_id"]
        async with httpx2.AsyncClient(headers=AS_ALICE) as http:
            listed = (await http.get(f"{base}/api/requests")).json()
            shown = await http.get(f"{base}/api/requests/{rid}")
            voted = await http.post(f"{base}/api/requests/{rid}/votes", json={"verdict": "approve", "comment": "ok"})
            after = (await http.get(f"{base}/api/requests/{rid}")).json()
            missing = await http.get(f"{base}/api/requests/req_doesnotexist")
    (item,) = listed["items"]
    assert item["request_id"] == rid and item["priority"] == "normal"
    assert item["payload_excerpt"]["amount"] == 25000 and item["payload_excerpt"]["to"] == "acct_42"
    assert item["payload_excerpt"]["note"].startswith("… (5002 bytes")  # folded, and says so
    assert item["payload_complete"] is False and item["url"] == f"/api/requests/{rid}"
    assert shown.status_code == 200
    detail = shown.json()
    assert detail["payload"] == {"amount": 25000, "to": "acct_42", "note": long_note}
    assert detail["events"][0]["kind"] == "created" and detail["triggers"]
    assert detail["receipt"] is None
    assert voted.status_code == 200
    receipt = voted.json()["receipt"]  # the approved status is the same object everywhere it is shown
    assert receipt is not None and receipt == after["receipt"]
    assert {"voted", "decided"} <= {e["kind"] for e in after["events"]}
    assert missing.status_code == 404 and "no request with id" in missing.json()["error"]


async def test_the_list_filters_and_pages_through_everything(tmp_path: Path) -> None:
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            mine = [(await call(a, "request_approval", action="db.drop", summary=f"drop {i}"))[1] for i in range(5)]
        async with agent(base, AGENT_B) as b:
            _, theirs = await call(b, "request_approval", action="etl.run", summary="run")
        seen: list[str] = []
        async with httpx2.AsyncClient(headers=AS_ALICE) as http:
            url: str | None = f"{base}/api/requests?agent_id=billing-bot&limit=2"
            pages = 0
            while url is not None:
                page: dict[str, Any] = (await http.get(url)).json()
                seen += [item["request_id"] for item in page["items"]]
                pages += 1
                cursor = page["next_cursor"]
                url = f"{base}/api/requests?agent_id=billing-bot&limit=2&cursor={cursor}" if cursor else None
            by_action = (await http.get(f"{base}/api/requests?action=etl.run&status=all")).json()
            approved = (await http.get(f"{base}/api/requests?status=approved")).json()
    assert sorted(seen) == sorted(r["request_id"] for r in mine) and len(seen) == 5 and pages == 3
    assert [item["request_id"] for item in by_action["items"]] == [theirs["request_id"]]
    assert approved["items"] == []


async def test_unknown_parameters_and_fields_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            _, asked = await call(a, "request_approval", action="db.drop", summary="drop staging")
        votes = f"{base}/api/requests/{asked['request_id']}/votes"
        async with httpx2.AsyncClient(headers=AS_ALICE) as http:
            typo = await http.get(f"{base}/api/requests?stauts=approved")
            bad_limit = await http.get(f"{base}/api/requests?limit=5000")
            superscript = await http.get(f"{base}/api/requests", params={"limit": "²"})  # "²".isdigit() is True
            bad_time = await http.get(f"{base}/api/requests?since=yesterday")
            bad_cursor = await http.get(f"{base}/api/requests?cursor=nope")
            extra = await http.post(votes, json={"verdict": "approve", "approvals_required": 0})
            not_object = await http.post(votes, json=["approve"])
            not_json = await http.post(votes, content=b"approve")
            still = (await http.get(f"{base}/api/requests/{asked['request_id']}")).json()
    assert typo.status_code == 400 and "unknown query parameter stauts" in typo.json()["error"]
    assert bad_limit.status_code == 400 and "limit must be a whole number from 1 to 200" in bad_limit.json()["error"]
    assert superscript.status_code == 400 and "limit must be a whole number" in superscript.json()["error"]
    assert bad_time.status_code == 400 and "since must be an ISO 8601" in bad_time.json()["error"]
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["error"]
    assert extra.status_code == 400 and "unknown field 'approvals_required'" in extra.json()["error"]
    assert not_object.status_code == 400 and not_json.status_code == 400
    assert still["status"] == "pending" and still["votes"] == []


async def test_a_reviewer_approves_with_changes_through_the_api(tmp_path: Path) -> None:
    async with served(tmp_path) as base:
        async with agent(base, AGENT_A) as a:
            _, asked = await call(a, "request_approval", action="files.delete", summary="clean", payload={"path": "/"})
            votes = f"{base}/api/requests/{asked['request_id']}/votes"
            async with httpx2.AsyncClient(headers=AS_ALICE) as http:
                not_object = await http.post(votes, json={"verdict": "approve", "approved_payload": ["/tmp"]})
                on_reject = await http.post(
                    votes, json={"verdict": "reject", "comment": "no", "approved_payload": {"path": "/tmp"}}
                )
                voted = await http.post(votes, json={"verdict": "approve", "approved_payload": {"path": "/tmp/x"}})
            _, status = await call(a, "get_status", request_id=asked["request_id"])
    assert not_object.status_code == 400 and "approved_payload must be a JSON object" in not_object.json()["error"]
    assert on_reject.status_code == 400 and "only an approval" in on_reject.json()["error"]
    assert voted.status_code == 200 and voted.json()["approved_payload"] == {"path": "/tmp/x"}
    assert status["payload_changed"] is True and status["approved_payload"] == {"path": "/tmp/x"}
