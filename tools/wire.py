"""The base of every structured tool result: its JSON schema states ``X | None`` compactly.

Pydantic writes an optional field as ``{"anyOf": [{"type": "string"}, {"type": "null"}]}``. Clients that check
every result against the tool's output schema (the Python SDK does, with jsonschema, on every call) pay for each
``anyOf`` branch they try; ``{"type": ["string", "null"]}`` means the same and halves the cost of checking an
``ApprovalStatus``. Nested models are written out in place rather than as ``$ref``s, which a client must resolve
on every check; an optional nested model becomes ``{"type": ["object", "null"], "properties": ...}``.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

NULL = {"type": "null"}
#: Keywords that constrain only values of their own type (or only annotate), so ``type: [T, "null"]`` beside
#: them still lets null through. Anything else (``const``, ``not``, ``allOf``, ``$ref``...) would apply to null too.
TYPE_SCOPED = frozenset({
    "type", "enum", "title", "description", "default", "examples", "format", "minLength", "maxLength", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "properties", "required", "additionalProperties",
    "patternProperties", "minProperties", "maxProperties",
})  # fmt: skip


def compact_nullables(schema: dict[str, Any]) -> None:
    """Rewrite, in place, each property ``anyOf: [<one simple type>, null]`` as ``type: [<type>, "null"]``; any
    other ``anyOf: [<schema>, null]`` (a ``$ref``, a ``const``) keeps its meaning, with null tried first."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if not isinstance(options, list) or len(options) != 2 or NULL not in options:
            continue
        other = options[1] if options[0] == NULL else options[0]
        if not isinstance(other.get("type"), str) or not set(other) <= TYPE_SCOPED:
            prop["anyOf"] = [NULL, other]  # e.g. a $ref or a const: kept, null first so a null matches at once
            continue
        del prop["anyOf"]
        for key, value in other.items():  # the property's own title and description win over the type's
            prop.setdefault(key, value)
        prop["type"] = [other["type"], "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]


def _inline_refs(node: Any, handler: GetJsonSchemaHandler) -> Any:
    """``node`` with every ``{"$ref": ...}`` replaced by a copy of the schema it names."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return copy.deepcopy(handler.resolve_ref_schema(node))
        return {key: _inline_refs(value, handler) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, handler) for value in node]
    return node


class WireModel(BaseModel):
    model_config = ConfigDict(json_schema_extra=compact_nullables)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The nested models written out in place instead of as ``$ref``s to ``$defs``: a client that checks a
        result against the schema resolves no references (for an approved ``ApprovalStatus``, with its receipt,
        that halves the check). The models are small and none contains itself."""
        schema = handler(core_schema)
        own = handler.resolve_ref_schema(schema)
        own.update(_inline_refs(dict(own), handler))
        compact_nullables(own)  # again: an optional nested model is a plain object type now
        return schema
