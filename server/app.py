"""Build the MCP server from settings: the store, the policy, the service, the tools, the workers."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff.notifiers import ConsoleNotifier, FanOut, Notifier, WebhookNotifier
from signoff.server import audit_check, health, metrics, review_api
from signoff.server.alerts import alert_worker
from signoff.server.argument_errors import SignoffMCPServer
from signoff.server.auth import LOOPBACK_HOSTS, ConfigTokenVerifier
from signoff.server.config import Settings, package_version, receipt_key
from signoff.server.console import Console
from signoff.server.console import routes as console_routes
from signoff.server.duplicate_keys import DuplicateKeysASGI, RejectDuplicateKeys
from signoff.server.model_plane import model_plane
from signoff.server.policy_source import load_policy, reloader, trusted_data
from signoff.server.resume import Keeper, Resumable
from signoff.server.slack import SlackParts, interactions_route, slack_session
from signoff.server.stopping import Stopper, serve_uvicorn
from signoff.server.stores import once, open_store, open_stream_store
from signoff.server.unknown_arguments import RejectUnknownArguments
from signoff.server.workers import DeliveryLimits, deliver_outbox, sweep_expired
from signoff.storage import ModelStore, Store
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.streams import MemoryStreams, Streams
from signoff.tools.access import Role
from signoff.tools.app_state import AppState
from signoff.tools.approvals.handlers import register_tools
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.clock import Clock
from signoff.tools.models.handlers import register_model_tools

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
signoff is a human approval gate. Before any risky action (moving money, deleting data, deploying,
emailing customers, changing permissions) call request_approval with the exact arguments you will use.
Act only when the status is 'approved' AND 'actionable' is true, and only with exactly that action and
payload, before 'actionable_until'. An approval that lapsed (actionable false) or was used means: do not act;
call request_approval again with a new idempotency_key. If the status is 'pending', call get_status with
wait_seconds to wait for a person. 'rejected', 'expired' and 'cancelled' mean: do not perform the action.
You cannot approve requests yourself."""


