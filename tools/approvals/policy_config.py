"""The policy file: typed, frozen models and TOML loading with line-numbered errors.

``convert`` checks the TOML values against the field annotations; each model's ``__post_init__``
checks what types cannot say. Both raise ``Fault`` with a key path, which ``parse_policy_config``
turns into ``<file> line <n>: <key path>: <problem>``.
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

from jsonschema import (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from signoff.storage import ConfigError, Priority
from signoff.storage.canonical import is_finite_number
from signoff.storage.redaction import Redaction
from signoff.tools.access import SLACK_ID, Auth, Person, Role, SlackRouting, normal_name
from signoff.tools.alert_rules import AlertRule, check_alert_list
from signoff.tools.approvals.lookups import Lookup
from signoff.tools.approvals.priority import PriorityFrom
from signoff.tools.toml_positions import KeyPath, Locator
from signoff.tools.typed_toml import Fault, at_least, at_most, build, describe, is_scalar, non_empty_strings

_T = TypeVar("_T")

REQUEST_PATHS = ("action", "summary", "confidence", "flags", "agent_id", "payload")
DEFAULT_VERSION = "defaults"  #: the version of the built-in policy (no file)


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
    **{op: (is_finite_number, "a finite number") for op in NUMBER_OPS},
    Op.EQ: (lambda v: is_scalar(v), _SCALAR_WANTED),
    Op.NE: (lambda v: is_scalar(v), _SCALAR_WANTED),
    Op.IN: (
        lambda v: isinstance(v, tuple | list) and bool(v) and all(map(is_scalar, v)),
        'a non-empty array of values, e.g. ["a", "b"]',
    ),
    Op.REGEX: (lambda v: isinstance(v, str), "a string pattern"),
    Op.EXISTS: (lambda v: isinstance(v, bool), "true or false"),
}


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
            at_least(getattr(self, f.name), 1, f.name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Anomaly:
    enabled: bool = False
    novel_action: bool = True  #: first request for an action from an agent -> review
    min_samples: int = 20  #: recorded values a field needs before its numbers are judged
    threshold: float = 3.5  #: modified z-score limit
    # Out of distribution, learnt from the newest ``window`` approved requests of the same action:
    new_values: bool = True  #: a value never seen for a categorical string field -> review
    key_set: bool = True  #: keys never sent with this action, or missing keys every request had -> review
    text_length: bool = True  #: a string ``text_factor`` times longer than any seen for the field -> review
    warmup: int = 50  #: approved requests of the action needed before the three checks above judge it
    window: int = 500  #: the newest approved requests of the action they learn from
    #: a field with more distinct values than this, or than half its samples, is free text, not a category
    max_categories: int = 50
    text_factor: float = 3.0

    def __post_init__(self) -> None:
        at_least(self.min_samples, 1, "min_samples")
        at_least(self.warmup, 1, "warmup")
        at_least(self.max_categories, 1, "max_categories")
        if not 1 <= self.window <= 10_000:
            raise Fault(("window",), f"must be from 1 to 10,000, not {self.window:,}")
        if self.warmup > self.window:
            raise Fault(("warmup",), f"must be at most window ({self.window:,}), not {self.warmup:,}")
        if not (math.isfinite(self.text_factor) and self.text_factor > 1):
            raise Fault(("text_factor",), f"must be a number above 1 (3 is usual), not {self.text_factor}")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise Fault(("threshold",), f"must be a number above 0 (3.5 is usual), not {self.threshold}")


#: ``[[fairness.groups]]`` outcomes that are not a payload field: what signoff itself decided
STREAM_OUTCOMES = {
    "policy": "approved by policy at once",  #: every request counts; positive: the policy approved it
    "approved": "approved",  #: approved or rejected requests count (by policy or people); positive: approved
}


def check_request_path(path: str, key: str) -> None:
    """A path into a request: ``action``, ``agent_id``, … or ``payload.<field>``."""
    head, dot, rest = path.partition(".")
    if head not in REQUEST_PATHS or (dot and (head != "payload" or "" in rest.split("."))):
        raise Fault(
            (key,),
            f"unknown path {path!r}; use {', '.join(REQUEST_PATHS)} or payload.<field> "
            "(e.g. payload.amount, payload.recipient.country)",
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class FairnessGroup:
    """``[[fairness.groups]]``: watch an outcome's rate per group; a group far from the rest -> review."""

    attribute: str  #: the request path whose value names the group, e.g. payload.applicant.age_band
    outcome: str = "policy"  #: "policy", "approved", or a payload path compared with ``positive``
    positive: Any = None  #: with a payload outcome: the value that counts as the positive outcome
    action: tuple[str, ...] = ()  #: globs; empty: every action
    window: int = 1000  #: the newest requests with a group and an outcome that are counted
    min_samples: int = 30  #: requests a group and the rest each need before the group is judged
    margin: float = 0.1  #: the smallest difference of rates (0-1) that matters
    alpha: float = 0.05  #: the chance of a false alarm on a fair stream, shared by all groups (Bonferroni)

    def __post_init__(self) -> None:
        check_request_path(self.attribute, "attribute")
        non_empty_strings(self.action, "action")
        if self.outcome in STREAM_OUTCOMES:
            if self.positive is not None:
                raise Fault(("positive",), f'applies only to a payload outcome, not "{self.outcome}"')
        else:
            if not self.outcome.startswith("payload."):
                raise Fault(
                    ("outcome",),
                    f'must be "policy", "approved" or a payload path such as payload.decision, not {self.outcome!r}',
                )
            check_request_path(self.outcome, "outcome")
            if not is_scalar(self.positive):
                raise Fault(("positive",), 'a payload outcome needs the positive value, e.g. positive = "approve"')
        if not 10 <= self.window <= 100_000:
            raise Fault(("window",), f"must be from 10 to 100,000, not {self.window:,}")
        at_least(self.min_samples, 5, "min_samples")
        if not 0 < self.margin < 1:
            raise Fault(("margin",), f"must be between 0 and 1 (0.1 is ten points), not {self.margin}")
        if not 0 < self.alpha <= 0.5:
            raise Fault(("alpha",), f"must be above 0 and at most 0.5 (0.05 is usual), not {self.alpha}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fairness:
    flags: tuple[str, ...] = ()  #: globs; a request flag matching one -> review
    groups: tuple[FairnessGroup, ...] = ()  #: outcome rates watched per group

    def __post_init__(self) -> None:
        non_empty_strings(self.flags, "flags")


FIELD_OPS = frozenset({Op.EQ, Op.NE, *NUMBER_OPS})  #: the operators that compare two fields of a request


@dataclass(frozen=True, kw_only=True, slots=True)
class Condition:
    path: str
    op: Op
    value: Any = None  #: a constant; or, instead, ``field``
    field: str | None = None  #: another path of the same request to compare with (a contradiction check)
    lookup: str | None = None  #: instead: a ``[[lookups]]`` name, compared with trusted data (a contradiction check)
    key: str | None = None  #: with lookup: the request path whose value is looked up (default: ``path``)
    column: str | None = None  #: with lookup and a comparing op: the looked-up row's value compared with ``path``
    required: bool = True  #: with lookup and a comparing op: a key missing from the table fails closed (review)
    pattern: re.Pattern[str] | None = dataclass_field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_request_path(self.path, "path")
        if self.lookup is not None:
            self._check_lookup()
            return
        for name in ("key", "column"):
            if getattr(self, name) is not None:
                raise Fault((name,), "applies only with lookup (a [[lookups]] name)")
        if self.field is not None:
            check_request_path(self.field, "field")
            if self.value is not None:
                raise Fault(("field",), "give either value (a constant) or field (another path), not both")
            if self.op not in FIELD_OPS:
                ops = ", ".join(sorted(FIELD_OPS))
                raise Fault(("op",), f"{self.op} cannot compare two fields; use one of {ops}")
            return
        if self.value is None:
            raise Fault((), "missing required key 'value' (a constant; or field = another path of the request)")
        accepts, wanted = _VALUE_CHECKS[self.op]
        if not accepts(self.value):
            several = self.op in (Op.EQ, Op.NE) and isinstance(self.value, tuple | list)
            hint = '; to match any of several values use op = "in"' if several else ""
            raise Fault(("value",), f"{self.op} needs {wanted}, not {describe(self.value)}{hint}")
        if self.op is Op.REGEX:
            try:
                flags = re.IGNORECASE if self.path == "action" else 0  # action names ignore case everywhere
                object.__setattr__(self, "pattern", re.compile(self.value, flags))
            except re.error as exc:
                raise Fault(("value",), f"invalid regular expression {self.value!r}: {exc}") from None

    def _check_lookup(self) -> None:
        if self.field is not None:
            raise Fault(("field",), "give either field (another path) or lookup (trusted data), not both")
        check_request_path(self.key or self.path, "key")
        if self.op is Op.EXISTS:
            if not isinstance(self.value, bool):
                raise Fault(
                    ("value",), "with lookup, exists needs value = true (the key is listed) or false (it is not)"
                )
            if self.column is not None:
                raise Fault(("column",), "exists checks whether the key is listed; it compares no column")
            return
        if self.op not in FIELD_OPS:
            ops = ", ".join(sorted(FIELD_OPS | {Op.EXISTS}))
            raise Fault(("op",), f"{self.op} cannot compare with a lookup; use one of {ops}")
        if self.value is not None:
            raise Fault(("value",), "give either value (a constant) or lookup (trusted data), not both")
        if not self.column:
            raise Fault(
                (), 'a lookup comparison needs column, the looked-up value to compare with, e.g. column = "limit"'
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    name: str
    outcome: Outcome
    action: tuple[str, ...] = ()  #: globs (fnmatch, ignoring case); empty matches any action
    when: tuple[Condition, ...] = ()  #: all must hold
    approvals_required: int | None = None
    expires_in_seconds: int | None = None
    priority: Priority | None = None
    priority_from: PriorityFrom | None = None  #: priority computed from the request (bands of a number, triggers)
    channel: str | None = None  #: Slack channel for this rule's reviews (first matching rule that sets one)
    #: who may vote on this rule's reviews, in every channel (the first matching rule that sets them, unless a rule
    #: matched only by failing closed: see Policy._approvers): Slack user and group ids, names and aliases in
    #: [[people]], reviewer token identities
    approvers: tuple[str, ...] = ()
    escalate_after_seconds: int | None = None  #: still pending after this long: tell escalate_to
    escalate_to: str | None = None  #: a Slack user group (S…), mentioned in the thread, or a channel, posted to

    def __post_init__(self) -> None:
        non_empty_strings(self.approvers, "approvers")
        if self.priority_from is not None and self.priority_from.path is not None:
            check_request_path(self.priority_from.path, "priority_from")
        if (self.escalate_after_seconds is None) != (self.escalate_to is None):
            missing = "escalate_to" if self.escalate_to is None else "escalate_after_seconds"
            raise Fault((missing,), "escalation needs both escalate_after_seconds and escalate_to")
        if self.escalate_after_seconds is not None:
            at_least(self.escalate_after_seconds, 1, "escalate_after_seconds")
            if self.outcome is not Outcome.REVIEW:
                raise Fault(("escalate_after_seconds",), 'applies only to rules with outcome = "review"')
        if not self.name.strip():
            raise Fault(("name",), "must not be empty; name the rule so reviewers see why they are asked")
        non_empty_strings(self.action, "action")
        if self.approvals_required is not None:
            at_least(self.approvals_required, 1, "approvals_required")
            if self.outcome is not Outcome.REVIEW:
                raise Fault(
                    ("approvals_required",),
                    f'applies only to rules with outcome = "review"; remove it from this {self.outcome} rule',
                )
        if self.expires_in_seconds is not None:
            at_least(self.expires_in_seconds, 1, "expires_in_seconds")


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionSchema:
    """``[[schemas]]``: payloads of actions matching ``action`` must be valid under ``schema``."""

    action: tuple[str, ...]  #: globs, ignoring case, as rules' action globs
    schema: Any  #: a JSON Schema as a TOML table (draft 2020-12 unless it names another with "$schema")
    validator: Validator = field(init=False, repr=False, compare=False)
    #: the schema's top-level ``required`` keys, when a payload (an object) that lacks one is refused whatever else
    #: it holds: draft 4 or later, and no reference anywhere (a reference that leads nowhere is refused with its
    #: own reason, and in drafts 4 to 7 a top-level ``$ref`` overrides its siblings). Empty: the validator decides
    required_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.action:
            raise Fault(("action",), 'must name at least one action glob, e.g. "payments.*"')
        non_empty_strings(self.action, "action")
        schema = self.schema
        if not isinstance(schema, dict):
            raise Fault(("schema",), 'must be a table, e.g. { type = "object", required = ["amount"] }')
        for key, ref in _references(schema, ("schema",)):
            if not ref.startswith("#"):
                raise Fault(key, f"{ref!r} is outside this schema; only references like '#/$defs/name' are allowed")
        cls: Any = Draft202012Validator
        if "$schema" in schema:
            known = isinstance(schema["$schema"], str)
            cls = validator_for(schema, default=None) if known else None  # type: ignore[arg-type]  # None: unknown
            if cls is None:
                raise Fault(("schema", "$schema"), f"unknown JSON Schema dialect {schema['$schema']!r}")
        try:
            cls.check_schema(schema)
        except SchemaError as error:
            raise Fault(("schema", *error.absolute_path), f"not a valid JSON Schema: {error.message}") from None
        object.__setattr__(self, "validator", cls(schema, format_checker=cls.FORMAT_CHECKER))
        required = schema.get("required")
        plain = cls in _REQUIRED_AT_TOP and not _mentions_references(schema)
        if not (plain and isinstance(required, list) and all(isinstance(name, str) for name in required)):
            required = []
        object.__setattr__(self, "required_keys", tuple(required))


@dataclass(frozen=True, kw_only=True, slots=True)
class Redact:
    """``[redact]``: payload fields masked wherever a payload leaves the database (Slack, webhooks, exports, the
    console's default view); the audit chain and the receipts still bind the full payload."""

    paths: tuple[str, ...] = ()  #: e.g. "payload.ssn", "payload.*.card_number"
    redaction: Redaction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for index, path in enumerate(self.paths):
            try:
                Redaction.of([path])
            except ValueError as exc:
                raise Fault(("paths", index), str(exc)) from None
        object.__setattr__(self, "redaction", Redaction.of(self.paths))


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyConfig:
    confidence_threshold: float = 0.85  #: confidence strictly below this -> review
    default_outcome: Outcome = Outcome.REVIEW  #: when no confidence is given and nothing else applies
    default_expires_in_seconds: int = 3600
    max_expires_in_seconds: int = 604800
    receipt_ttl_seconds: int | None = None  #: receipts expire this long after the decision; unset: with the request
    limits: Limits = field(default_factory=Limits)
    anomaly: Anomaly = field(default_factory=Anomaly)
    fairness: Fairness = field(default_factory=Fairness)
    slack: SlackRouting = field(default_factory=SlackRouting)
    people: tuple[Person, ...] = ()
    auth: Auth = field(default_factory=Auth)
    rules: tuple[Rule, ...] = ()
    schemas: tuple[ActionSchema, ...] = ()  #: payload schemas per action glob (invalid payload: invalid input)
    redact: Redact = field(default_factory=Redact)  #: payload fields masked on the way out
    lookups: tuple[Lookup, ...] = ()  #: trusted data rules compare requests with (contradiction checks)
    alerts: tuple[AlertRule, ...] = ()  #: the built-in alert rules that run (none: the defaults); re-read each round

    def __post_init__(self) -> None:
        self._check_lookups()
        check_alert_list(self.alerts)
        threshold = self.confidence_threshold
        if not (0 <= threshold <= 1):
            raise Fault(("confidence_threshold",), f"must be between 0 and 1, not {threshold}")
        if self.default_outcome is Outcome.REJECT:
            raise Fault(
                ("default_outcome",),
                'cannot be "reject"; use "approve" or "review", and a rule with outcome = "reject" '
                "to refuse specific actions",
            )
        at_least(self.max_expires_in_seconds, 1, "max_expires_in_seconds")
        if self.receipt_ttl_seconds is not None:
            at_least(self.receipt_ttl_seconds, 1, "receipt_ttl_seconds")
        at_most(self.default_expires_in_seconds, self.max_expires_in_seconds, ("default_expires_in_seconds",))
        owners: dict[str, str] = {}
        for index, person in enumerate(self.people):
            for alias_index, alias in enumerate((person.name, *person.aliases)):
                owner = owners.setdefault(normal_name(alias), person.name)
                if owner != person.name:
                    key = ("people", index, "aliases", alias_index - 1) if alias_index else ("people", index, "name")
                    raise Fault(key, f"{alias!r} already names {owner!r}; each name belongs to one person")
        known = set(owners) | {normal_name(t.identity) for t in self.auth.tokens if t.role is Role.REVIEWER}
        names = [rule.name for rule in self.rules]
        for index, rule in enumerate(self.rules):
            for approver_index, approver in enumerate(rule.approvers):
                if not (SLACK_ID.fullmatch(approver) or normal_name(approver) in known):
                    raise Fault(
                        ("rules", index, "approvers", approver_index),
                        f"{approver!r} is not a Slack user or group id (U…, W…, S…), a name or alias in [[people]],"
                        " or the identity of a reviewer token in [[auth.tokens]]; add them to [[people]] or fix the"
                        " spelling",
                    )
            if rule.name in names[:index]:
                raise Fault(("rules", index, "name"), f"duplicate rule name {rule.name!r}; use unique names")
            if rule.expires_in_seconds is not None:
                key = ("rules", index, "expires_in_seconds")
                at_most(rule.expires_in_seconds, self.max_expires_in_seconds, key)

    def _check_lookups(self) -> None:
        names: dict[str, int] = {}
        for index, lookup in enumerate(self.lookups):
            if lookup.name in names:
                raise Fault(("lookups", index, "name"), f"duplicate lookup name {lookup.name!r}; use unique names")
            names[lookup.name] = index
        for index, rule in enumerate(self.rules):
            for position, condition in enumerate(rule.when):
                if condition.lookup is not None and condition.lookup not in names:
                    known = ", ".join(names) or "none defined"
                    raise Fault(
                        ("rules", index, "when", position, "lookup"),
                        f"no [[lookups]] named {condition.lookup!r} (known: {known})",
                    )

    def lookup(self, name: str) -> Lookup:
        return next(lookup for lookup in self.lookups if lookup.name == name)


TOO_DEEP = "arrays or tables are nested too deep to read (hundreds of levels inside each other): flatten them"


def parse_policy_config(text: str, source: str = "<config>") -> PolicyConfig:
    """Parse a policy file's text; errors name the source, the line and the key path. A file nested too deep for
    the parser (or a ``[[schemas]]`` schema too deep to check) is refused like any other mistake: a reload keeps
    the policy it has rather than stopping the server."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: {TOO_DEEP}") from None
    try:
        return build(PolicyConfig, document, ())
    except Fault as fault:
        line = Locator(text).line(fault.key)
        raise ConfigError(f"{source} line {line}: {fault}") from None
    except RecursionError:
        raise ConfigError(f"{source}: {TOO_DEEP}") from None


def policy_version(text: str | None) -> str:
    """The policy's version: the first 16 hex digits of the SHA-256 of the file's text (UTF-8), or ``defaults``.

    Two files with the same bytes have the same version wherever they live; any edit, even a comment, makes a new one.
    """
    if text is None:
        return DEFAULT_VERSION
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_policy_config(path: str | os.PathLike[str]) -> PolicyConfig:
    """Read and parse a policy file; a missing or unreadable file is a ConfigError too."""
    return parse_policy_config(read_policy_text(path), os.fspath(path))


def read_policy_text(path: str | os.PathLike[str]) -> str:
    """A policy file's text; a missing or unreadable file is a ConfigError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"policy file {os.fspath(path)} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {os.fspath(path)}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"policy file {os.fspath(path)} is not UTF-8 text: {exc.reason}") from None


#: the dialects where a top-level ``required`` list holds for every object (draft 3 reads ``required`` elsewhere)
_REQUIRED_AT_TOP = (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)


def _mentions_references(node: Any) -> bool:
    """Whether any key of ``node``, however deep, is a JSON Schema reference keyword."""
    if isinstance(node, dict):
        return any(
            name in ("$ref", "$dynamicRef", "$recursiveRef") or _mentions_references(value)
            for name, value in node.items()
        )
    if isinstance(node, list):
        return any(_mentions_references(value) for value in node)
    return False


def _references(node: Any, key: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield (*key, name), value
            else:
                yield from _references(value, (*key, name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _references(value, (*key, index))
