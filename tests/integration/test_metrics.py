"""GET /metrics on a real HTTP server and `signoff stats`: the numbers equal what was done; who may read them."""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from signoff.notifiers import DeliveryFailed
from signoff.server.app import build_server
from signoff.server.auth import new_token
from signoff.server.config import Settings
from signoff.storage import ApprovalRequest, EventKind, Status
from signoff.storage.approvals.sqlite import SqliteStore
from tests.fakes.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]
AGENT, AGENT_SHA = new_token()
ALICE, ALICE_SHA = new_token()
MLOPS, MLOPS_SHA = new_token()
PROMETHEUS, PROMETHEUS_SHA = new_token()

CONFIG = f"""
[[auth.tokens]]
identity = "billing-bot"
role = "agent"
sha256 = "{AGENT_SHA}"

[[auth.tokens]]
identity = "alice"
role = "reviewer"
sha256 = "{ALICE_SHA}"

[[auth.tokens]]
identity = "ml-ops"
role = "models"
sha256 = "{MLOPS_SHA}"

[[auth.tokens]]
identity = "prometheus"
role = "metrics"
sha256 = "{PROMETHEUS_SHA}"
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Recording:
    """A notifier that fails its first delivery once (retry at once), then records every delivery."""

    name = "recording"

    def __init__(self) -> None:
        self.delivered: list[tuple[str, Status]] = []
        self.failures = 0

    async def deliver(self, request: ApprovalRequest) -> None:
        if self.failures == 0:
            self.failures += 1
            raise DeliveryFailed("the first delivery fails", retry_after=0)
        self.delivered.append((request.id, request.status))


@asynccontextmanager
async def served(
    tmp_path: Path,
    config: str | None,
    *,
    clock: FakeClock | None = None,
    notifier: Recording | None = None,
    bind: str = "",
) -> AsyncIterator[str]:
    settings = Settings(db_path=tmp_path / "signoff.db")
    if config is not None:
        (tmp_path / "signoff.toml").write_text(config)
        settings = Settings(db_path=tmp_path / "signoff.db", config_path=tmp_path / "signoff.toml")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = build_server(settings, http_url=bind or base, clock=clock, notifier=notifier)
    app = server.streamable_http_app()
    running = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(running.serve, [listener])
            yield base
            running.should_exit = True
    finally:
        listener.close()


@asynccontextmanager
async def mcp_client(base: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(base: str, token: str | None = PROMETHEUS) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient() as http:
        return await http.get(f"{base}/metrics", headers=headers)


async def wait_until_shown(db: Path, notifier: Recording, ids: list[str]) -> None:
    """Until the notifier showed every request in its final state and each delivery is in the audit log."""
    store = await SqliteStore.open(db)
    try:
        with anyio.fail_after(30):
            while True:
                token = await store.change_token()
                final = {i: (await store.get(i)).status for i in ids}  # type: ignore[union-attr]
                shown = {i: s for i, s in notifier.delivered}
                logged = 0
                for i in ids:
                    logged += sum(1 for e in await store.request_events(i) if e.kind is EventKind.NOTIFIED)
                if shown == final and logged == len(notifier.delivered):
                    return
                await store.wait_for_change(token, 1.0)
    finally:
        await store.close()


async def test_metrics_count_what_was_done_and_stats_agree(tmp_path: Path) -> None:
    clock, notifier = FakeClock(datetime.now(UTC).replace(microsecond=0)), Recording()
    async with served(tmp_path, CONFIG, clock=clock, notifier=notifier) as base:
        async with mcp_client(base, AGENT) as agent:
            ask: dict[str, Any] = {"summary": "pay", "confidence": 0.5}
            approve = await call(agent, "request_approval", action="payments.transfer", **ask)
            reject = await call(agent, "request_approval", action="payments.transfer", **ask)
            expire = await call(agent, "request_approval", action="db.drop", expires_in_seconds=200, **ask)
            cancel = await call(agent, "request_approval", action="db.drop", **ask)
            waiting = await call(agent, "request_approval", action="email.send", **ask)
            small = {"summary": "small", "payload": {"amount": 5}, "confidence": 0.99}  # not the pending ones' payload
            await call(agent, "request_approval", action="payments.transfer", **small)
            clock.advance(120)
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ALICE}"}) as http:
                for request, vote in (
                    (approve, {"verdict": "approve"}),
                    (reject, {"verdict": "reject", "comment": "no"}),
                ):
                    answer = await http.post(f"{base}/api/requests/{request['request_id']}/votes", json=vote)
                    assert answer.status_code == 200, answer.text
            clock.advance(100)
            assert (await call(agent, "get_status", request_id=expire["request_id"]))["status"] == "expired"
            await call(agent, "cancel_request", request_id=cancel["request_id"], reason="not needed")
        async with mcp_client(base, MLOPS) as ml:
            await call(ml, "register_model_version", name="fraud", version="v1", endpoint="http://fraud/v1")
            items = [
                {"name": "fraud", "version": "v1", "latency_ms": latency, "ok": ok}
                for latency, ok in ((100.0, True), (200.0, True), (300.0, False))
            ]
            await call(ml, "record_inferences", items=items)
        shown = [r["request_id"] for r in (approve, reject, expire, cancel, waiting)]
        await wait_until_shown(tmp_path / "signoff.db", notifier, shown)
        answer = await scrape(base)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        samples = parse(answer.text)

        stats = await anyio.run_process(
            [sys.executable, "-m", "signoff.server.cli", "stats", "--json", "--db", str(tmp_path / "signoff.db")]
        )

    requests = {
        (dict(labels)["action"], dict(labels)["outcome"], dict(labels)["decided_by"]): v
        for (name, labels), v in samples.items()
        if name == "signoff_requests_total"
    }
    assert requests == {
        ("payments.transfer", "approved", "human"): 1,
        ("payments.transfer", "rejected", "human"): 1,
        ("db.drop", "expired", ""): 1,
        ("db.drop", "cancelled", ""): 1,
        ("email.send", "pending", ""): 1,
        ("payments.transfer", "approved", "policy"): 1,
        ("models.register", "approved", "policy"): 1,  # registering a version is recorded as a request
    }
    assert value(samples, "signoff_pending_requests", priority="normal") == 1
    assert value(samples, "signoff_oldest_pending_age_seconds") == 220  # the fake clock moved 120 s, then 100 s
    assert value(samples, "signoff_decision_seconds_count") == 2
    assert value(samples, "signoff_decision_seconds_sum") == 240
    assert value(samples, "signoff_decision_seconds_bucket", le="60.0") == 0
    assert value(samples, "signoff_decision_seconds_bucket", le="300.0") == 2
    assert value(samples, "signoff_triggers_total", kind="confidence") == 5
    assert value(samples, "signoff_triggers_total", kind="rule") == 1  # the registration's record
    assert value(samples, "signoff_escalations_total") == 0
    assert value(samples, "signoff_votes_total", verdict="approve", channel="cli_or_api") == 1
    assert value(samples, "signoff_votes_total", verdict="reject", channel="cli_or_api") == 1
    delivered = value(samples, "signoff_notifications_total", notifier="recording", result="delivered")
    assert delivered == len(notifier.delivered) and delivered >= 5
    retrying = [k for k in samples if k[0] in ("signoff_notifications_retrying", "signoff_notifications_dead")]
    assert retrying == [], retrying  # the one failure was retried and delivered; nothing gave up
    assert value(samples, "signoff_model_inferences_total", model="fraud", version="v1") == 3
    assert value(samples, "signoff_model_errors_total", model="fraud", version="v1") == 1
    assert value(samples, "signoff_model_latency_seconds_count", model="fraud", version="v1") == 3
    assert value(samples, "signoff_model_latency_seconds_sum", model="fraud", version="v1") == pytest.approx(0.6)
    assert value(samples, "signoff_policy_seconds_count") == 7  # this process evaluated the seven requests

    printed = {(s["name"], frozenset(s["labels"].items())): s["value"] for s in json.loads(stats.stdout)["metrics"]}
    clock_free = {k: v for k, v in samples.items() if not k[0].startswith(("signoff_policy", "signoff_oldest"))}
    assert {k: v for k, v in printed.items() if not k[0].startswith("signoff_oldest")} == clock_free
    assert ("signoff_oldest_pending_age_seconds", frozenset()) in printed  # from the real clock: the CLI's own


async def test_a_metrics_token_is_needed_when_tokens_are_configured(tmp_path: Path) -> None:
    async with served(tmp_path, CONFIG) as base:
        anonymous, forged = await scrape(base, None), await scrape(base, "so_not-a-token")
        reviewer, agent, prometheus = await scrape(base, ALICE), await scrape(base, AGENT), await scrape(base)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    assert forged.status_code == 401
    assert reviewer.status_code == 403 and "needs a metrics token" in reviewer.json()["error"]
    assert agent.status_code == 403
    assert prometheus.status_code == 200 and "# TYPE signoff_requests_total counter" in prometheus.text


async def test_without_tokens_metrics_are_open_on_loopback_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with served(tmp_path / "a", None) as base:
        on_loopback = await scrape(base, None)
    async with served(tmp_path / "b", None, bind="http://0.0.0.0:8765") as base:
        beyond = await scrape(base, None)
    assert on_loopback.status_code == 200 and "# TYPE signoff_pending_requests gauge" in on_loopback.text
    assert beyond.status_code == 403 and "metrics token" in beyond.json()["error"]


async def test_the_shipped_alerts_and_dashboard_use_only_metrics_that_exist(tmp_path: Path) -> None:
    async with served(tmp_path, None) as base:  # an empty database: each metric is there by its TYPE line
        families = list(text_string_to_metric_families((await scrape(base, None)).text))
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
    exposed = {f.name + suffix for f in families for suffix in suffixes[f.type]}
    rules = yaml.safe_load((ROOT / "examples" / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((ROOT / "examples" / "grafana" / "signoff.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 2 + 8
    used = {name for expr in expressions for name in re.findall(r"\bsignoff_[a-z_]+", expr)}
    assert used and not used - exposed, f"not in /metrics: {sorted(used - exposed)}"
    assert "signoff_canary_guard_actions_total" in used  # the guard's rule and panel
