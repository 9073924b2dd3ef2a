"""Every tool, every argument: a wrong or missing value gets one plain sentence, never pydantic's report.

The wrong values are generated from each tool's input schema, so a tool or argument added later is covered too.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Tool

from signoff.server.app import build_server
from signoff.server.argument_errors import allowed
from signoff.server.config import Settings
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.models.memory import MemoryModelStore

RAW_REPORT_MARKERS = ("validation error", "type=", "pydantic", "For further information", "Arguments\n")


def resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        schema = next(o for o in schema["anyOf"] if o.get("type") != "null")
    return resolve(schema, defs) if "$ref" in schema else schema


def valid(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    schema = resolve(schema, defs)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "string":
        return (
            "2026-01-01T00:00:00Z" if schema.get("format") == "date-time" else "x" * max(1, schema.get("minLength", 1))
        )
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [valid(schema.get("items", {"type": "string"}), defs)] * schema.get("minItems", 0)
    properties = schema.get("properties", {})
    return {name: valid(properties[name], defs) for name in schema.get("required", [])}


def wrong_values(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(what is wrong, a value the schema refuses)."""
    schema = resolve(schema, defs)
    kind = schema.get("type")
    if schema.get("format") == "date-time":
        yield "not a date", "yesterday"
        return
    yield "type", {"string": 12345, "boolean": "maybe", "object": "x", "array": "x"}.get(str(kind), "high")
    if "maximum" in schema:
        yield "too big", schema["maximum"] + 1
    if "minimum" in schema:
        yield "too small", schema["minimum"] - 1
    if "maxLength" in schema:
        yield "too long", "x" * (schema["maxLength"] + 1)
    if kind == "integer":
        yield "fraction", 1.5


async def list_tools(tmp_path: Path) -> list[Tool]:
    server = build_server(Settings(db_path=tmp_path / "unused.db"), store=MemoryStore(), model_store=MemoryModelStore())
    async with Client(server) as client:
        return (await client.list_tools()).tools


def cases() -> Iterator[Any]:

    with tempfile.TemporaryDirectory() as where:
        tools = anyio.run(list_tools, Path(where))
    for tool in tools:
        schema = tool.input_schema
        defs = schema.get("$defs", {})
        base = valid(schema, defs)
        for name, prop in schema.get("properties", {}).items():
            if name in schema.get("required", []):
                yield pytest.param(
                    tool.name, {k: v for k, v in base.items() if k != name}, name, id=f"{tool.name}-{name}-missing"
                )
            for what, value in wrong_values(prop, defs):
                yield pytest.param(tool.name, {**base, name: value}, name, id=f"{tool.name}-{name}-{what}")


@pytest.mark.parametrize(("tool", "arguments", "argument"), list(cases()))
async def test_a_wrong_argument_is_named_in_one_plain_sentence(
    tmp_path: Path, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    store = MemoryStore()
    server = build_server(Settings(db_path=tmp_path / "unused.db"), store=store, model_store=MemoryModelStore())
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"{tool} was not called: {argument}")
    assert f"{argument} is required" in text or f"{argument} must be" in text
    assert not any(marker in text for marker in RAW_REPORT_MARKERS), text
    assert text.count("\n") == 0
    assert store._requests == {}  # nothing was recorded


def test_allowed_says_what_a_schema_accepts() -> None:
    assert allowed({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]}) == (
        "a number from 0 to 1, or null"
    )
    assert allowed({"type": "string", "maxLength": 200}) == "a string of at most 200 characters"
    assert allowed({"type": "array", "items": {"type": "string"}}) == "a list of strings"
    assert allowed({"type": "integer", "minimum": 1}) == "a whole number of at least 1"
    assert allowed({"enum": ["pending", "approved"]}) == "one of 'pending', 'approved'"
