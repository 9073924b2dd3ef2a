"""Out-of-distribution checks on a payload's shape: categorical values never seen, keys that differ from what the
action usually sends, and text far longer than usual. Learnt from recent approved payloads of the same action.

Pure: the service fetches the payloads; ``profile`` summarises them and ``unusual`` judges a new payload.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from signoff.storage.payload_numbers import (
    JUDGED_FIELDS,
    NUMBER_DEPTH,
    NumericField,
    NumericFields,
    Skipped,
    Structure,
    collect_value,
    fields_of,
)
from signoff.tools.approvals.conditions import show
from signoff.tools.approvals.policy_config import Anomaly

__all__ = ["PayloadProfile", "Walk", "leaves", "profile", "unusual", "walk"]

_MAX_DEPTH = NUMBER_DEPTH
_MAX_FIELDS = 64  #: leaves read per payload, so a huge payload cannot make the check slow


@dataclass(frozen=True, kw_only=True, slots=True)
class PayloadProfile:
    """What recent approved payloads of one action looked like."""

    count: int  #: payloads summarised
    keys: Counter[str] = field(default_factory=Counter)  #: dotted key path -> payloads that had it
    values: dict[str, Counter[str]] = field(default_factory=dict)  #: string field -> value -> how often (capped)
    longest: dict[str, int] = field(default_factory=dict)  #: string field -> the longest value's length
    strings: Counter[str] = field(default_factory=Counter)  #: string field -> payloads where it was a string


def _leaves(node: Mapping[str, Any], prefix: str = "", depth: int = _MAX_DEPTH) -> Iterator[tuple[str, Any]]:
    for key, value in sorted(node.items(), key=_key_text):
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, Mapping) and depth > 1:
            yield from _leaves(value, f"{path}.", depth - 1)
        elif isinstance(value, list | tuple):
            yield from ((inner, None) for inner in item_keys(value, path, depth))


def item_keys(items: list[Any] | tuple[Any, ...], path: str, depth: int = _MAX_DEPTH) -> list[str]:
    """The key paths of the objects in the list ``items`` at ``path`` (``items[].sku``, ``items[].tax.rate``;
    in a list of lists, ``m[][].k``), each once however many items have it, sorted: what the key-set check learns
    and judges of a list. ``depth``: as in ``_leaves`` for the list's key (an object in a list is an object deeper,
    as the numeric check counts it); lists nested in one another are entered up to ``NUMBER_DEPTH`` deep."""
    found: set[str] = set()
    _item_keys(items, f"{path}[]", depth - 1, NUMBER_DEPTH, found)
    return sorted(found)


def _item_keys(items: Iterable[Any], prefix: str, depth: int, lists: int, found: set[str]) -> None:
    for item in items:
        if isinstance(item, Mapping):
            if depth > 0:
                _object_keys(item, prefix, depth, lists, found)
        elif isinstance(item, list | tuple) and lists > 1:
            _item_keys(item, f"{prefix}[]", depth, lists - 1, found)


def _object_keys(node: Mapping[Any, Any], prefix: str, depth: int, lists: int, found: set[str]) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}"
        found.add(path)
        if isinstance(value, Mapping) and depth > 1:
            _object_keys(value, path, depth - 1, lists, found)
        elif isinstance(value, list | tuple) and lists > 1:
            _item_keys(value, f"{path}[]", depth - 1, lists - 1, found)


def leaves(payload: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The key paths of ``payload`` with their values, in key order, at most 64: objects up to four deep, and the
    keys of objects in lists (``items[].sku``, with None for a value: only the key set judges them)."""
    found = []
    for index, leaf in enumerate(_leaves(payload)):
        if index >= _MAX_FIELDS:
            break
        found.append(leaf)
    return found


class Walk(NamedTuple):
    """What the checks read of one payload, from one walk of it (``walk``)."""

    leaves: list[tuple[str, Any]]  #: ``leaves(payload)``: what the out-of-distribution checks judge and learn
    numbers: tuple[NumericField, ...]  #: ``numeric_leaves(payload)``: what the anomaly check judges, history learns
    fields: NumericFields  #: ``numeric_fields(payload)``: ``numbers``, and what the anomaly check cannot judge


def walk(payload: Mapping[str, Any]) -> Walk:
    """``leaves``, ``numeric_leaves`` and ``numeric_fields`` of ``payload`` in one walk (all go 4 objects deep;
    the leaves enter no lists, the numbers do, as ``payload_numbers.collect``; the numbers are not cut at 64 leaves):
    ``policy replay`` reads each payload once for all its checks."""
    found: list[tuple[str, Any]] = []
    numbers: list[tuple[Structure, float]] = []
    skipped: list[Skipped] = []
    _walk(payload, "", (), _MAX_DEPTH, found, numbers, skipped)
    fields = fields_of(numbers, skipped, JUDGED_FIELDS)
    return Walk(found, fields.leaves, fields)


