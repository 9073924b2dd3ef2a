"""The numbers of a payload as the anomaly check reads them: which numeric fields it judges, under which history
each is judged and learnt, and what it cannot judge (beyond its caps, too deep, twins), so that it fails closed.

Pure: no I/O. The stores (``codec.approved_values``), the policy, replay's single walk (``tools/approvals/shape``)
and ``policy test`` all read payloads through this, so they can never disagree."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

JUDGED_FIELDS = 32  #: numeric fields the anomaly check judges (and the history learns) per payload, at most
NUMBER_DEPTH = 4  #: objects deep the anomaly check looks for numbers, and lists nested in one another
JUDGED_ITEMS = 100  #: numbers of one field in lists (``items[].qty``) the anomaly check judges, at most
LEARNT_ITEMS = 8  #: numbers of one field in lists an approved request adds to the history, at most


class NumericField(NamedTuple):
    """One numeric field of a payload, as the anomaly check judges it and the history learns it."""

    path: str  #: ``refund.amount``; a number in a list is named with ``[]`` for the list: ``items[].qty``, ``m[][]``
    history: str  #: the history it is judged against and joins: the path without its lists (``items.qty``)
    values: tuple[float, ...]  #: its number, or in lists every number of the field in payload order (one or more)


#: A number's place in a payload as a walk finds it: its keys, with None for each list it is in
Structure = tuple[str | None, ...]
#: A container a walk leaves, as too deep: where it is (keys, and indexes in lists) and what it holds
Skipped = tuple[tuple[str | int, ...], Any]


def numeric_leaves(
    payload: Mapping[str, Any], *, max_depth: int = NUMBER_DEPTH, limit: int = JUDGED_FIELDS
) -> tuple[NumericField, ...]:
    """The numeric fields of a payload by dotted path (``{"a": {"b": 2}}`` -> ``a.b``; ``{"items": [{"qty": 2}]}``
    -> ``items[].qty``), each with its numbers: the ``leaves`` of ``numeric_fields``.

    Booleans are not numbers. At most ``limit`` fields are returned, in sorted order, so a huge payload cannot
    flood the history table. What the caps leave out, and the numbers the walk does not reach, ``numeric_fields``
    tells: the anomaly check sends such a payload to a person.
    """
    return numeric_fields(payload, max_depth=max_depth, limit=limit).leaves


class NumericFields(NamedTuple):
    """What the numeric anomaly check reads of one payload (``numeric_fields``): the fields it judges, and
    what it cannot judge, so that it fails closed rather than judging part of the payload as if it were all."""

    leaves: tuple[NumericField, ...]  #: the first ``limit`` fields in sorted order, judged and learnt
    total: int  #: numeric fields found in objects and lists up to ``max_depth`` deep, judged or not (twins too)
    crowded: tuple[str, int] | None  #: the first field with more than ``items`` numbers in lists, and how many
    too_deep: str | None  #: the path of the first number nested deeper than ``max_depth`` objects or lists
    twice: str | None  #: a path two fields share (a dotted key ``"a.b"`` beside ``{"a": {"b": ...}}``)


def numeric_fields(
    payload: Mapping[str, Any], *, max_depth: int = NUMBER_DEPTH, limit: int = JUDGED_FIELDS
) -> NumericFields:
    """``numeric_leaves`` of ``payload`` and what they leave unjudged, from one walk (plus a search of the
    too-deep objects and lists the walk passes by, which stops at their first number)."""
    found: list[tuple[Structure, float]] = []
    skipped: list[Skipped] = []
    collect(payload, (), (), max_depth, max_depth, found, skipped)
    return fields_of(found, skipped, limit)


def fields_of(
    found: list[tuple[Structure, float]], skipped: list[Skipped], limit: int, items: int = JUDGED_ITEMS
) -> NumericFields:
    """``NumericFields`` from a walk's (``collect``) ``found`` (structure, number) pairs and the containers it
    ``skipped`` as too deep. ``shape.walk`` builds both in its own walk."""
    numbers: dict[Structure, list[float]] = {}
    for structure, number in found:
        numbers.setdefault(structure, []).append(number)
    named = sorted(((_path(structure), structure) for structure in numbers), key=_named_order)
    leaves = tuple(
        NumericField(path, _history(structure), tuple(numbers[structure])) for path, structure in named[:limit]
    )
    twice = next((a for (a, _), (b, _) in itertools.pairwise(named) if a == b), None)
    crowded = next(((path, len(numbers[s])) for path, s in named if len(numbers[s]) > items), None)
    too_deep = None
    for position, value in sorted(skipped, key=_position_of):
        if (where := _first_number(position, value)) is not None:
            too_deep = where
            break
    return NumericFields(leaves, len(named), crowded, too_deep, twice)


def history_names(fields: Iterable[NumericField]) -> list[str]:
    """The histories ``fields`` are judged against, each once, in order: what a store's ``action_history`` reads."""
    return list(dict.fromkeys(field.history for field in fields))


