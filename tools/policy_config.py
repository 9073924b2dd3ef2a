"""The policy file: typed, frozen models and TOML loading with line-numbered errors.

``_convert`` checks the TOML values against the field annotations; each model's ``__post_init__``
checks what types cannot say. Both raise ``_Fault`` with a key path, which ``parse_policy_config``
turns into ``<file> line <n>: <key path>: <problem>``.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import tomllib
import types
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from storage.errors import ConfigError
from storage.records import Priority

KeyPath = tuple[str | int, ...]
_T = TypeVar("_T")

REQUEST_PATHS = ("action", "summary", "confidence", "flags", "agent_id", "payload")


class Outcome(enum.StrEnum):
    APPROVE = "approve"  #: The action may run without asking anyone.
    REVIEW = "review"  #: A person must approve first.
    REJECT = "reject"  #: Refused outright (a guardrail); nobody is asked.


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    REGEX = "regex"
    EXISTS = "exists"


NUMBER_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
_SCALAR_WANTED = "a string, number or boolean"
_VALUE_CHECKS: dict[Op, tuple[Callable[[Any], bool], str]] = {
    **{op: (lambda v: _is_number(v) and math.isfinite(v), "a finite number") for op in NUMBER_OPS},
    Op.EQ: (lambda v: _is_scalar(v), _SCALAR_WANTED),
    Op.NE: (lambda v: _is_scalar(v), _SCALAR_WANTED),
    Op.IN: (
        lambda v: isinstance(v, tuple | list) and bool(v) and all(map(_is_scalar, v)),
        'a non-empty array of values, e.g. ["a", "b"]',
    ),
    Op.REGEX: (lambda v: isinstance(v, str), "a string pattern"),
    Op.EXISTS: (lambda v: isinstance(v, bool), "true or false"),
}


class _Fault(ConfigError):
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


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_payload_bytes: int = 65536  #: size of the payload as canonical JSON, UTF-8
    max_summary_chars: int = 2000
    max_action_chars: int = 200
    max_flags: int = 32
    max_flag_chars: int = 100
    max_agent_id_chars: int = 200

    def __post_init__(self) -> None:
        for f in fields(self):
            _at_least(getattr(self, f.name), 1, f.name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Anomaly:
    enabled: bool = False
    novel_action: bool = True  #: first request for an action from an agent -> review
    min_samples: int = 20  #: recorded values a field needs before its numbers are judged
    threshold: float = 3.5  #: modified z-score limit

    def __post_init__(self) -> None:
        _at_least(self.min_samples, 1, "min_samples")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise _Fault(("threshold",), f"must be a number above 0 (3.5 is usual), not {self.threshold}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fairness:
    flags: tuple[str, ...] = ()  #: globs; a request flag matching one -> review

    def __post_init__(self) -> None:
        _non_empty_strings(self.flags, "flags")


@dataclass(frozen=True, kw_only=True, slots=True)
class Condition:
    path: str
    op: Op
    value: Any
    pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head, dot, rest = self.path.partition(".")
        if head not in REQUEST_PATHS or (dot and (head != "payload" or "" in rest.split("."))):
            raise _Fault(
                ("path",),
                f"unknown path {self.path!r}; use {', '.join(REQUEST_PATHS)} or payload.<field> "
                "(e.g. payload.amount, payload.recipient.country)",
            )
        accepts, wanted = _VALUE_CHECKS[self.op]
        if not accepts(self.value):
            several = self.op in (Op.EQ, Op.NE) and isinstance(self.value, tuple | list)
            hint = '; to match any of several values use op = "in"' if several else ""
            raise _Fault(("value",), f"{self.op} needs {wanted}, not {describe(self.value)}{hint}")
        if self.op is Op.REGEX:
            try:
                object.__setattr__(self, "pattern", re.compile(self.value))
            except re.error as exc:
                raise _Fault(("value",), f"invalid regular expression {self.value!r}: {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    name: str
    outcome: Outcome
    action: tuple[str, ...] = ()  #: globs (fnmatch, case-sensitive); empty matches any action
    when: tuple[Condition, ...] = ()  #: all must hold
    approvals_required: int | None = None
    expires_in_seconds: int | None = None
    priority: Priority | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise _Fault(("name",), "must not be empty; name the rule so reviewers see why they are asked")
        _non_empty_strings(self.action, "action")
        if self.approvals_required is not None:
            _at_least(self.approvals_required, 1, "approvals_required")
            if self.outcome is not Outcome.REVIEW:
                raise _Fault(
                    ("approvals_required",),
                    f'applies only to rules with outcome = "review"; remove it from this {self.outcome} rule',
                )
        if self.expires_in_seconds is not None:
            _at_least(self.expires_in_seconds, 1, "expires_in_seconds")


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyConfig:
    confidence_threshold: float = 0.85  #: confidence strictly below this -> review
    default_outcome: Outcome = Outcome.REVIEW  #: when no confidence is given and nothing else applies
    default_expires_in_seconds: int = 3600
    max_expires_in_seconds: int = 604800
    limits: Limits = field(default_factory=Limits)
    anomaly: Anomaly = field(default_factory=Anomaly)
    fairness: Fairness = field(default_factory=Fairness)
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        threshold = self.confidence_threshold
        if not (0 <= threshold <= 1):
            raise _Fault(("confidence_threshold",), f"must be between 0 and 1, not {threshold}")
        if self.default_outcome is Outcome.REJECT:
            raise _Fault(
                ("default_outcome",),
                'cannot be "reject"; use "approve" or "review", and a rule with outcome = "reject" '
                "to refuse specific actions",
            )
        _at_least(self.max_expires_in_seconds, 1, "max_expires_in_seconds")
        _at_most(self.default_expires_in_seconds, self.max_expires_in_seconds, ("default_expires_in_seconds",))
        names = [rule.name for rule in self.rules]
        for index, rule in enumerate(self.rules):
            if rule.name in names[:index]:
                raise _Fault(("rules", index, "name"), f"duplicate rule name {rule.name!r}; use unique names")
            if rule.expires_in_seconds is not None:
                key = ("rules", index, "expires_in_seconds")
                _at_most(rule.expires_in_seconds, self.max_expires_in_seconds, key)


def parse_policy_config(text: str, source: str = "<config>") -> PolicyConfig:
    """Parse a policy file's text; errors name the source, the line and the key path."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return _build(PolicyConfig, document, ())
    except _Fault as fault:
        line = _Locator(text).line(fault.key)
        raise ConfigError(f"{source} line {line}: {fault}") from None


