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
import unicodedata
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from signoff.storage.canonical import is_number
from signoff.storage.errors import ConfigError
from signoff.storage.records import Priority
from signoff.tools.toml_positions import KeyPath, Locator

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


class Role(enum.StrEnum):
    AGENT = "agent"  #: calls the agent tools over HTTP, always as its own identity
    REVIEWER = "reviewer"  #: decides requests through the reviewer HTTP API, as its own identity


NUMBER_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
_SCALAR_WANTED = "a string, number or boolean"
_VALUE_CHECKS: dict[Op, tuple[Callable[[Any], bool], str]] = {
    **{op: (lambda v: is_number(v) and math.isfinite(v), "a finite number") for op in NUMBER_OPS},
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


SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")


def _slack_ids(values: tuple[str, ...], key: str) -> None:
    for index, value in enumerate(values):
        if not SLACK_ID.fullmatch(value):
            raise _Fault(
                (key, index),
                f"{value!r} is not a Slack user id (U… or W…) or user group id (S…); in Slack, open the "
                "person's profile, then ⋯ > Copy member ID",
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackRouting:
    channel: str | None = None  #: where review requests are posted; SIGNOFF_SLACK_CHANNEL when unset
    approvers: tuple[str, ...] = ()  #: Slack user ids and user group ids allowed to vote in Slack

    def __post_init__(self) -> None:
        _slack_ids(self.approvers, "approvers")
        if self.channel is not None and not self.channel.strip():
            raise _Fault(("channel",), "must not be empty; use a channel id (C…) or name (#approvals)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Person:
    """One human and every name they go by, so nobody approves their own request under another name."""

    name: str
    aliases: tuple[str, ...]  #: agent ids they own, their Slack user id, their CLI name

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise _Fault(("name",), "must not be empty")
        _non_empty_strings(self.aliases, "aliases")


@dataclass(frozen=True, kw_only=True, slots=True)
class Token:
    """A bearer token for the HTTP transport, stored as its SHA-256 (`signoff token new` makes one)."""

    identity: str
    role: Role
    sha256: str

    def __post_init__(self) -> None:
        if not self.identity.strip():
            raise _Fault(("identity",), "must not be empty; it is the name the caller acts as")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise _Fault(("sha256",), "must be 64 lowercase hex digits: the SHA-256 that `signoff token new` prints")


@dataclass(frozen=True, kw_only=True, slots=True)
class Auth:
    tokens: tuple[Token, ...] = ()
    agents_see_all: bool = False  #: let agents read every request, not only their own

    def __post_init__(self) -> None:
        digests = [token.sha256 for token in self.tokens]
        for index, digest in enumerate(digests):
            if digest in digests[:index]:
                raise _Fault(("tokens", index, "sha256"), "the same token is listed twice")


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    name: str
    outcome: Outcome
    action: tuple[str, ...] = ()  #: globs (fnmatch, case-sensitive); empty matches any action
    when: tuple[Condition, ...] = ()  #: all must hold
    approvals_required: int | None = None
    expires_in_seconds: int | None = None
    priority: Priority | None = None
    channel: str | None = None  #: Slack channel for this rule's reviews (first matching rule that sets one)
    approvers: tuple[str, ...] = ()  #: Slack ids who may vote on this rule's reviews (first rule that sets them)
    escalate_after_seconds: int | None = None  #: still pending after this long: tell escalate_to
    escalate_to: str | None = None  #: a Slack user group (S…), mentioned in the thread, or a channel, posted to

    def __post_init__(self) -> None:
        _slack_ids(self.approvers, "approvers")
        if (self.escalate_after_seconds is None) != (self.escalate_to is None):
            missing = "escalate_to" if self.escalate_to is None else "escalate_after_seconds"
            raise _Fault((missing,), "escalation needs both escalate_after_seconds and escalate_to")
        if self.escalate_after_seconds is not None:
            _at_least(self.escalate_after_seconds, 1, "escalate_after_seconds")
            if self.outcome is not Outcome.REVIEW:
                raise _Fault(("escalate_after_seconds",), 'applies only to rules with outcome = "review"')
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
    slack: SlackRouting = field(default_factory=SlackRouting)
    people: tuple[Person, ...] = ()
    auth: Auth = field(default_factory=Auth)
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
        owners: dict[str, str] = {}
        for index, person in enumerate(self.people):
            for alias_index, alias in enumerate((person.name, *person.aliases)):
                owner = owners.setdefault(_normal(alias), person.name)
                if owner != person.name:
                    key = ("people", index, "aliases", alias_index - 1) if alias_index else ("people", index, "name")
                    raise _Fault(key, f"{alias!r} already names {owner!r}; each name belongs to one person")
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
        line = Locator(text).line(fault.key)
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

_ENUM_NOUNS: dict[type[enum.Enum], str] = {Outcome: "outcome", Op: "operator", Priority: "priority", Role: "role"}


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
    if tp is float and is_number(raw):
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


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or (is_number(value) and math.isfinite(value))


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


def person_of(config: PolicyConfig, name: str) -> str:
    """The person a name belongs to (by ``[[people]]``), or the name itself; case-insensitive."""
    folded = _normal(name)
    for person in config.people:
        if folded in (_normal(alias) for alias in (person.name, *person.aliases)):
            return _normal(person.name)
    return folded


def _normal(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().casefold()