def _walk(
    node: Mapping[str, Any],
    prefix: str,
    keys: tuple[str, ...],
    depth: int,
    found: list[tuple[str, Any]],
    numbers: list[tuple[Structure, float]],
    skipped: list[Skipped],
) -> None:
    for key, value in sorted(node.items(), key=_key_text):
        path = f"{prefix}{key}"
        if len(found) < _MAX_FIELDS:
            found.append((path, value))
            if isinstance(value, list | tuple):
                found.extend((inner, None) for inner in item_keys(value, path, depth)[: _MAX_FIELDS - len(found)])
        if isinstance(value, Mapping) and depth > 1:
            _walk(value, f"{path}.", (*keys, key), depth - 1, found, numbers, skipped)
        else:  # a number, a list or an object too deep: as ``payload_numbers.collect`` reads it
            place = (*keys, key)
            collect_value(value, place, place, depth, NUMBER_DEPTH, numbers, skipped)


def _key_text(item: tuple[Any, Any]) -> str:
    return str(item[0])


def profile(payloads: Iterable[Mapping[str, Any]], max_categories: int) -> PayloadProfile:
    found = PayloadProfile(count=0)
    count = 0
    for payload in payloads:
        count += 1
        for path, value in leaves(payload):
            found.keys[path] += 1
            if isinstance(value, str):
                found.strings[path] += 1
                found.longest[path] = max(found.longest.get(path, 0), len(value))
                seen = found.values.setdefault(path, Counter())
                if len(seen) <= max_categories:  # one past the limit marks the field as free text
                    seen[value] += 1
    return PayloadProfile(
        count=count, keys=found.keys, values=found.values, longest=found.longest, strings=found.strings
    )


def unusual(
    settings: Anomaly,
    action: str,
    payload: Mapping[str, Any],
    seen: PayloadProfile,
    walked: list[tuple[str, Any]] | None = None,
) -> list[str]:
    """Why ``payload`` looks unlike the recent approved payloads of ``action`` (trigger details); empty if it does
    not, or if fewer than ``warmup`` payloads were seen. ``walked``: ``leaves(payload)``, when the caller has them."""
    if seen.count < settings.warmup:
        return []
    where = f"the last {seen.count:,} approved requests of {action}"
    found: list[str] = []
    found_leaves = leaves(payload) if walked is None else walked
    if settings.key_set:
        paths = {path for path, _ in found_leaves}
        new = sorted(p for p in paths if seen.keys[p] == 0 and ("." not in p or _parent_seen(p, seen)))
        if new:
            found.append(f"payload has keys never sent in {where}: {', '.join(show(p) for p in new[:5])}")
        always = sorted(p for p, n in seen.keys.items() if n == seen.count and p not in paths and "." not in p)
        if always:
            found.append(f"payload lacks keys every one of {where} had: {', '.join(show(p) for p in always[:5])}")
    for path, value in found_leaves:
        if not isinstance(value, str):
            continue
        values = seen.values.get(path)
        if (
            settings.new_values
            and values is not None
            and seen.strings[path] >= settings.warmup
            and len(values) <= settings.max_categories
            and 2 * len(values) <= seen.strings[path]  # values repeat (twice each on average): a category
            and value not in values
        ):
            known = ", ".join(show(v, 20) for v, _ in values.most_common(5))
            more = f" and {len(values) - 5} more" if len(values) > 5 else ""
            found.append(f"payload.{path} = {show(value, 40)} was never seen in {where} (seen: {known}{more})")
        longest = seen.longest.get(path)
        if (
            settings.text_length
            and longest
            and seen.strings[path] >= settings.warmup
            and len(value) > settings.text_factor * longest
        ):
            found.append(
                f"payload.{path} is {len(value):,} characters, more than {settings.text_factor:g} times the longest"
                f" in {where} ({longest:,})"
            )
    return found


def _parent_seen(path: str, seen: PayloadProfile) -> bool:
    """A new nested key is reported only where its parent object was seen (else the parent is the new key); a key in
    list items (``items[].discount``) where the list was (``items``)."""
    parent = path.rsplit(".", 1)[0]
    while parent.endswith("[]"):
        parent = parent[:-2]
    return seen.keys[parent] > 0
