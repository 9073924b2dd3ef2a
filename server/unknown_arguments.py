"""Refuse a tool call that carries an argument the tool does not take, before the tool runs.

The SDK builds each tool's argument model from its signature and drops names it does not know, so an agent that
writes ``expires_in`` for ``expires_in_seconds`` would get the default expiry and believe it had set its own.
This middleware answers such a call with a tool error that names the unknown argument, the closest real one,
and every argument the tool takes; nothing is recorded.

``permission_prompt`` is exempt: Claude Code, not a model, writes its arguments, and a field a newer Claude Code
adds must not turn every permission prompt into an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent

EXEMPT = frozenset({"permission_prompt"})


def unknown_arguments_message(tool: str, unknown: list[str], known: frozenset[str]) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    takes = f"Its arguments are: {', '.join(sorted(known))}." if known else "It takes no arguments."
    return f"{tool} does not take {', '.join(parts)}; nothing was done. {takes} Send the call again without them."


class RejectUnknownArguments:
    """Server middleware (``MCPServer.middleware``): ``tools/call`` with unknown argument names is an error."""

    def __init__(self, server: MCPServer[Any]) -> None:
        self._server = server
        #: read on the first call, when every tool is registered (signoff adds no tool later; one added later is
        #: not checked, and one removed and added again keeps the parameters it had)
        self._parameters: dict[str, frozenset[str]] | None = None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if ctx.method == "tools/call" and params is not None:
            tool, arguments = params.get("name"), params.get("arguments")
            if isinstance(tool, str) and isinstance(arguments, Mapping):
                known = (await self._known()).get(tool)
                if known is not None and (unknown := sorted(set(arguments) - known)):
                    text = unknown_arguments_message(tool, unknown, known)
                    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)

    async def _known(self) -> dict[str, frozenset[str]]:
        if self._parameters is None:
            tools = await self._server.list_tools()
            self._parameters = {
                t.name: frozenset(t.input_schema.get("properties", {})) for t in tools if t.name not in EXEMPT
            }
        return self._parameters
