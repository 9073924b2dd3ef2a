"""Does a rule apply to a request? Action globs and ``when`` conditions, failing closed on input they cannot judge.

Pure: no I/O. A condition is true, false or *unclear*: the value has a shape the condition cannot judge (a
string where a number was expected, an object or array where a value was expected, a key that is there only
under another case or spelling). A ``reject`` or ``review`` rule treats unclear as matching and says why in its
trigger; an ``approve`` rule treats it as not matching. Either way the unclear input never gets a softer outcome
than clear input would. Outside ``flags``, null and an empty array are unclear, and an array is judged element by
element in the same direction: a review or reject rule's condition holds if it holds for any element, an approve
rule's only if it holds for every one. docs/policy.md ("Conditions", "Fail closed") states the rule for every
operator.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signoff.storage.canonical import canonical_json, is_number
from signoff.storage.folding import fold_action, fold_key
from signoff.tools.approvals.lookups import Answer, lookup_key
from signoff.tools.approvals.policy_config import NUMBER_OPS, Condition, Op, Outcome, Rule

__all__ = ["Match", "Unclear", "action_glob", "lookup_request_key", "match_rule", "resolve", "show"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Unclear:
    """A value a condition cannot judge, and why (shown to reviewers in the trigger)."""

    reason: str


def action_glob(action: str, globs: Iterable[str]) -> str | None:
    """The first glob that matches ``action``, ignoring case (``PAYMENTS.Transfer`` is ``payments.*``)."""
    return _action_glob(action, globs if isinstance(globs, tuple) else tuple(globs))


@functools.lru_cache(maxsize=4096)
def _action_glob(action: str, globs: tuple[str, ...]) -> str | None:
    """``action_glob``, kept for the last 4,096 (action, globs): a policy asks the same few many times."""
    either, each = _globs(globs)
    folded = fold_action(action)
    if either.match(folded) is None:  # one regular expression for all of them: most rules do not match
        return None
    return next(glob for glob, pattern in each if pattern.match(folded))


@functools.lru_cache(maxsize=4096)
def _globs(globs: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[tuple[str, re.Pattern[str]], ...]]:
    """The globs as one regular expression, and each as its own, ignoring case (as ``fnmatch.fnmatchcase`` of the
    case-folded names)."""
    each = tuple((glob, re.compile(fnmatch.translate(fold_action(glob)))) for glob in globs)
    either = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in each) or "(?!)")
    return either, each


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that applies to a request: the trigger detail, and how trusted data took part."""

    detail: str
    trusted: bool = False  #: a condition compared the request with a lookup (a contradiction)
    failed: bool = False  #: a lookup could not answer: the rule fails closed, the request goes to people
    failure: str = ""  #: with ``failed``: the rule, the condition it could not check, and why
    #: why the rule matched only by failing closed: each condition it could not judge (or check), and why
    unclear: tuple[str, ...] = ()


Ask = Callable[[str, "str | int"], Answer]  #: (lookup name, key) -> the lookup's answer


