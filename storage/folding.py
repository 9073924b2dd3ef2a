"""How payload keys compare where case and spelling must not matter (``Amount`` is ``amount``).

Pure: no I/O. The one definition of the fold: policy rules (``tools/approvals/conditions.py``) judge a payload key
under it, and ``[redact]`` (``storage/redaction.py``) masks under it, so a key a rule reads as ``ssn`` is always a
key ``[redact]`` masks as ``ssn``."""

from __future__ import annotations

import unicodedata

__all__ = ["fold_key"]


def fold_key(key: str) -> str:
    """A payload key as a person reads it: Unicode NFKC, case-folded, invisible format characters (zero-width
    spaces, bidi marks) dropped, surrounding whitespace stripped. ``"Amount "`` and ``"amount"`` fold alike."""
    if key.isascii():
        return key.strip().lower()
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip()
