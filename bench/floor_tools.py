"""Tools the benchmarks add to a real signoff server (the object ``build_server`` returns) to measure floors.

They take the same arguments as ``request_approval``, so the request side of the MCP transport (JSON
parsing, argument validation) costs the same, and answer with a tiny structured result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import MCPServer

NOOP = "bench_noop"
NOOP_PLUS_WRITE = "bench_noop_plus_write"
BARE_CREATE = "bench_bare_create"


def add_noop(server: MCPServer[Any]) -> None:
    @server.tool(name=NOOP)
    async def bench_noop(
        action: str,
        summary: str,
        payload: dict[str, Any],
        confidence: float | None = None,
        agent_id: str | None = None,
    ) -> dict[str, str]:
        """Does nothing: the cost of an MCP tool call on this server."""
        return {"status": "ok"}


def add_noop_plus_write(
    server: MCPServer[Any], write: Callable[[], Awaitable[None]], *, name: str = NOOP_PLUS_WRITE
) -> None:
    @server.tool(name=name)
    async def bench_noop_plus_write(
        action: str,
        summary: str,
        payload: dict[str, Any],
        confidence: float | None = None,
        agent_id: str | None = None,
    ) -> dict[str, str]:
        """The no-op plus one raw durable write of pre-built rows: the floor of an auto-decided request."""
        await write()
        return {"status": "ok"}
