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


#: Default-ignorable characters (Unicode's DerivedCoreProperties) that are not format characters (category Cf): a
#: combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian and other variation selectors. They
#: show as nothing, like the format characters, so a name holding one must read as the name without it.
_INVISIBLE = frozenset(
    (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10))
) | frozenset(range(0xE0100, 0xE01F0))


def _shown(c: str) -> bool:
    return unicodedata.category(c) != "Cf" and ord(c) not in _INVISIBLE


def fold_key(key: str) -> str:
    """A payload key as a person reads it: Unicode NFKC, case-folded, invisible characters (format characters such
    as zero-width spaces and bidi marks, and the other default-ignorable ones: variation selectors, fillers)
    dropped, surrounding whitespace stripped. ``"Amount "`` and ``"amount"`` fold alike."""
    if key.isascii():
        return key.strip().lower()
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return "".join(filter(_shown, text)).strip()


@functools.lru_cache(maxsize=4096)
def fold_path(path: str) -> str:
    """A dotted payload path (``refund.Amount``, as ``payload_numbers.numeric_leaves`` names a field) folded one key
    at a time, as rules walk it (``refund.amount``); kept for the last 4,096 paths: a history names the same few."""
    return ".".join(fold_key(key) for key in path.split("."))


def history_folds(actions: Iterable[str], fields: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(kind, name, folded)`` for each action (kind ``action``) and field path (kind ``field``) whose fold differs
    from it: what migration 0018 renames in the anomaly history recorded before it was kept folded."""
    found = [("action", name, fold_action(name)) for name in sorted(set(actions))]
    found += [("field", name, fold_path(name)) for name in sorted(set(fields))]
    return [row for row in found if row[1] != row[2]]
