"""The model tools through a real MCP client connected in memory, including the issue's "Done when" story."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server import MCPServer

from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import ConfigError, ModelState, RequestQuery, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.models.memory import MemoryModelStore
from signoff.tools.app_state import AppState
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelSettings
from tests.fakes.clock import FakeClock

MODEL_TOOLS = {
    "register_model_version", "list_models", "get_model", "resolve_model", "record_inference", "record_inferences",
    "model_stats", "set_traffic", "promote_model", "rollback_model", "analyze_canary", "model_history",
}  # fmt: skip


class Harness:
    def __init__(self, tmp_path: Path, **model_settings: Any) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.model_store = MemoryModelStore(seed=1)
        self.reviewer = ApprovalService(self.store, clock=self.clock)  # a person, e.g. through the CLI
        self.server: MCPServer[AppState] = build_server(
            Settings(db_path=tmp_path / "unused.db", models=ModelSettings(**model_settings)),
            store=self.store,
            clock=self.clock,
            model_store=self.model_store,
        )

    async def approve(self, result: dict[str, Any]) -> None:
        assert result["change"]["status"] == "pending", result
        await self.reviewer.vote(result["change"]["request_id"], "alice", Verdict.APPROVE, "checked the numbers")

    async def wait_for_model(self, check: Callable[[ModelState], bool]) -> ModelState:
        """Wait on the model store's change signal (no sleeping) until ``check`` holds."""
        with anyio.fail_after(30):
            while True:
                token = await self.model_store.change_token()
                state = await self.model_store.get_model("fraud")
                if state is not None and check(state):
                    return state
                await self.model_store.wait_for_change(token, 5)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def start_canary(h: Harness, client: Client) -> None:
    """v1 in production (approved by alice), v2 registered by the agent and approved for 10% of traffic."""
    first = await call(
        client, "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://fraud/v1"}
    )
    assert "promote_model" in first["message"] and "set_traffic" not in first["message"]  # no production to canary
    promoted = await call(
        client, "promote_model", {"name": "fraud", "version": "v1", "reason": "first", "agent_id": "bot"}
    )
    await h.approve(promoted)
    registered = await call(
        client,
        "register_model_version",
        {
            "name": "fraud",
            "version": "v2",
            "endpoint": "http://fraud/v2",
            "lineage": {"parent": "v1"},
            "agent_id": "bot",
        },
    )
    assert registered["created"] is True and registered["version"]["traffic_percent"] == 0
    assert "set_traffic to start a canary beside v1" in registered["message"]
    asked = await call(
        client, "set_traffic", {"name": "fraud", "weights": {"v1": 90, "v2": 10}, "reason": "canary", "agent_id": "bot"}
    )
    assert asked["approval_status"] == "pending" and asked["traffic"] == {"v1": 100.0}
    assert "get_status" in asked["message"]
    waiting = await call(client, "get_status", {"request_id": asked["change"]["request_id"]})
    assert waiting["action"] == "models.set_traffic" and "Evidence" in waiting["summary"]
    await h.approve(asked)
    model = await call(client, "get_model", {"name": "fraud"})  # reads apply approvals at once
    assert [(a["version"], a["percent"], a["arm"]) for a in model["traffic"]] == [
        ("v1", 90.0, "production"),
        ("v2", 10.0, "canary"),
    ]
    assert model["rollout"] == "canary" and model["pending"] == []


async def route_and_report(client: Client) -> dict[str, str]:
    """Route 1,000 users (about 10% to v2, the same users every time); report their 3,000 inferences in one
    batch, v2 failing far more often."""
    rng = random.Random(9)
    routed: dict[str, str] = {}
    items = []
    for i in range(1000):
        r = await call(client, "resolve_model", {"name": "fraud", "routing_key": f"user-{i}"})
        routed[f"user-{i}"] = r["version"]
        failure_rate = 0.3 if r["version"] == "v2" else 0.01
        items += [
            {
                "name": "fraud",
                "version": r["version"],
                "latency_ms": rng.uniform(20, 80),
                "ok": rng.random() > failure_rate,
                "decision_id": r["decision_id"],
            }
            for _ in range(3)  # each user makes three calls
        ]
    share = sum(v == "v2" for v in routed.values()) / len(routed)
    assert 0.057 < share < 0.143  # 10% +/- 4.5 standard errors (each model has its own random salt)
    for key in list(routed)[:50]:  # sticky: the same users get the same version
        again = await call(client, "resolve_model", {"name": "fraud", "routing_key": key})
        assert again["version"] == routed[key]
    recorded = await call(client, "record_inferences", {"items": items})
    assert recorded["recorded"] == 3000
    return routed


