"""TOML tables -> frozen dataclasses, checked against their annotations, with errors that name the key path.

``convert`` checks the TOML values against the field annotations; each model's ``__post_init__`` checks what types
cannot say. Both raise ``Fault`` with a key path, which the file loader turns into ``<file> line <n>: <key path>: ...``.
"""

from __future__ import annotations

import difflib
import enum
import types
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from signoff.storage import ConfigError
from signoff.storage.canonical import is_finite_number, is_number
from signoff.tools.toml_positions import KeyPath

_T = TypeVar("_T")
#: how an error names an enum's values, when not by its class name
_ENUM_NOUNS = {"Op": "operator", "Expect": "outcome", "TriggerKind": "trigger kind", "AlertRuleName": "alert rule"}


class Fault(ConfigError):
    """A config value is invalid; ``key`` is relative to the object being built."""

    def __init__(self, key: KeyPath, problem: str) -> None:
        super().__init__(f"{format_key(key)}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def format_key(key: KeyPath) -> str:
    """``("rules", 1, "when", 0, "op")`` -> ``rules[1].when[0].op``."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def build(cls: type[_T], raw: Any, key: KeyPath) -> _T:
    if not isinstance(raw, dict):
        raise Fault(key, f"must be a table, not {describe(raw)}")
    assert is_dataclass(cls)
    allowed = [f.name for f in fields(cls) if f.init]
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Fault((*key, name), f"unknown key {name!r}{hint}; allowed keys: {', '.join(allowed)}")
        kwargs[name] = convert(hints[name], value, (*key, name))
    for f in fields(cls):
        if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in kwargs:
            choices = f" (one of {members(hints[f.name])})" if f.name == "outcome" else ""
            raise Fault(key, f"missing required key {f.name!r}{choices}")
    try:
        return cls(**kwargs)
    except Fault as fault:
        raise Fault((*key, *fault.key), fault.problem) from None


def convert(tp: Any, raw: Any, key: KeyPath) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return tuple(raw) if isinstance(raw, list) else raw
    if origin is types.UnionType:  # ``X | None``: TOML has no null, so only X can arrive
        return convert(next(a for a in args if a is not type(None)), raw, key)
    if origin is tuple:
        if isinstance(raw, str) and args[0] is str:
            raw = [raw]
        if not isinstance(raw, list):
            raise Fault(key, f"must be an array, not {describe(raw)}")
        return tuple(convert(args[0], item, (*key, index)) for index, item in enumerate(raw))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not isinstance(raw, str):
            raise Fault(key, f"must be a string, one of {members(tp)}; not {describe(raw)}")
        try:
            return tp(raw)
        except ValueError:
            noun = _ENUM_NOUNS.get(tp.__name__, tp.__name__.lower())
            raise Fault(key, f"unknown {noun} {raw!r}; use one of {members(tp)}") from None
    if is_dataclass(tp):
        return build(tp, raw, key)  # type: ignore[arg-type]
    if tp is float and is_number(raw):
        return float(raw)
    if tp is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if (tp is bool and isinstance(raw, bool)) or (tp is str and isinstance(raw, str)):
        return raw
    wanted = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}[tp]
    raise Fault(key, f"must be {wanted}, not {describe(raw)}")


def members(tp: type[enum.Enum]) -> str:
    return ", ".join(str(member.value) for member in tp)


def describe(value: Any) -> str:
    """A value as a TOML user would call it: ``the string 'abc'``, ``an array``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the {'integer' if isinstance(value, int) else 'float'} {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_finite_number(value)


def at_least(value: int, minimum: int, key: str) -> None:
    if value < minimum:
        raise Fault((key,), f"must be at least {minimum:,}, not {value:,}")


def at_most(value: int, maximum: int, key: KeyPath) -> None:
    if not (1 <= value <= maximum):
        raise Fault(key, f"must be between 1 and {maximum:,} (max_expires_in_seconds), not {value:,}")


def non_empty_strings(values: tuple[str, ...], key: str) -> None:
    for index, value in enumerate(values):
        if not value:
            raise Fault((key, index), "must not be an empty string")