def build_server(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    model_store: ModelStore | None = None,
    http_url: str | None = None,
    stopper: Stopper | None = None,
) -> MCPServer[AppState]:
    """The signoff MCP server. A given ``store`` is shared and left open; otherwise the lifespan opens
    (and closes) the SQLite database at ``settings.db_path``, or PostgreSQL at ``settings.db_url``. The model registry
    uses ``model_store`` if given, else memory beside a MemoryStore, else the same database (so a store passed in
    should be on it, as the CLI's is).
    ``http_url`` (the server's own base URL) turns on bearer-token auth for the HTTP transport when the config file
    lists ``[[auth.tokens]]``. A ``stopper`` ends every wait at once when the process is told to stop (SIGINT,
    SIGTERM)."""
    policy = load_policy(settings)  # at build time, so a bad config stops the start-up
    signing_key = receipt_key(settings)  # likewise an unwritable key file

    tokens = policy.config.auth.tokens
    verifier = ConfigTokenVerifier(tokens) if tokens else None
    running = _Running()  # filled by the lifespan, read by the HTTP routes
    process_metrics = metrics.ProcessMetrics()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        own_store = store is None
        active: Store = await open_store(settings) if store is None else store
        streams: Streams | None = None
        try:
            if http_url is not None:  # waiting calls over HTTP resume after a dropped connection (server/resume.py)
                in_memory = isinstance(active, MemoryStore)
                streams = MemoryStreams() if in_memory else await open_stream_store(settings.db_path, settings.db_url)
            service = ApprovalService(
                active,
                policy,
                clock,
                progress_interval=settings.progress_interval,
                claim_seconds=settings.claim_minutes * 60,
                on_policy_seconds=process_metrics.observe_policy,
                trusted=trusted_data(settings),  # [[lookups]] from the policy file's folder, as everywhere
            )
            if stopper is not None:
                stopper.attach(service)
            async with (
                anyio.create_task_group() as workers,
                slack_session(settings, service, workers) as parts,
                model_plane(
                    settings.db_path,
                    service,
                    workers,
                    store=model_store,
                    in_memory=isinstance(store, MemoryStore),
                    settings=settings.models,
                    db_url=settings.db_url,
                ) as models,
                alert_worker(
                    settings,
                    service.clock,
                    in_memory=isinstance(active, MemoryStore),
                    listed=lambda: service.policy.config.alerts,  # the policy in force: reloads change them
                ),
            ):
                sweeper = partial(sweep_expired, service, settings.sweep_interval)
                workers.start_soon(once(settings.db_url, "expiry sweeper", sweeper))
                if (watcher := reloader(settings, service)) is not None:  # SIGHUP or an edit: the new policy decides
                    await workers.start(watcher.watch)
                limits = DeliveryLimits(settings.notify_max_attempts, settings.notify_give_up_seconds)
                chosen = notifier or default_notifier(settings, parts)
                workers.start_soon(partial(deliver_outbox, service, chosen, limits=limits))
                keeper = Keeper(streams, now=service.clock.now) if streams is not None else None
                if keeper is not None:
                    workers.start_soon(keeper.run)
                state = AppState(
                    receipt_key=signing_key,
                    service=service,
                    permission_wait_seconds=settings.permission_wait_seconds,
                    models=models,
                    agents_see_all=policy.config.auth.agents_see_all,
                )
                running.slack, running.state, running.keeper = parts, state, keeper
                yield state
                running.slack = running.state = running.keeper = None
                workers.cancel_scope.cancel()
        finally:
            if streams is not None:
                await streams.close()
            if own_store:
                await active.close()

    auth = None
    if verifier is not None and http_url is not None:
        base = http_url.rstrip("/")
        auth = AuthSettings(
            issuer_url=AnyHttpUrl(base),
            resource_server_url=AnyHttpUrl(f"{base}/mcp"),
            required_scopes=[Role.AGENT.value],  # reviewers' tokens do not make requests: 403
            validate_token_resource=False,  # static tokens name no audience; they are valid for this server only
        )
    mcp: MCPServer[AppState] = SignoffMCPServer(
        "signoff",
        version=package_version(),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        token_verifier=verifier if auth else None,
        auth=auth,
    )
    register_tools(mcp)
    register_model_tools(mcp)
    mcp.middleware.append(RejectDuplicateKeys())  # marked by the transports: see server/duplicate_keys.py
    mcp.middleware.append(RejectUnknownArguments(mcp))

    @mcp.custom_route("/slack/interactions", methods=["POST"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def slack_interactions(request: Request) -> Response:
        return await interactions_route(request, running.slack)

    @mcp.custom_route("/api/requests", methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def reviewer_list(request: Request) -> Response:
        assert running.state is not None
        return await review_api.list_requests(request, running.state, verifier)

    @mcp.custom_route("/api/requests/{request_id}", methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def reviewer_show(request: Request) -> Response:
        assert running.state is not None
        return await review_api.show_request(request, running.state, verifier)

    @mcp.custom_route("/api/requests/{request_id}/votes", methods=["POST"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def reviewer_vote(request: Request) -> Response:
        assert running.state is not None
        return await review_api.vote(request, running.state, verifier)

    # without tokens, /metrics is open only to this machine (http_url names the address the server binds)
    metrics_open = verifier is None and http_url is not None and urlsplit(http_url).hostname in LOOPBACK_HOSTS

    @mcp.custom_route("/metrics", methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def metrics_route(request: Request) -> Response:
        assert running.state is not None
        return await metrics.endpoint(
            request, running.state, verifier, open_on_loopback=metrics_open, process=process_metrics
        )

    @mcp.custom_route("/healthz", methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def healthz(request: Request) -> Response:
        return await health.healthz(request)

    @mcp.custom_route("/readyz", methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def readyz(request: Request) -> Response:
        return await health.readyz(request, running.state.service.store if running.state else None)

    console = Console(
        service_of=lambda: running.state.service if running.state else None,
        models_of=lambda: running.state.models if running.state else None,
        check_chain=lambda service, models: audit_check.whole_chain(
            settings, service.store, models.store if models else None
        ),
        verifier=verifier,
        idle_minutes=settings.console_idle_minutes,
    )
    _KEEPER_OF[mcp] = lambda: running.keeper
    for route in console_routes(console):  # the reviewers' web console at /, signed in by reviewer tokens
        mcp.custom_route(route.path, methods=sorted(route.methods or ()), include_in_schema=False)(route.endpoint)
    return mcp


@dataclass(slots=True)
class _Running:
    """What the HTTP routes need from the running server."""

    slack: SlackParts | None = None
    state: AppState | None = None
    keeper: Keeper | None = None


#: each built server's keeper of resumable streams while it runs, for serve_http's /mcp
_KEEPER_OF: weakref.WeakKeyDictionary[MCPServer[AppState], Callable[[], Keeper | None]] = weakref.WeakKeyDictionary()


def serve_http(
    server: MCPServer[AppState],
    settings: Settings,
    *,
    host: str,
    port: int,
    security: TransportSecuritySettings | None = None,
    stopper: Stopper | None = None,
) -> None:
    """Serve ``server`` on streamable HTTP until interrupted: what ``server.run("streamable-http")`` does, except
    that uvicorn writes an access line per HTTP request only at ``SIGNOFF_LOG_LEVEL=DEBUG``. At INFO, signoff
    logs every request it creates and every decision itself; an access line per tool call would double the
    log and cost the event loop one more write for every call.

    Every route (``/mcp``, ``/api/…``, ``/slack/…``) gets the same Host/Origin check; a connection that sends no
    whole request in ``SIGNOFF_HTTP_REQUEST_TIMEOUT`` seconds, or idles that long after a response, is closed;
    beyond ``SIGNOFF_HTTP_MAX_CONNECTIONS`` requests get 503 (see ``signoff.server.http_guard``).
    With ``SIGNOFF_HTTP_STATELESS`` (``serve --stateless``) ``/mcp`` keeps no session between requests: each POST is
    served on its own, so several replicas can sit behind a round-robin proxy (docs/deploy.md).
    SIGINT and SIGTERM stop it (server/stopping.py)."""
    import uvicorn  # imported here: only the HTTP transport needs it

    from signoff.server.http_guard import HostOriginGuard, RateLimitedAccept, effective_security, timed_protocol

    # stateless: a fresh transport per POST and no Mcp-Session-Id, so a session's calls may land on any replica;
    # SSE responses stay on (json_response=False), which carries the bounded waits' progress notifications
    app = server.streamable_http_app(transport_security=security, host=host, stateless_http=settings.http_stateless)
    app.add_middleware(DuplicateKeysASGI)  # the SDK's default path, /mcp
    if (keeper_of := _KEEPER_OF.get(server)) is not None:
        resumable(app, keeper_of)
    guarded = HostOriginGuard(app, effective_security(security, host))
    level = settings.log_level.lower()
    config = uvicorn.Config(
        guarded,
        host=host,
        port=port,
        log_level=level,
        access_log=level == "debug",
        http=timed_protocol(settings.http_request_timeout, settings.http_idle_timeout),
        limit_concurrency=settings.http_max_connections + 1,  # uvicorn refuses at this many, not beyond
    )
    config.timeout_graceful_shutdown = 1  # then open streams (an SDK client's listening GET) are cut
    logging.getLogger("asyncio").addFilter(RateLimitedAccept())
    anyio.run(serve_uvicorn, config, stopper or Stopper())


def resumable(app: Starlette, keeper_of: Callable[[], Keeper | None]) -> None:
    """Make /mcp's waiting calls resumable: ``Resumable`` goes inside the bearer-auth check, which then has run."""
    for route in app.routes:
        if isinstance(route, Route) and route.path == "/mcp":
            inner = route.app
            if isinstance(inner, RequireAuthMiddleware):
                inner.app = Resumable(inner.app, keeper_of)
            else:
                route.app = Resumable(inner, keeper_of)


def default_notifier(settings: Settings, slack: SlackParts | None) -> Notifier:
    """The console always (a line on stderr per request that needs people), plus Slack and the webhook if set."""
    chosen: list[Notifier] = [ConsoleNotifier()]
    if slack is not None:
        chosen.append(slack.notifier)
    if settings.webhook_url and settings.webhook_secret:
        chosen.append(WebhookNotifier(settings.webhook_url, settings.webhook_secret))
    return chosen[0] if len(chosen) == 1 else FanOut(*chosen)
