"""Tool argument errors in plain words: one sentence per problem (the argument, what was wrong, what is allowed).

The SDK validates a call's arguments with pydantic and hands the agent pydantic's report ("1 validation error for
request_approvalArguments ... [type=missing, ...] For further information visit https://errors.pydantic.dev/...").
A model reads that poorly. ``SignoffMCPServer.call_tool`` turns it into "summary is required (a string)." or
"confidence must be a number from 0 to 1, or null; got 'high'." using the tool's own input schema for what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from pydantic_core import ErrorDetails

_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
}
_SHOWN_CHARS = 60
State = TypeVar("State")


def allowed(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> str:
    """What a JSON Schema (as the SDK writes them for tool arguments) accepts, in words."""
    defs = defs or {}
    if "$ref" in schema:
        return allowed(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
    if "anyOf" in schema:
        options = [allowed(option, defs) for option in schema["anyOf"]]
        return ", or ".join(dict.fromkeys(options))
    if "enum" in schema:
        return "one of " + ", ".join(repr(value) for value in schema["enum"])
    kind = schema.get("type")
    text = _TYPE_NAMES.get(kind, "a value") if isinstance(kind, str) else "a value"
    if kind in ("number", "integer"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            text += f" from {low:g} to {high:g}"
        elif low is not None:
            text += f" of at least {low:g}"
        elif high is not None:
            text += f" of at most {high:g}"
    elif kind == "string":
        if schema.get("format") == "date-time":
            text = "a date-time like 2026-01-31T09:00:00Z"
        low, high = schema.get("minLength"), schema.get("maxLength")
        if high is not None:
            text += f" of {low or 0}-{high} characters" if low else f" of at most {high} characters"
        elif low:
            text = "a non-empty string"
    elif kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and items:
            text = f"a list of {_plural(allowed(items, defs))}"
        if schema.get("maxItems") is not None:
            text += f" ({schema.get('minItems', 0)} to {schema['maxItems']} items)"
    return text


def _plural(noun: str) -> str:
    for article in ("a ", "an "):
        if noun.startswith(article):
            head, _, rest = noun[len(article) :].partition(" ")
            return f"{head}s {rest}".strip()
    return noun


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _schema_at(schema: Mapping[str, Any], loc: Sequence[int | str]) -> Mapping[str, Any]:
    """The sub-schema of an argument path such as ``("items", 3, "latency_ms")``, as far as it can be followed."""
    defs = schema.get("$defs", {})
    node: Mapping[str, Any] = schema
    for part in loc:
        while "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        if "anyOf" in node:
            node = next((o for o in node["anyOf"] if o.get("type") != "null"), node)
            while "$ref" in node:
                node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            properties = node.get("properties", {})
            extra = node.get("additionalProperties")
            node = properties.get(part) or (extra if isinstance(extra, Mapping) else {})
    return node


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the arguments"


def describe_error(error: ErrorDetails, schema: Mapping[str, Any]) -> str:
    """One sentence for one pydantic error, e.g. ``confidence must be a number from 0 to 1, or null; got 'high'.``"""
    loc = tuple(error["loc"])
    name = _path(loc)
    wanted = allowed(_schema_at(schema, loc), schema.get("$defs", {}))
    if error["type"] == "missing":
        return f"{name} is required ({wanted})."
    return f"{name} must be {wanted}; got {_shown(error.get('input'))}."


def plain_message(tool: str, error: ValidationError, schema: Mapping[str, Any]) -> str:
    problems = " ".join(describe_error(e, schema) for e in error.errors(include_url=False))
    return f"{tool} was not called: {problems} Nothing was done; send the call again with these fixed."


class SignoffMCPServer(MCPServer[State]):
    """The SDK's server, with argument errors told in plain words."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[State, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            schema = self._tool_input_schema(name)
            if isinstance(cause, ValidationError) and schema is not None:
                raise ToolError(plain_message(name, cause, schema)) from cause
            raise
