"""Canonical JSON: one byte string per value, so hashes bind approvals and chain events."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any


def is_number(value: Any) -> bool:
    """A JSON number: an int or a float, but not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A JSON number that is finite: any int (JSON integers have no range, and ``math.isfinite`` raises
    OverflowError for one beyond a float's), or a finite float."""
    return is_number(value) and (isinstance(value, int) or math.isfinite(value))


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, NaN and infinity refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def payload_sha256(action: str, payload: Mapping[str, Any]) -> str:
    """The digest an approval is bound to: changed arguments need a new request."""
    document = canonical_json({"action": action, "payload": payload})
    return hashlib.sha256(document.encode()).hexdigest()