def load_policy_config(path: str | os.PathLike[str]) -> PolicyConfig:
    """Read and parse a policy file; a missing or unreadable file is a ConfigError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"policy file {os.fspath(path)} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {os.fspath(path)}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"policy file {os.fspath(path)} is not UTF-8 text: {exc.reason}") from None
    return parse_policy_config(text, os.fspath(path))


# --- TOML document -> models -------------------------------------------------------------------

_ENUM_NOUNS: dict[type[enum.Enum], str] = {Outcome: "outcome", Op: "operator", Priority: "priority"}


def _build(cls: type[_T], raw: Any, key: KeyPath) -> _T:
    if not isinstance(raw, dict):
        raise _Fault(key, f"must be a table, not {describe(raw)}")
    assert is_dataclass(cls)
    allowed = [f.name for f in fields(cls) if f.init]
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Fault((*key, name), f"unknown key {name!r}{hint}; allowed keys: {', '.join(allowed)}")
        kwargs[name] = _convert(hints[name], value, (*key, name))
    for f in fields(cls):
        if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in kwargs:
            choices = f" (one of {_members(hints[f.name])})" if f.name == "outcome" else ""
            raise _Fault(key, f"missing required key {f.name!r}{choices}")
    try:
        return cls(**kwargs)
    except _Fault as fault:
        raise _Fault((*key, *fault.key), fault.problem) from None


def _convert(tp: Any, raw: Any, key: KeyPath) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return tuple(raw) if isinstance(raw, list) else raw
    if origin is types.UnionType:  # ``X | None``: TOML has no null, so only X can arrive
        return _convert(next(a for a in args if a is not type(None)), raw, key)
    if origin is tuple:
        if isinstance(raw, str) and args[0] is str:
            raw = [raw]
        if not isinstance(raw, list):
            raise _Fault(key, f"must be an array, not {describe(raw)}")
        return tuple(_convert(args[0], item, (*key, index)) for index, item in enumerate(raw))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not isinstance(raw, str):
            raise _Fault(key, f"must be a string, one of {_members(tp)}; not {describe(raw)}")
        try:
            return tp(raw)
        except ValueError:
            raise _Fault(key, f"unknown {_ENUM_NOUNS[tp]} {raw!r}; use one of {_members(tp)}") from None
    if is_dataclass(tp):
        return _build(tp, raw, key)  # type: ignore[arg-type]
    if tp is float and _is_number(raw):
        return float(raw)
    if tp is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if (tp is bool and isinstance(raw, bool)) or (tp is str and isinstance(raw, str)):
        return raw
    wanted = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}[tp]
    raise _Fault(key, f"must be {wanted}, not {describe(raw)}")


def _members(tp: type[enum.Enum]) -> str:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or (_is_number(value) and math.isfinite(value))


def _at_least(value: int, minimum: int, key: str) -> None:
    if value < minimum:
        raise _Fault((key,), f"must be at least {minimum:,}, not {value:,}")


def _at_most(value: int, maximum: int, key: KeyPath) -> None:
    if not (1 <= value <= maximum):
        raise _Fault(key, f"must be between 1 and {maximum:,} (max_expires_in_seconds), not {value:,}")


def _non_empty_strings(values: tuple[str, ...], key: str) -> None:
    for index, value in enumerate(values):
        if not value:
            raise _Fault((key, index), "must not be an empty string")


# --- Where is a key? ---------------------------------------------------------------------------

_STRING = (
    r'"""(?:\\.|[^\\])*?""""{0,2}'  # a closing """ may be followed by up to two quotes of content
    r"|'''.*?''''{0,2}"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'[^'\n]*'"
)
_KEY_PART = re.compile(rf"[A-Za-z0-9_-]+|{_STRING}")
_SCALAR = re.compile(rf"{_STRING}|[^,\]}}\n#]+", re.DOTALL)
_SPACES = re.compile(r"[ \t]*")
_GAPS = re.compile(r"(?:\s|#[^\n]*)*")  # whitespace, newlines and comments