async def test_model_tools_are_listed_with_schemas_and_annotations(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with Client(h.server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert MODEL_TOOLS <= set(tools)
    for name in MODEL_TOOLS:
        assert tools[name].output_schema is not None, name
        assert not {"reviewer", "verdict", "decision"} & set(tools[name].input_schema["properties"])
    assert tools["resolve_model"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["rollback_model"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert set(tools["analyze_canary"].output_schema["properties"]) >= {"verdict", "metrics"}  # type: ignore[index]


async def test_done_when_a_canary_is_approved_measured_and_taken_off_by_the_guard(tmp_path: Path) -> None:
    h = Harness(tmp_path, guard_interval=0.01)
    async with Client(h.server) as client:
        await start_canary(h, client)
        routed = await route_and_report(client)
        stats = {v["version"]: v for v in (await call(client, "model_stats", {"name": "fraud"}))["versions"]}
        assert stats["v2"]["error_rate"] > stats["v1"]["error_rate"] and stats["v1"]["enough_samples"]
        verdict = await call(client, "analyze_canary", {"name": "fraud", "baseline": "v1", "candidate": "v2"})
        assert verdict["verdict"] == "fail" and verdict["metrics"][0]["verdict"] == "fail"
        # the guard, running in the server, takes v2's traffic away
        await h.wait_for_model(lambda s: dict(s.serving.weights) == {"v1": 10000})
        after = [await call(client, "resolve_model", {"name": "fraud", "routing_key": k}) for k in list(routed)[:200]]
        assert {r["version"] for r in after} == {"v1"}
        story = await call(client, "model_history", {"name": "fraud", "at": h.clock.now().isoformat()})
    steps = [(c["kind"], c["status"], c["requested_by"], c["outcome"]) for c in story["changes"]]
    assert steps[:4] == [
        ("register", "applied", None, "applied at once: a new version serves no traffic"),
        ("promote", "applied", "bot", "approved by alice (checked the numbers)"),
        ("register", "applied", "bot", "applied at once: a new version serves no traffic"),
        ("set_traffic", "applied", "bot", "approved by alice (checked the numbers)"),
    ]
    guard = story["changes"][4]
    assert (guard["kind"], guard["requested_by"], guard["traffic"]) == ("guard", "signoff-guard", {"v1": 100.0})
    assert "canary v2 failed its analysis against v1" in guard["reason"]
    assert all(c["request_id"] for c in story["changes"] if c["kind"] in ("promote", "set_traffic"))
    assert (story["production_at"], story["traffic_at"]) == ("v1", {"v1": 100.0})


async def test_done_when_rollback_model_returns_all_traffic_to_v1(tmp_path: Path) -> None:
    h = Harness(tmp_path, guard_enabled=False)
    async with Client(h.server) as client:
        await start_canary(h, client)
        await route_and_report(client)
        rolled = await call(client, "rollback_model", {"name": "fraud", "reason": "v2 fails 30% of requests"})
        assert rolled["traffic"] == {"v1": 100.0} and rolled["approval_status"] is None
        assert rolled["message"] == "Applied: model fraud now serves v1 100%."
        model = await call(client, "get_model", {"name": "fraud"})
        history = await call(client, "model_history", {"name": "fraud"})
    assert model["rollout"] == "stable" and model["production"] == "v1"
    assert [v["aliases"] for v in model["versions"]] == [["production"], []]
    last = history["changes"][-1]
    assert (last["kind"], last["reason"], last["traffic"]) == ("rollback", "v2 fails 30% of requests", {"v1": 100.0})


async def test_model_tool_errors_say_what_to_change_and_change_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    bad_calls: list[tuple[str, dict[str, Any], str]] = [
        ("get_model", {"name": "nope"}, "no model named 'nope'"),
        ("set_traffic", {"name": "fraud", "weights": {"v1": 50, "v2": 60}, "reason": "r"}, "sum to 110%"),
        ("set_traffic", {"name": "fraud", "weights": {"v1": 110, "v2": -10}, "reason": "r"}, "from 0 to 100"),
        ("set_traffic", {"name": "fraud", "weights": {"v1": 90, "v9": 10}, "reason": "r"}, "unknown version"),
        ("promote_model", {"name": "fraud", "version": "v9", "reason": "r"}, "no version 'v9'"),
        ("register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://x"}, "already has version"),
        ("resolve_model", {"name": "fraud", "routing_key": ""}, "routing_key"),
        ("record_inference", {"name": "fraud", "version": "v1", "latency_ms": -1, "ok": True}, "latency_ms"),
        ("record_inferences", {"items": []}, "items"),
        ("analyze_canary", {"name": "fraud", "baseline": "v1", "candidate": "v1"}, "both 'v1'"),
        ("model_history", {"name": "fraud", "at": "2026-01-01T00:00:00"}, "timezone"),
        ("rollback_model", {"name": "fraud", "reason": "r"}, "nothing to roll back to"),
    ]
    async with Client(h.server) as client:
        await call(client, "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://fraud/v1"})
        await call(client, "register_model_version", {"name": "fraud", "version": "v2", "endpoint": "http://fraud/v2"})
        before = (await h.model_store.history("fraud"), await h.model_store.get_model("fraud"))
        for tool, arguments, hint in bad_calls:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            assert hint in result.content[0].text, (tool, result.content[0].text)  # type: ignore[union-attr]
        assert (await h.model_store.history("fraud"), await h.model_store.get_model("fraud")) == before


async def test_set_traffic_needs_a_production_version_to_fall_back_on(tmp_path: Path) -> None:
    """A split beside no production could not be rolled back at once nor watched by the guard (review R7), so it is
    refused, saying to promote first, and nothing is asked or stored; once a version is production it is accepted."""
    h = Harness(tmp_path)
    split = {"name": "fraud", "weights": {"v1": 90, "v2": 10}, "reason": "start both", "agent_id": "bot"}
    async with Client(h.server) as client:
        for v in ("v1", "v2"):
            await call(client, "register_model_version", {"name": "fraud", "version": v, "endpoint": f"http://m/{v}"})
        before = (await h.model_store.history("fraud"), await h.model_store.get_model("fraud"))
        requests = (await h.reviewer.list_requests(RequestQuery(status=None))).items
        refused = await client.call_tool("set_traffic", split)
        assert refused.is_error
        text = refused.content[0].text  # type: ignore[union-attr]
        assert "has no production version" in text and "promote a version first (promote_model" in text, text
        assert (await h.model_store.history("fraud"), await h.model_store.get_model("fraud")) == before
        assert (await h.reviewer.list_requests(RequestQuery(status=None))).items == requests  # nothing asked
        await h.approve(await call(client, "promote_model", {"name": "fraud", "version": "v1", "reason": "first"}))
        await call(client, "get_model", {"name": "fraud"})
        asked = await call(client, "set_traffic", split)
    assert asked["change"]["status"] == "pending"


async def test_record_inference_and_stats_with_confidence(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with Client(h.server) as client:
        await call(client, "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://fraud/v1"})
        for i in range(4):
            await call(
                client,
                "record_inference",
                {"name": "fraud", "version": "v1", "latency_ms": 10 * (i + 1), "ok": i != 0, "confidence": 0.5},
            )
        stats = await call(client, "model_stats", {"name": "fraud", "window_seconds": 600})
    (v1,) = stats["versions"]
    assert (v1["count"], v1["errors"], v1["error_rate"], v1["latency_mean_ms"]) == (4, 1, 0.25, 25.0)
    assert (v1["mean_confidence"], v1["enough_samples"], v1["latency_samples"]) == (0.5, False, 4)
    assert datetime.fromisoformat(stats["until"]) > h.clock.now()


async def test_the_server_applies_an_approval_without_being_asked(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with Client(h.server) as client:
        await call(client, "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://fraud/v1"})
        asked = await call(client, "promote_model", {"name": "fraud", "version": "v1", "reason": "first"})
        await h.approve(asked)
        state = await h.wait_for_model(lambda s: s.serving.production == "v1")  # the applier worker did it
    assert dict(state.serving.weights) == {"v1": 10000}


def test_model_settings_come_from_signoff_model_variables() -> None:
    settings = Settings.from_env(
        {
            "SIGNOFF_DB": "unused.db",
            "SIGNOFF_MODEL_GUARD": "off",
            "SIGNOFF_MODEL_MAX_ERROR_RATE_INCREASE": "0.05",
            "SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO": "3",
        }
    ).models
    assert settings.guard_enabled is False and settings.limits.max_error_rate_increase == 0.05
    assert settings.limits.max_error_rate_ratio == 3
    assert Settings.from_env({"SIGNOFF_DB": "unused.db"}).models == ModelSettings()
    for bad in (
        {"SIGNOFF_MODEL_GUARD": "maybe"},
        {"SIGNOFF_MODEL_ALPHA": "2"},
        {"SIGNOFF_MODEL_GUARD_INTERVAL": "x"},
        {"SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO": "0.5"},
    ):
        with pytest.raises(ConfigError, match="SIGNOFF_MODEL_"):
            Settings.from_env({"SIGNOFF_DB": "unused.db", **bad})