def learnt(fields: Iterable[NumericField], items: int = LEARNT_ITEMS) -> list[tuple[str, float]]:
    """What an approved payload's ``fields`` add to the history, (history, number) in order: a field's number, or
    of a field in lists at most ``items`` of its numbers, evenly spread from the smallest to the largest (all of
    them when there are no more). Whatever a list holds, one request adds a few numbers to a field's history, not a
    window of them; the same ones whatever the order of the items."""
    rows = []
    for field in fields:
        values = field.values
        if len(values) == 1:
            rows.append((field.history, values[0]))
            continue
        ordered = sorted(values)
        if len(ordered) > items:
            last = len(ordered) - 1
            ordered = [ordered[(i * last + (items - 1) // 2) // (items - 1)] for i in range(items)]
        rows.extend((field.history, value) for value in ordered)
    return rows


def collect(
    node: Mapping[str, Any],
    structure: Structure,
    position: tuple[str | int, ...],
    depth: int,
    lists: int,
    found: list[tuple[Structure, float]],
    skipped: list[Skipped],
) -> None:
    """Find the numbers of ``node`` (an object ``depth`` objects from the deepest the check reads, inside ``lists``
    fewer lists than the most it reads), each with its ``structure``, into ``found``; a container beyond either
    limit goes to ``skipped`` instead, with its ``position``."""
    for key, value in node.items():
        collect_value(value, (*structure, key), (*position, key), depth, lists, found, skipped)


def collect_value(
    value: Any,
    structure: Structure,
    position: tuple[str | int, ...],
    depth: int,
    lists: int,
    found: list[tuple[Structure, float]],
    skipped: list[Skipped],
) -> None:
    """``collect`` for one value of an object (or item of a list) at ``structure``."""
    if isinstance(value, Mapping):
        if depth > 1:
            collect(value, structure, position, depth - 1, lists, found, skipped)
        else:
            skipped.append((position, value))
    elif isinstance(value, list | tuple):
        if lists > 0:
            inner = (*structure, None)
            for index, item in enumerate(value):
                collect_value(item, inner, (*position, index), depth, lists - 1, found, skipped)
        else:
            skipped.append((position, value))
    elif (number := json_number(value)) is not None:
        found.append((structure, number))


def _path(structure: Structure) -> str:
    """``("items", None, "qty")`` -> ``items[].qty``."""
    text = ""
    for index, key in enumerate(structure):
        if key is None:
            text += "[]"
        else:
            text += f".{key}" if index else f"{key}"
    return text


def _history(structure: Structure) -> str:
    """``("items", None, "qty")`` -> ``items.qty``."""
    return ".".join(f"{key}" for key in structure if key is not None)


def _named_order(entry: tuple[str, Structure]) -> tuple[str, str]:
    """Fields by path; twins (one path) by their keys, as text: a payload's keys need not all be strings."""
    return entry[0], repr(entry[1])


def _position_of(entry: Skipped) -> tuple[tuple[bool, str | int], ...]:
    """Where a skipped container is, in order: keys in sorted order, items in order."""
    return tuple((True, key) if isinstance(key, int) else (False, f"{key}") for key in entry[0])


def _shown(position: tuple[str | int, ...]) -> str:
    """``("items", 0, "qty")`` -> ``items[0].qty``."""
    text = ""
    for index, key in enumerate(position):
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            text += f".{key}" if index else f"{key}"
    return text


def _first_number(position: tuple[str | int, ...], node: Any) -> str | None:
    stack: list[tuple[tuple[str | int, ...], Any]] = [(position, node)]  # not recursion: a payload may nest deep
    while stack:
        position, node = stack.pop()
        if json_number(node) is not None:
            return _shown(position)
        if isinstance(node, Mapping):
            keys = sorted(node, key=str, reverse=True)
            stack.extend(((*position, key), node[key]) for key in keys)
        elif isinstance(node, list | tuple):
            stack.extend(((*position, index), node[index]) for index in range(len(node) - 1, -1, -1))
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
