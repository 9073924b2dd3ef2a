"""How names compare where case must not matter: actions (``PAYMENTS.Transfer`` is ``payments.transfer``) and payload
keys (``Amount`` is ``amount``). Policy rules match with these, and the anomaly history (novelty, the numbers per
action and field) is kept and read under them, so a change of case can never escape a check the rules would apply.

Pure: no I/O. The one definition of each fold: the rules (``tools/approvals/conditions.py``), ``[redact]``
(``storage/redaction.py``: a key a rule reads as ``ssn`` is a key it masks as ``ssn``), the stores, the replayed
history and migration 0018 all call these, so they can never disagree."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

__all__ = ["fold_action", "fold_key", "fold_path", "history_folds"]


def fold_action(action: str) -> str:
    """An action name as rules compare it: case-folded (``Refunds.Issue`` -> ``refunds.issue``)."""
    return action.casefold()


def fold_key(key: str) -> str:
    """A payload key as a person reads it: Unicode NFKC, case-folded, invisible format characters (zero-width
    spaces, bidi marks) dropped, surrounding whitespace stripped. ``"Amount "`` and ``"amount"`` fold alike."""
    if key.isascii():
        return key.strip().lower()
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip()


@functools.lru_cache(maxsize=4096)
def fold_path(path: str) -> str:
    """A dotted payload path (``refund.Amount``, as ``canonical.numeric_leaves`` names a field) folded one key at a
    time, as rules walk it (``refund.amount``); kept for the last 4,096 paths: a history names the same few."""
    return ".".join(fold_key(key) for key in path.split("."))


def history_folds(actions: Iterable[str], fields: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(kind, name, folded)`` for each action (kind ``action``) and field path (kind ``field``) whose fold differs
    from it: what migration 0018 renames in the anomaly history recorded before it was kept folded."""
    found = [("action", name, fold_action(name)) for name in sorted(set(actions))]
    found += [("field", name, fold_path(name)) for name in sorted(set(fields))]
    return [row for row in found if row[1] != row[2]]
