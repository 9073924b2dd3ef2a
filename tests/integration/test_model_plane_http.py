"""The model control plane's "Done when" story on a real SQLite file: the server over streamable HTTP in its
own process, a person approving through the CLI in another, and the reviewers' webhook on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from mcp import Client

from tests.integration.support import events, http_server, signoff, webhook_receiver
from tests.unit.test_model_tools import call, route_and_report

pytestmark = pytest.mark.slow


@asynccontextmanager
async def reviewers_webhook() -> AsyncIterator[tuple[str, dict[str, list[dict[str, Any]]], anyio.Event]]:
    """A webhook receiver; the event is set when a request of action models.guard arrives."""
    by_action: dict[str, list[dict[str, Any]]] = {}
    guard_heard = anyio.Event()

    async def hook(request: web.Request) -> web.Response:
        document = json.loads(await request.read())["request"]
        by_action.setdefault(document["action"], []).append(document)
        if document["action"] == "models.guard":
            guard_heard.set()
        return web.Response(status=204)

    async with webhook_receiver(hook) as url:
        yield url, by_action, guard_heard


async def approve_in_another_process(env: dict[str, str], asked: dict[str, Any]) -> None:
    assert asked["change"]["status"] == "pending", asked
    ran = await signoff(env, "review", "approve", asked["change"]["request_id"], "--as", "alice", "--comment", "ok")
    assert ran.returncode == 0, ran


async def test_done_when_over_http_on_sqlite_the_guard_takes_v2_off_and_tells_the_reviewers(
    env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    with anyio.fail_after(180):
        async with reviewers_webhook() as (url, heard, guard_heard):
            env = {
                **env,
                "SIGNOFF_WEBHOOK_URL": url,
                "SIGNOFF_WEBHOOK_SECRET": "whsec-test",
                "SIGNOFF_MODEL_GUARD_INTERVAL": "0.05",
            }
            async with http_server(env, tmp_path / "server.log") as mcp_url, Client(mcp_url) as client:
                await call(
                    client, "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "http://f/1"}
                )
                promote = {"name": "fraud", "version": "v1", "reason": "first", "agent_id": "bot"}
                await approve_in_another_process(env, await call(client, "promote_model", promote))
                v2 = {"name": "fraud", "version": "v2", "endpoint": "http://f/2", "agent_id": "bot"}
                await call(client, "register_model_version", v2)
                canary = {"name": "fraud", "weights": {"v1": 90, "v2": 10}, "reason": "canary", "agent_id": "bot"}
                await approve_in_another_process(env, await call(client, "set_traffic", canary))
                model = await call(client, "get_model", {"name": "fraud"})
                assert [(a["version"], a["percent"]) for a in model["traffic"]] == [("v1", 90.0), ("v2", 10.0)]

                routed = await route_and_report(client)  # about 10% of keys, always the same, go to v2; it fails more

                await guard_heard.wait()  # the guard took v2 off, and the reviewers were told
                after = [await call(client, "resolve_model", {"name": "fraud", "routing_key": k}) for k in routed]
                assert {r["version"] for r in after} == {"v1"}
                story = await call(client, "model_history", {"name": "fraud"})

    steps = [(c["kind"], c["requested_by"], c["outcome"]) for c in story["changes"]]
    assert steps[:4] == [
        ("register", None, "applied at once: a new version serves no traffic"),
        ("promote", "bot", "approved by alice (ok)"),
        ("register", "bot", "applied at once: a new version serves no traffic"),
        ("set_traffic", "bot", "approved by alice (ok)"),
    ]
    (guard_change,) = story["changes"][4:]
    assert (guard_change["kind"], guard_change["traffic"]) == ("guard", {"v1": 100.0})
    (told,) = heard["models.guard"]
    assert told["payload"]["change_seq"] == guard_change["change_id"] and "canary v2 failed" in told["summary"]
    assert "models.set_traffic" in heard  # the reviewers were asked about the canary through the same channel

    verified = await signoff(env, "audit", "verify")  # the whole story is in the hash chain, which holds
    assert verified.returncode == 0, verified
    kinds = {(request_id, kind) for _, kind, request_id, *_ in events(db)}
    for change in story["changes"][1:4:2]:  # the approvals of the promotion and the canary were each used
        assert (change["request_id"], "consumed") in kinds
    assert (told["request_id"], "created") in kinds