def match_rule(rule: Rule, request: Any, ask: Ask | None = None) -> Match | None:
    """Whether ``rule`` applies to ``request`` (a ``PolicyInput``), and why; None if it does not.

    Lookup conditions are judged last, so a rule whose other conditions do not hold asks no trusted data. Without
    ``ask``, every lookup fails (closed)."""
    parts: list[str] = []
    unclear: list[str] = []  #: the conditions it could not judge (a review or reject rule matches on them)
    held: list[tuple[int, Condition, Any]] = []  #: (place in parts, condition, value) of the value conditions that hold
    if rule.action:
        glob = action_glob(request.action, rule.action)
        if glob is None:
            return None
        parts.append(f"action {request.action} matches {glob!r}")
    paths = _Paths(request)
    trusted = False
    for condition in sorted(rule.when, key=lambda c: c.lookup is not None):
        actual = paths.resolve(condition.path)
        if condition.lookup is not None:
            verdict, said = _trusted(condition, paths, actual, ask)
            if verdict is None:
                return None
            if isinstance(verdict, _Failed):
                failure = f"rule {rule.name!r} ({rule.outcome}): cannot check {said}: {verdict.reason}"
                detail = f"{failure}; failing closed, a person must check"
                return Match(detail, trusted=True, failed=True, failure=failure, unclear=(f"{said}: {verdict.reason}",))
            if isinstance(verdict, Unclear):
                if rule.outcome is Outcome.APPROVE:
                    return None
                unclear.append(verdict.reason)
                said = f"{said} ({verdict.reason}: treated as matching)"
            trusted = True
            parts.append(said)
            continue
        if condition.field is not None:
            other = paths.resolve(condition.field)
            verdict = _compare(condition, actual, other)
            said = f"{condition.path} {condition.op} {condition.field}"
            if isinstance(verdict, Unclear):
                if rule.outcome is Outcome.APPROVE:
                    return None
                unclear.append(verdict.reason)
                parts.append(f"{said} ({verdict.reason}: treated as matching)")
            elif not verdict:
                return None
            else:
                parts.append(f"{said} (was {show(actual)} against {show(other)})")
            continue
        verdict = _judge(condition, actual, every=rule.outcome is Outcome.APPROVE)
        if isinstance(verdict, Unclear):
            if rule.outcome is Outcome.APPROVE:
                return None  # an approve rule applies only to input it can judge
            unclear.append(verdict.reason)
            parts.append(f"{_said(condition)} ({verdict.reason}: treated as matching)")
            continue
        if not verdict:
            return None
        held.append((len(parts), condition, actual))
        parts.append("")  # said once the whole rule holds: most rules that get this far fail on a later condition
    for at, condition, actual in held:
        parts[at] = _held(condition, actual)
    detail = f"rule {rule.name!r} ({rule.outcome}): {'; '.join(parts) or 'applies to every request'}"
    return Match(detail, trusted=trusted, unclear=tuple(unclear))


def _said(condition: Condition) -> str:
    return f"{condition.path} {condition.op} {show(condition.value)}"


def _held(condition: Condition, actual: Any) -> str:
    """The detail of a value condition that holds for ``actual``."""
    if actual is _MISSING:
        was = " (missing)"
    elif condition.op is Op.EQ and not isinstance(actual, list | tuple):
        was = ""  # it equals the value shown
    else:
        was = f" (was {show(actual)})"
    return f"{_said(condition)}{was}"


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


def lookup_request_key(request: Any, condition: Condition) -> str | int | None:
    """The key a lookup condition looks up in ``request``; None when the request has no usable key there."""
    return lookup_key(_Paths(request).resolve(condition.key or condition.path))


def _trusted(
    condition: Condition, paths: _Paths, actual: Any, ask: Ask | None
) -> tuple[bool | Unclear | _Failed | None, str]:
    """A lookup condition's verdict (None: it does not hold) and what it says, with both values and the source."""
    name = condition.lookup
    assert name is not None
    key_path = condition.key or condition.path
    if condition.op is Op.EXISTS:
        said = f"{key_path} {'listed' if condition.value else 'not listed'} in lookup {name}"
    else:
        said = f"{condition.path} {condition.op} {name}.{condition.column}"
    raw = paths.resolve(key_path)
    if isinstance(raw, Unclear):
        return _Failed(raw.reason), said
    if raw is _MISSING:
        return _Failed(f"{key_path} is missing, so lookup {name} has no key"), said
    key = lookup_key(raw)
    if key is None:
        return _Failed(f"{key_path} is {describe(raw)}, not a key (a string or a whole number)"), said
    if ask is None:
        return _Failed(f"no trusted data source is available to lookup {name}"), said
    answer = ask(name, key)
    if answer.error is not None:
        return _Failed(f"{answer.source} failed: {answer.error}"), said
    shown_key = f"{key_path} = {show(key)}"
    if condition.op is Op.EXISTS:
        listed = answer.row is not None
        if listed is not condition.value:
            return None, said
        verb = "is listed" if listed else "is not listed"
        return True, f"{shown_key} {verb} in {answer.source}"
    if answer.row is None:
        if condition.required:
            return _Failed(f"{shown_key} is not in {answer.source}"), said
        return None, said
    column = condition.column
    assert column is not None
    if column not in answer.row:
        return _Failed(f"{answer.source} has no column {show(column)} (it has {', '.join(answer.row)})"), said
    trusted = answer.row[column]
    wanted = "a number" if condition.op in NUMBER_OPS else "a single value"
    if (
        trusted is None
        or isinstance(trusted, Mapping | list | tuple)
        or (wanted == "a number" and not is_number(trusted))
    ):
        return _Failed(f"{answer.source} has {describe(trusted)} in {column} for {shown_key}, not {wanted}"), said
    verdict = _compare(condition, actual, trusted, f"{name}.{column}")
    if verdict is False:
        return None, said
    said = f"{said} (was {show(actual)} against {show(trusted)} from {answer.source}, {shown_key})"
    return verdict, said