class _Locator:
    """The offset of every table, key and array element of a (valid) TOML document.

    tomllib reports no positions for values, so this walks the text once, tracking the same
    key paths the models use (``rules``, 1, ``when``, 0, ``op``), including ``[[rules]]`` counts.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}  # array-of-tables path -> tables seen so far
        try:
            self._document()
        except (IndexError, ValueError):
            pass  # best effort: what was found before the surprise still locates most faults

    def line(self, key: KeyPath) -> int:
        for end in range(len(key), 0, -1):
            if (offset := self.found.get(key[:end])) is not None:
                return self.text.count("\n", 0, offset) + 1
        return 1

    def _document(self) -> None:
        text, i = self.text, 0
        table: KeyPath = ()
        while (i := self._skip(i, newlines=True)) < len(text):
            start = i
            if text.startswith("[[", i):
                keys, i = self._key(i + 2)
                table, i = self._header(keys, start, array=True), text.index("]]", i) + 2
            elif text[i] == "[":
                keys, i = self._key(i + 1)
                table, i = self._header(keys, start, array=False), text.index("]", i) + 1
            else:
                i = self._pair(i, table)

    def _header(self, keys: tuple[str, ...], at: int, *, array: bool) -> KeyPath:
        path: KeyPath = ()
        for key in keys[:-1]:
            path = (*path, key)
            if path in self._arrays:
                path = (*path, self._arrays[path] - 1)
        path = (*path, keys[-1])
        self.found.setdefault(path, at)
        if array:
            index = self._arrays.get(path, 0)
            self._arrays[path] = index + 1
            path = (*path, index)
            self.found[path] = at
        return path

    def _pair(self, i: int, table: KeyPath) -> int:
        start = i
        keys, i = self._key(i)
        if self.text[i] != "=":
            raise ValueError("expected '='")
        for end in range(1, len(keys)):
            self.found.setdefault((*table, *keys[:end]), start)
        return self._value(self._skip(i + 1), (*table, *keys), start)

    def _key(self, i: int) -> tuple[tuple[str, ...], int]:
        parts: list[str] = []
        while match := _KEY_PART.match(self.text, i := self._skip(i)):
            part = match.group()
            parts.append(part[1:-1] if part[0] in "\"'" else part)
            i = self._skip(match.end())
            if self.text[i] != ".":
                return tuple(parts), i
            i += 1
        raise ValueError("expected a key")

    def _value(self, i: int, path: KeyPath, at: int) -> int:
        text = self.text
        self.found.setdefault(path, at)
        if text[i] in "[{":
            close, index = "]" if text[i] == "[" else "}", 0
            while text[i := self._skip(i + 1 if index == 0 else i, newlines=True)] != close:
                if close == "]":
                    i = self._value(i, (*path, index), i)
                else:
                    i = self._pair(i, path)
                index += 1
                if text[i := self._skip(i, newlines=True)] == ",":
                    i += 1
            return i + 1
        if match := _SCALAR.match(text, i):
            return match.end()
        raise ValueError("expected a value")

    def _skip(self, i: int, *, newlines: bool = False) -> int:
        match = (_GAPS if newlines else _SPACES).match(self.text, i)
        return match.end() if match else i
