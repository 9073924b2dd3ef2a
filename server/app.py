"""Build the MCP server from settings: the store, the policy, the service, the tools, the workers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from mcp.server import MCPServer

from notifiers import ConsoleNotifier, Notifier
from server.config import Settings, package_version
from server.workers import deliver_outbox, sweep_expired
from storage import SqliteStore, Store
from tools.clock import Clock
from tools.handlers import AppState, register_tools
from tools.policy import Policy
from tools.policy_config import load_policy_config
from tools.service import ApprovalService

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
signoff is a human approval gate. Before any risky action (moving money, deleting data, deploying,
emailing customers, changing permissions) call request_approval with the exact arguments you will use.
Act only when the status is 'approved', and only with exactly that action and payload. If the status is
'pending', call get_status with wait_seconds to wait for a person. 'rejected', 'expired' and 'cancelled'
mean: do not perform the action. You cannot approve requests yourself."""


def load_policy(settings: Settings) -> Policy:
    """The policy from the config file (errors name the line at fault), or the safe defaults."""
    return Policy(load_policy_config(settings.config_path)) if settings.config_path else Policy()


def build_server(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
) -> MCPServer[AppState]:
    """The signoff MCP server. A given ``store`` is shared and left open; otherwise the lifespan opens
    (and closes) the SQLite database at ``settings.db_path``."""
    policy = load_policy(settings)  # at build time, so a bad config stops the start-up

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        own_store = store is None
        active: Store = await SqliteStore.open(settings.db_path) if store is None else store
        try:
            service = ApprovalService(active, policy, clock, progress_interval=settings.progress_interval)
            async with anyio.create_task_group() as workers:
                workers.start_soon(sweep_expired, service, settings.sweep_interval)
                workers.start_soon(deliver_outbox, service, notifier or ConsoleNotifier())
                yield AppState(service=service, permission_wait_seconds=settings.permission_wait_seconds)
                workers.cancel_scope.cancel()
        finally:
            if own_store:
                await active.close()

    mcp: MCPServer[AppState] = MCPServer(
        "signoff", version=package_version(), instructions=INSTRUCTIONS, lifespan=lifespan
    )
    register_tools(mcp)
    return mcp
