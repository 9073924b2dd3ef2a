"""The feedback loop's link: a request names the model version behind it, and people's verdicts count for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from signoff.server import export, report
from signoff.storage import RequestQuery, Verdict
from signoff.storage.audit import verify_store
from tests.unit.test_model_tools import Harness, call


async def _production_v1(h: Harness, client: Client) -> None:
    for version in ("v1", "v2"):
        await call(
            client, "register_model_version", {"name": "fraud", "version": version, "endpoint": f"http://{version}"}
        )
    await h.approve(await call(client, "promote_model", {"name": "fraud", "version": "v1", "reason": "first"}))
    assert (await call(client, "get_model", {"name": "fraud"}))["production"] == "v1"  # reads apply approvals


async def _ask(client: Client, confidence: float, amount: int = 5, **link: Any) -> dict[str, Any]:
    arguments = {"action": "payments.refund", "summary": "refund", "payload": {"amount": amount}}
    arguments["confidence"] = confidence
    return await call(client, "request_approval", {**arguments, **link})


async def test_people_verdicts_on_linked_requests_count_for_the_model_version(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with Client(h.server) as client:
        await _production_v1(h, client)
        routed = await call(client, "resolve_model", {"name": "fraud", "routing_key": "user-1"})
        assert routed["version"] == "v1"
        link = {"model": "fraud", "version": "v1", "decision_id": routed["decision_id"]}
        rejected, changed, approved = [await _ask(client, 0.4, **link) for _ in range(3)]
        # decision_id is optional; another amount, as the same would go to people (asked again while pending)
        by_policy = await _ask(client, 0.99, amount=6, model="fraud", version="v1")
        unlinked = await _ask(client, 0.4)
        assert rejected["model"] == {"name": "fraud", "version": "v1", "decision_id": routed["decision_id"]}
        assert by_policy["status"] == "approved" and by_policy["model"]["decision_id"] is None
        assert unlinked["model"] is None

        await h.reviewer.vote(rejected["request_id"], "alice", Verdict.REJECT, "wrong customer")
        await h.reviewer.vote(
            changed["request_id"], "alice", Verdict.APPROVE, "smaller", approved_payload={"amount": 2}
        )
        await h.reviewer.vote(approved["request_id"], "alice", Verdict.APPROVE, None)

        status = await call(client, "get_status", {"request_id": changed["request_id"]})
        assert status["model"]["version"] == "v1" and status["payload_changed"] is True
        listed = await call(client, "list_requests", {"limit": 10})
        assert sum(item["model"] is not None for item in listed["items"]) == 4

        stats = await call(client, "model_stats", {"name": "fraud"})
        people = {v["version"]: v["people"] for v in stats["versions"]}
        assert people["v1"] == {
            "requests": 4,
            "to_people": 3,
            "decided_by_people": 3,
            "rejected": 1,
            "changed": 1,
            "rejected_share": 1 / 3,
            "changed_share": 1 / 3,
        }
        assert people["v2"]["requests"] == 0 and people["v2"]["rejected_share"] is None
        canary = await call(client, "analyze_canary", {"name": "fraud", "baseline": "v1", "candidate": "v2"})
        assert canary["baseline_stats"]["people"] == people["v1"]
        assert canary["candidate_stats"]["people"]["to_people"] == 0

    # the export and the report carry it; the audit chain binds it
    decided = await export.decided_by_people(h.store)
    records = {r.id: export.record(r) for r in decided}
    assert records[changed["request_id"]]["model"] == "fraud"
    assert records[changed["request_id"]]["model_version"] == "v1"
    assert records[changed["request_id"]]["model_decision_id"] == routed["decision_id"]
    assert records[changed["request_id"]]["approved_payload"] == {"amount": 2}
    everything = (await h.store.list_requests(RequestQuery(limit=100))).items
    audit = await verify_store(h.store)
    assert audit.ok, audit.reason
    built = report.build(everything, [], audit, since=None, until=None, now=h.clock.now(), sla_seconds=3600)
    assert [(m["model"], m["version"], m["to_people"], m["rejected"]) for m in built["models"]] == [
        ("fraud", "v1", 3, 1)
    ]
    assert "| fraud | v1 | 4 | 3 | 1 | 1 |" in report.as_markdown(built)


async def test_a_wrong_model_link_is_a_clear_error_and_stores_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with Client(h.server) as client:
        await _production_v1(h, client)
        v1 = await call(client, "resolve_model", {"name": "fraud", "routing_key": "user-1"})
        before = (await h.store.list_requests(RequestQuery(limit=100))).items
        bad: list[tuple[dict[str, Any], str]] = [
            ({"model": "nope", "version": "v1"}, "no model named 'nope'"),
            ({"model": "fraud", "version": "v9"}, "no version 'v9'"),
            ({"model": "fraud"}, "version is missing"),
            ({"version": "v1", "decision_id": v1["decision_id"]}, "model is missing"),
            ({"model": "fraud", "version": "v2", "decision_id": v1["decision_id"]}, "routed to v1, not 'v2'"),
            ({"model": "fraud", "version": "v1", "decision_id": "dec_99_1_0000abcd"}, "not issued by resolve_model"),
        ]
        for link, hint in bad:
            result = await client.call_tool(
                "request_approval", {"action": "a.b", "summary": "s", "confidence": 0.1, **link}
            )
            assert result.is_error, link
            assert hint in result.content[0].text, (link, result.content[0].text)  # type: ignore[union-attr]
        assert (await h.store.list_requests(RequestQuery(limit=100))).items == before
