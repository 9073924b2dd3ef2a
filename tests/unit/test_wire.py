"""Output schemas of structured results: rewritten to be cheap to check, with the same meaning."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import Field

from signoff.tools.wire import WireModel


class Inner(WireModel):
    n: int


class Sample(WireModel):
    text: str | None
    level: Literal["low", "high"] | None
    only: Literal["canary"] | None = None  # a const: must stay an anyOf, or null would be refused
    count: int | None = Field(default=None, ge=0)
    tags: list[str] | None = None
    inner: Inner | None = None
    inners: list[Inner] = Field(default_factory=list)


GOOD: list[dict[str, Any]] = [
    {"text": None, "level": None, "only": None, "count": None, "tags": None, "inner": None, "inners": []},
    {
        "text": "t",
        "level": "high",
        "only": "canary",
        "count": 3,
        "tags": ["a"],
        "inner": {"n": 1},
        "inners": [{"n": 2}],
    },
]
BAD: list[dict[str, Any]] = [
    {**GOOD[1], "level": "medium"},
    {**GOOD[1], "only": "other"},
    {**GOOD[1], "count": -1},
    {**GOOD[1], "inner": {"n": "one"}},
    {**GOOD[1], "inners": [{}]},
    {**GOOD[1], "text": 5},
]


def test_the_schema_has_no_refs_and_simple_optionals_are_type_lists() -> None:
    schema = Sample.model_json_schema()
    props = schema["properties"]
    assert "$defs" not in schema
    assert props["text"]["type"] == ["string", "null"]
    assert props["level"] == {"enum": ["low", "high", None], "title": "Level", "type": ["string", "null"]}
    assert props["inner"]["type"] == ["object", "null"] and props["inner"]["properties"]["n"]["type"] == "integer"
    assert props["only"]["anyOf"][0] == {"type": "null"}


@pytest.mark.parametrize("value", GOOD)
def test_what_the_model_accepts_the_schema_accepts(value: dict[str, Any]) -> None:
    Sample.model_validate(value)
    assert not list(Draft202012Validator(Sample.model_json_schema()).iter_errors(value))


@pytest.mark.parametrize("value", BAD)
def test_what_the_model_refuses_the_schema_refuses(value: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Sample.model_validate(value)
    assert list(Draft202012Validator(Sample.model_json_schema()).iter_errors(value))
