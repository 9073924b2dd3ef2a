"""OpenTelemetry traces, end to end: an agent's trace continues through signoff (a real stdio server exporting by
OTLP to a local receiver) to the webhook, the Slack message (a local fake Slack), the reviewer's vote (a click in
Slack, a vote at the CLI) and the agent's final call. The agent's own spans go to the SDK's in-memory exporter."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from aiohttp import web
from mcp import Client, StdioServerParameters
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span

from signoff.notifiers.slack_blocks import APPROVE_ACTION
from signoff.storage import EventKind
from signoff.storage.approvals.sqlite import SqliteStore
from tests.fakes.slack import FakeSlack, click
from tests.integration.support import (
    REPO,
    base_env,
    http_server,
    signoff,
    status_of,
    stdio_params,
    webhook_receiver,
)
from tests.integration.test_http_auth import AGENT_A, ALICE, CONFIG, agent, call

POLICY = """
[slack]
approvers = ["U0ALICE"]

[[people]]
name = "alice"
aliases = ["U0ALICE"]
"""


@dataclass(slots=True)
class Collector:
    """A local OTLP/HTTP receiver (``POST /v1/traces``, protobuf): every span it was sent, as plain dicts."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.posts += 1
        for resource in export.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        self.changed.set()
        self.changed = anyio.Event()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def wait_for(self, *names: str, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while not all(any(s["name"] == n for s in self.spans) for n in names):
                await self.changed.wait()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@asynccontextmanager
async def otlp_collector() -> AsyncIterator[tuple[str, Collector]]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", collector
    finally:
        await runner.cleanup()


@contextmanager
def agent_span(name: str) -> Iterator[tuple[Span, InMemorySpanExporter]]:
    """The agent's own span, recorded by an in-memory exporter (the agent's SDK, not signoff's)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("agent").start_as_current_span(name) as span:
        yield span, exporter
    provider.shutdown()


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def created_traceparent(db: Path, request_id: str) -> str | None:
    store = await SqliteStore.open(db)
    try:
        created = [e for e in await store.request_events(request_id) if e.kind is EventKind.CREATED]
    finally:
        await store.close()
    value = created[0].data.get("traceparent")
    return value if isinstance(value, str) else None


def slack_metadata(fake: FakeSlack, request_id: str) -> dict[str, Any]:
    for posted in fake.of("chat.postMessage"):
        metadata = posted.args.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        if isinstance(metadata, dict) and metadata["event_payload"]["request_id"] == request_id:
            return metadata
    raise AssertionError(f"no Slack post of {request_id}")


async def test_an_agents_trace_continues_to_the_webhook_slack_the_reviewers_votes_and_the_final_call(
    tmp_path: Path, db: Path
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    hooks: list[dict[str, str]] = []
    hooked = anyio.Event()

    async def hook(request: web.Request) -> web.Response:
        hooks.append(dict(request.headers))
        hooked.set()
        return web.Response(status=204)

    fake = await FakeSlack().start()
    try:
        async with otlp_collector() as (endpoint, collector), webhook_receiver(hook) as url:
            env = base_env(
                db,
                SIGNOFF_CONFIG=str(tmp_path / "policy.toml"),
                SIGNOFF_WEBHOOK_URL=url,
                SIGNOFF_WEBHOOK_SECRET="whsec-test",
                SIGNOFF_SLACK_BOT_TOKEN="xoxb-test",
                SIGNOFF_SLACK_APP_TOKEN="xapp-test",
                SIGNOFF_SLACK_CHANNEL="#approvals",
                SIGNOFF_SLACK_API_URL=fake.api_url,
                OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                OTEL_BSP_SCHEDULE_DELAY="50",
            )
            with agent_span("pay invoice 7") as (agent, agent_exporter):
                trace_id = f"{agent.get_span_context().trace_id:032x}"
                async with Client(stdio_params(env)) as client:
                    # the MCP client puts the current span's traceparent in the request's _meta
                    asked = status_of(
                        await client.call_tool(
                            "request_approval",
                            {"action": "payments.transfer", "summary": "Pay invoice 7", "confidence": 0.3},
                        )
                    )
                    request_id = asked["request_id"]
                    await fake.wait_for(lambda: any(request_id in str(c.args) for c in fake.of("chat.postMessage")))
                    index = next(i for i, c in enumerate(fake.of("chat.postMessage")) if request_id in str(c.args))
                    with anyio.fail_after(30):
                        await hooked.wait()
                    await fake.send_interaction(
                        click(
                            user_id="U0ALICE",
                            username="alice",
                            action_id=APPROVE_ACTION,
                            request_id=request_id,
                            channel="C0APPROVALS",
                            ts=f"{1_700_000_000.0 + index + 1:.6f}",  # the fake numbers messages in order
                        )
                    )
                    final = status_of(
                        await client.call_tool("get_status", {"request_id": request_id, "wait_seconds": 60})
                    )
                    assert final["status"] == "approved"

                    second = status_of(
                        await client.call_tool(
                            "request_approval",
                            {"action": "db.drop_table", "summary": "Drop table t", "confidence": 0.3},
                        )
                    )
                    voted = await signoff(
                        env, "review", "reject", second["request_id"], "--as", "alice", "--comment", "no"
                    )
                    assert voted.returncode == 0, voted
                await collector.wait_for(
                    "tools/call request_approval",
                    "tools/call get_status",
                    "signoff.policy.evaluate",
                    "signoff.store.commit",
                    "signoff.notify",
                    "signoff.vote",
                )
                await collector.wait_for("signoff.vote")
                with anyio.fail_after(30):
                    while len(collector.named("signoff.vote")) < 2:
                        await collector.changed.wait()
    finally:
        await fake.stop()

    # one trace, the agent's (the SDK also traces the session's own messages: initialize, tools/list)
    ours = [s for s in collector.spans if s["name"].startswith(("signoff.", "tools/call"))]
    assert {s["trace_id"] for s in ours} == {trace_id}, [(s["name"], s["trace_id"]) for s in collector.spans]
    assert {s["service"] for s in collector.spans} == {"signoff"}
    tool = next(
        s for s in collector.named("tools/call request_approval") if s["attributes"]["signoff.request_id"] == request_id
    )
    assert tool["parent_id"] == f"{agent.get_span_context().span_id:016x}"  # a child of the agent's span
    assert tool["attributes"]["signoff.request_id"] == request_id
    stored = await created_traceparent(db, request_id)
    assert stored is not None and stored.split("-")[:3] == ["00", trace_id, tool["span_id"]]  # kept with its events

    policy = next(s for s in collector.named("signoff.policy.evaluate") if s["parent_id"] == tool["span_id"])
    assert policy["attributes"]["signoff.outcome"] == "review"
    assert policy["attributes"]["signoff.triggers"] == "confidence"
    commit = next(s for s in collector.named("signoff.store.commit") if s["parent_id"] == tool["span_id"])
    assert commit["attributes"]["signoff.operation"] == "create_request"

    notified = {s["attributes"]["signoff.notifier"]: s for s in collector.named("signoff.notify")}
    assert {"webhook", "slack"} <= set(notified)
    first_webhook = hooks[0]["traceparent"]
    assert first_webhook.split("-")[1] == trace_id
    assert first_webhook.split("-")[2] in {s["span_id"] for s in collector.named("signoff.notify")}
    assert slack_metadata(fake, request_id)["event_type"] == "signoff_request"
    assert slack_metadata(fake, request_id)["event_payload"]["traceparent"].split("-")[1] == trace_id

    votes = {s["attributes"]["signoff.request_id"]: s for s in collector.named("signoff.vote")}
    clicked, at_cli = votes[request_id], votes[second["request_id"]]
    assert clicked["parent_id"] == tool["span_id"]  # the click in Slack: a child of the agent's request
    assert (
        clicked["attributes"]["signoff.status"] == "approved" and clicked["attributes"]["signoff.verdict"] == "approve"
    )
    assert at_cli["attributes"]["signoff.status"] == "rejected"  # the CLI, another process: the same trace
    assert any(s["parent_id"] == at_cli["span_id"] for s in collector.named("signoff.store.commit"))
    [mine] = agent_exporter.get_finished_spans()
    assert isinstance(mine, ReadableSpan) and mine.name == "pay invoice 7"


async def test_without_the_variable_nothing_is_exported_and_the_agents_trace_context_is_kept(db: Path) -> None:
    hooks: list[dict[str, str]] = []
    hooked = anyio.Event()

    async def hook(request: web.Request) -> web.Response:
        hooks.append(dict(request.headers))
        hooked.set()
        return web.Response(status=204)

    async with otlp_collector() as (_, collector), webhook_receiver(hook) as url:
        env = base_env(db, SIGNOFF_WEBHOOK_URL=url, SIGNOFF_WEBHOOK_SECRET="whsec-test")
        with agent_span("pay invoice 8") as (agent, _):
            async with Client(stdio_params(env)) as client:
                asked = status_of(
                    await client.call_tool(
                        "request_approval", {"action": "payments.transfer", "summary": "Pay 8", "confidence": 0.3}
                    )
                )
                with anyio.fail_after(30):
                    await hooked.wait()
                voted = await signoff(env, "review", "approve", asked["request_id"], "--as", "alice")
                assert voted.returncode == 0, voted
                final = status_of(
                    await client.call_tool("get_status", {"request_id": asked["request_id"], "wait_seconds": 60})
                )
        assert final["status"] == "approved"
    assert collector.posts == 0 and collector.spans == []
    # no SDK at work, yet the agent's trace context is stored and passed on as it came
    assert await created_traceparent(db, asked["request_id"]) == traceparent_of(agent)
    assert hooks[0]["traceparent"] == traceparent_of(agent)


async def test_the_server_runs_untraced_when_the_extra_is_missing(db: Path) -> None:
    """The OpenTelemetry SDK and exporters blocked from import (as when signoff[otel] is not installed): the
    variable set only gets a warning that says what to install, and the server works."""
    blocked = (
        "import sys\n"
        "for name in ('opentelemetry.sdk', 'opentelemetry.exporter'):\n"
        "    sys.modules[name] = None\n"
        "from signoff.server.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = base_env(db, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    params = StdioServerParameters(command=sys.executable, args=["-c", blocked, "serve"], env=env, cwd=str(REPO))
    async with Client(params) as client:
        asked = status_of(
            await client.call_tool("request_approval", {"action": "a.b", "summary": "s", "confidence": 0.99})
        )
    assert asked["status"] == "approved"
    done = await anyio.run_process([sys.executable, "-c", blocked, "stats"], env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "install signoff[otel] to export traces" in done.stderr.decode()


async def test_a_vote_through_the_reviewer_api_over_http_joins_the_agents_trace(tmp_path: Path, db: Path) -> None:
    (tmp_path / "signoff.toml").write_text(CONFIG)
    async with otlp_collector() as (endpoint, collector):
        env = base_env(
            db,
            SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"),
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
        async with http_server(env, tmp_path / "server.log") as url:
            base = url.removesuffix("/mcp")
            with agent_span("drop staging") as (mine, _):
                async with agent(base, AGENT_A) as client:
                    failed, asked = await call(client, "request_approval", action="db.drop", summary="drop staging")
            assert not failed, asked
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ALICE}"}) as http:
                voted = await http.post(
                    f"{base}/api/requests/{asked['request_id']}/votes", json={"verdict": "approve", "comment": "ok"}
                )
            assert voted.status_code == 200, voted.text
            await collector.wait_for("signoff.vote")
    trace_id = f"{mine.get_span_context().trace_id:032x}"
    tool = next(s for s in collector.named("tools/call request_approval") if s["trace_id"] == trace_id)
    [vote] = collector.named("signoff.vote")
    assert vote["trace_id"] == trace_id and vote["parent_id"] == tool["span_id"]
    assert vote["attributes"]["signoff.reviewer"] == "alice" and vote["attributes"]["signoff.status"] == "approved"
