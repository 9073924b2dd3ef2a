"""Canonical JSON: one byte string per value, so hashes bind approvals and chain events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
