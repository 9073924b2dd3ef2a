"""Checks on what callers give the model registry: names, endpoints, JSON documents, reasons."""

from __future__ import annotations

import re
from typing import Any

from signoff.storage import InvalidInput
from signoff.storage.canonical import canonical_json

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}")
MAX_ENDPOINT_CHARS = 2000
MAX_JSON_BYTES = 16_384
MAX_REASON_CHARS = 1000


def check_name(value: str, what: str) -> None:
    if not NAME.fullmatch(value):
        raise InvalidInput(
            f"{what} {value[:80]!r} is not allowed: use 1 to 128 letters, digits and _ . : / @ + -,"
            " starting with a letter or digit (e.g. 'fraud-scorer', 'v2', '2026-05-01')"
        )


def check_json(document: dict[str, Any], what: str) -> None:
    try:
        size = len(canonical_json(document).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{what} is not plain JSON ({exc}); use strings, numbers, booleans, lists and objects"
        ) from None
    if size > MAX_JSON_BYTES:
        raise InvalidInput(f"{what} is {size:,} bytes as JSON; the limit is {MAX_JSON_BYTES:,}")


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidInput("reason is empty: say why, for reviewers and the model's history")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")
    return reason


def check_endpoint(endpoint: str) -> None:
    if not endpoint.strip() or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise InvalidInput(f"endpoint must be 1 to {MAX_ENDPOINT_CHARS} characters: the URL or id to call")
