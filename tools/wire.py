"""The base of every structured tool result: its JSON schema states ``X | None`` compactly.

Pydantic writes an optional field as ``{"anyOf": [{"type": "string"}, {"type": "null"}]}``. Clients that check
every result against the tool's output schema (the Python SDK does, with jsonschema, on every call) pay for each
``anyOf`` branch they try; ``{"type": ["string", "null"]}`` means the same and halves the cost of checking an
``ApprovalStatus``. An optional nested model (a ``$ref``) keeps its ``anyOf``, with null tried first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

NULL = {"type": "null"}


def compact_nullables(schema: dict[str, Any]) -> None:
    """Rewrite, in place, each property ``anyOf: [<one simple type>, null]`` as ``type: [<type>, "null"]``, and put
    null first in ``anyOf: [<a $ref>, null]``."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if not isinstance(options, list) or len(options) != 2 or NULL not in options:
            continue
        other = options[1] if options[0] == NULL else options[0]
        if not isinstance(other.get("type"), str):  # e.g. a $ref: null first, so a null value matches at once
            prop["anyOf"] = [NULL, other]
            continue
        del prop["anyOf"]
        prop.update(other)
        prop["type"] = [other["type"], "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]


class WireModel(BaseModel):
    model_config = ConfigDict(json_schema_extra=compact_nullables)
