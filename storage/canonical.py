"""Canonical JSON: one byte string per value, so hashes bind approvals and chain events."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

JUDGED_FIELDS = 32  #: numeric fields the anomaly check judges (and the history learns) per payload, at most
NUMBER_DEPTH = 4  #: objects deep the anomaly check looks for numbers


def is_number(value: Any) -> bool:
    """A JSON number: an int or a float, but not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, NaN and infinity refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def payload_sha256(action: str, payload: Mapping[str, Any]) -> str:
    """The digest an approval is bound to: changed arguments need a new request."""
    document = canonical_json({"action": action, "payload": payload})
    return hashlib.sha256(document.encode()).hexdigest()


def numeric_leaves(
    payload: Mapping[str, Any], *, max_depth: int = NUMBER_DEPTH, limit: int = JUDGED_FIELDS
) -> dict[str, float]:
    """The numeric fields of a payload by dotted path (``{"a": {"b": 2}}`` -> ``{"a.b": 2.0}``).

    Lists are not entered and booleans are not numbers. At most ``limit`` fields are returned,
    in sorted order, so a huge payload cannot flood the history table. What the cap leaves out, and the numbers
    the walk does not reach, ``numeric_fields`` tells: the anomaly check sends such a payload to a person.
    """
    return first_numbers(_walk(payload, "", max_depth), limit)


class NumericFields(NamedTuple):
    """What the numeric anomaly check reads of one payload (``numeric_fields``): the fields it judges, and
    what it cannot judge, so that it fails closed rather than judging part of the payload as if it were all."""

    leaves: dict[str, float]  #: ``numeric_leaves``: the first ``limit`` fields in sorted order, judged and learnt
    total: int  #: numbers found in objects up to ``max_depth`` deep outside lists, judged or not (duplicates too)
    in_list: str | None  #: the path of the first number inside a list (``items[0].qty``): never judged
    too_deep: str | None  #: the path of the first number nested deeper than ``max_depth`` objects: never judged
    twice: str | None  #: a path two numbers share (a dotted key ``"a.b"`` beside ``{"a": {"b": ...}}``)


def numeric_fields(
    payload: Mapping[str, Any], *, max_depth: int = NUMBER_DEPTH, limit: int = JUDGED_FIELDS
) -> NumericFields:
    """``numeric_leaves`` of ``payload`` and what they leave unjudged, from one walk (plus a search of the lists
    and too-deep objects the walk passes by, which stops at their first number)."""
    found: list[tuple[str, float]] = []
    skipped: list[tuple[str, Any, bool]] = []
    _collect(payload, "", max_depth, found, skipped)
    return fields_of(found, skipped, limit)


def fields_of(found: list[tuple[str, float]], skipped: list[tuple[str, Any, bool]], limit: int) -> NumericFields:
    """``NumericFields`` from a walk's ``found`` (path, number) pairs and the containers it ``skipped``: (path,
    value, True for a list or False for an object too deep). ``shape.walk`` builds both in its own walk."""
    leaves = first_numbers(found, limit)
    twice = None
    if len(leaves) < min(len(found), limit):  # two numbers share a path (beyond the cap, that trigger says enough)
        shared = Counter(path for path, _ in found)
        twice = min(path for path, n in shared.items() if n > 1)
    in_list = _first_hidden(skipped, True)
    too_deep = _first_hidden(skipped, False)
    return NumericFields(leaves, len(found), in_list, too_deep, twice)


def first_numbers(found: Iterable[tuple[str, float]], limit: int = JUDGED_FIELDS) -> dict[str, float]:
    """``numeric_leaves`` of the (path, number) pairs a walk ``found``, in any order: the first ``limit`` paths in
    sorted order."""
    leaves: dict[str, float] = {}
    for path, value in sorted(found):
        if len(leaves) >= limit:
            break
        leaves[path] = value
    return leaves


def _collect(
    node: Mapping[str, Any],
    prefix: str,
    depth: int,
    found: list[tuple[str, float]],
    skipped: list[tuple[str, Any, bool]],
) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if depth > 1:
                _collect(value, f"{path}.", depth - 1, found, skipped)
            else:
                skipped.append((path, value, False))
        elif isinstance(value, list | tuple):
            skipped.append((path, value, True))
        elif (number := json_number(value)) is not None:
            found.append((path, number))


def _first_hidden(skipped: list[tuple[str, Any, bool]], in_list: bool) -> str | None:
    """The path of the first number (keys in sorted order, items in order) in the ``skipped`` lists (``in_list``)
    or too-deep objects: the same path whatever order the payload's keys came in."""
    for path, value, kind in sorted(skipped, key=_path_of):
        if kind is in_list and (found := _first_number(path, value)) is not None:
            return found
    return None


def _path_of(entry: tuple[str, Any, bool]) -> str:
    return entry[0]


def _first_number(path: str, node: Any) -> str | None:
    stack: list[tuple[str, Any]] = [(path, node)]  # a stack, not recursion: a payload may nest a thousand deep
    while stack:
        path, node = stack.pop()
        if json_number(node) is not None:
            return path
        if isinstance(node, Mapping):
            keys = sorted(node, key=str, reverse=True)
            stack.extend((f"{path}.{key}", node[key]) for key in keys)
        elif isinstance(node, list | tuple):
            stack.extend((f"{path}[{index}]", node[index]) for index in range(len(node) - 1, -1, -1))
    return None


def json_number(value: Any) -> float | None:
    """``value`` as a float if ``numeric_leaves`` counts it as a number (not a bool, finite), else None. An integer
    beyond a float's range counts as the largest float of its sign: dropping it would let a number too large to
    judge pass the anomaly check unjudged."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _as_float(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(value)
    return None


def _as_float(value: int) -> float:
    if abs(value) <= 2**1023:
        return float(value)
    return sys.float_info.max if value > 0 else -sys.float_info.max


def _walk(node: Mapping[str, Any], prefix: str, depth: int) -> Iterator[tuple[str, float]]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            yield path, _as_float(value)  # beyond a float's range: the largest float, so it is judged, not dropped
        elif isinstance(value, float) and math.isfinite(value):
            yield path, float(value)
        elif isinstance(value, Mapping) and depth > 1:
            yield from _walk(value, f"{path}.", depth - 1)
