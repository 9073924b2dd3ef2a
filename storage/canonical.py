"""Canonical JSON: one byte string per value, so hashes bind approvals and chain events."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


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


def numeric_leaves(payload: Mapping[str, Any], *, max_depth: int = 4, limit: int = 32) -> dict[str, float]:
    """The numeric fields of a payload by dotted path (``{"a": {"b": 2}}`` -> ``{"a.b": 2.0}``).

    Lists are not entered and booleans are not numbers. At most ``limit`` fields are returned,
    in sorted order, so a huge payload cannot flood the history table.
    """
    return first_numbers(_walk(payload, "", max_depth), limit)


def first_numbers(found: Iterable[tuple[str, float]], limit: int = 32) -> dict[str, float]:
    """``numeric_leaves`` of the (path, number) pairs a walk ``found``, in any order: the first ``limit`` paths in
    sorted order."""
    leaves: dict[str, float] = {}
    for path, value in sorted(found):
        if len(leaves) >= limit:
            break
        leaves[path] = value
    return leaves


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