def resolve(request: Any, path: str) -> Any:
    """The value at ``path`` in a request (a ``PolicyInput`` or a recorded ``ApprovalRequest``): None when it is
    missing, ``Unclear`` when it is there only under another spelling."""
    value = _Paths(request).resolve(path)
    return None if value is _MISSING else value


class _Paths:
    """Resolves condition paths in one request; each object's folded keys are computed once per request."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self._folded: dict[int, dict[str, list[str]]] = {}

    def resolve(self, path: str) -> Any:
        """The value at ``path``, ``_MISSING``, or ``Unclear`` when the path is there only in another shape."""
        head, _, rest = path.partition(".")
        if head != "payload":
            value = getattr(self.request, head)
            return _MISSING if value is None else value
        node: Any = self.request.payload
        walked = "payload"
        for key in rest.split(".") if rest else ():
            if node is None:
                return _MISSING  # a null on the way: there is nothing below it
            if not isinstance(node, Mapping):
                return Unclear(f"{walked} is {describe(node)}, not an object")
            variants = [k for k in self._by_fold(node).get(fold_key(key), ()) if k != key]
            if variants:
                if key in node:
                    why = f"{walked} has both {show(key)} and {show(variants[0])}"
                else:
                    why = f"{walked}.{key} is missing but {walked} has {show(variants[0])}"
                return Unclear(f"{why}, which differ only in case, spaces or Unicode form")
            if key not in node:
                return _MISSING
            node = node[key]
            walked = f"{walked}.{key}"
        return node

    def _by_fold(self, node: Mapping[str, Any]) -> dict[str, list[str]]:
        found = self._folded.get(id(node))
        if found is None:
            found = {}
            for key in node:
                found.setdefault(fold_key(key), []).append(key)
            self._folded[id(node)] = found
        return found


def _judge(condition: Condition, actual: Any, every: bool = False) -> bool | Unclear:
    """A value condition's verdict. On an array (other than ``flags``), ``every``: it must hold for every element
    (an approve rule); else for any element (a review or reject rule). Null and an empty array are unclear."""
    op, expected, path = condition.op, condition.value, condition.path
    if isinstance(actual, Unclear):
        return actual
    if op is Op.EXISTS:
        return (actual is not _MISSING) is expected
    if actual is _MISSING:
        return False
    if op in NUMBER_OPS:
        if not is_number(actual):
            return Unclear(f"{path} is {describe(actual)}, not a number")
        if op is Op.GT:
            return bool(actual > expected)
        if op is Op.GTE:
            return bool(actual >= expected)
        if op is Op.LT:
            return bool(actual < expected)
        return bool(actual <= expected)
    fold = path == "action"  # action names compare ignoring case, as action globs do
    if path == "flags":  # the agent's flags: eq/in/regex hold if any flag does, ne if no flag equals
        verdicts = [_item(op, condition, flag, "a flag", fold) for flag in actual]
        if op is Op.NE:  # verdicts are those of eq
            if True in verdicts:
                return False
            return next((v for v in verdicts if isinstance(v, Unclear)), True)
        return _any(verdicts)
    if actual is None or (isinstance(actual, list | tuple) and not actual):
        return Unclear(f"{path} is {describe(actual)}, not a value to compare")
    if isinstance(actual, list | tuple):  # each element is judged; how they combine depends on the rule's outcome
        verdicts = [_single(op, condition, item, f"an element of {path}", fold) for item in actual]
        return _every(verdicts) if every else _any(verdicts)
    return _single(op, condition, actual, path, fold)


def _single(op: Op, condition: Condition, item: Any, where: str, fold: bool) -> bool | Unclear:
    """eq/ne/in/regex on one value; null is unclear (it is no value the config can write)."""
    if item is None:
        return Unclear(f"{where} is null, not a value to compare")
    verdict = _item(Op.EQ if op is Op.NE else op, condition, item, where, fold)
    return not verdict if op is Op.NE and isinstance(verdict, bool) else verdict


def _any(verdicts: list[bool | Unclear]) -> bool | Unclear:
    """True if any verdict is; else the first unclear one; else False (a review or reject rule, failing closed)."""
    if True in verdicts:
        return True
    return next((v for v in verdicts if isinstance(v, Unclear)), False)


def _every(verdicts: list[bool | Unclear]) -> bool | Unclear:
    """True if every verdict is; else False if any is; else the first unclear one (an approve rule)."""
    if False in verdicts:
        return False
    return next((v for v in verdicts if isinstance(v, Unclear)), True)


def _compare(condition: Condition, actual: Any, other: Any, other_name: str | None = None) -> bool | Unclear:
    """``path op field``: two values of one request (or a value and a looked-up one, named ``other_name``). Either
    missing, or not a single value of the same kind, is unclear: a contradiction check that cannot see both sides
    fails closed."""
    other_name = other_name or condition.field
    sides = ((condition.path, actual), (other_name, other))
    for where, value in sides:
        if isinstance(value, Unclear):
            return value
        if value is _MISSING or value is None:
            return Unclear(f"{where} is missing, so the two cannot be compared")
        if isinstance(value, Mapping | list | tuple):
            return Unclear(f"{where} is {describe(value)}, not a single value")
    op = condition.op
    if op in NUMBER_OPS:
        for where, value in sides:
            if not is_number(value):
                return Unclear(f"{where} is {describe(value)}, not a number")
        if op is Op.GT:
            return bool(actual > other)
        if op is Op.GTE:
            return bool(actual >= other)
        if op is Op.LT:
            return bool(actual < other)
        return bool(actual <= other)
    if _family(actual) != _family(other):
        return Unclear(f"{condition.path} is {describe(actual)} but {other_name} is {describe(other)}")
    return _equal(actual, other, fold=False) is (op is Op.EQ)


def _item(op: Op, condition: Condition, item: Any, where: str, fold: bool) -> bool | Unclear:
    """eq/ne/in (as equality with any option) or regex, on one value."""
    if isinstance(item, Mapping | list | tuple):
        return Unclear(f"{where} is {describe(item)}, not a single value")
    if item is None:
        return False  # null is a value that equals nothing the config can write
    if op is Op.REGEX:
        if not isinstance(item, str):
            return Unclear(f"{where} is {describe(item)}, not a string")
        assert condition.pattern is not None
        return condition.pattern.search(item) is not None
    options = condition.value if op is Op.IN else (condition.value,)
    if _family(item) not in {_family(option) for option in options}:
        wanted = " or ".join(sorted({_family(option) for option in options}))
        return Unclear(f"{where} is {describe(item)}, not a {wanted}")
    return any(_equal(item, option, fold) for option in options)


def _family(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if is_number(value) else "string"


def _equal(actual: Any, expected: Any, fold: bool) -> bool:
    """Equality within one family (booleans are not numbers: ``true`` never equals ``1``)."""
    if isinstance(actual, str) and isinstance(expected, str):
        return fold_action(actual) == fold_action(expected) if fold else actual == expected
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return is_number(actual) and is_number(expected) and bool(actual == expected)


def describe(value: Any) -> str:
    """A payload value as a reviewer would name it: ``the string "20000"``, ``an object {"value":20000}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {show(value)}"
    if is_number(value):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, Mapping):
        return f"an object {show(value)}"
    return f"an array {show(value)}"


def show(value: Any, limit: int = 60) -> str:
    """A value as compact JSON, cut to ``limit`` characters so a detail stays readable."""
    try:
        text = canonical_json(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
