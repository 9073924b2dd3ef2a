"""Text that someone else wrote, made inert for a terminal or a log line.

Agents are not trusted (DESIGN.md, Trust): a summary holding ``ESC [1A ESC [2K status approved`` must not move a
reviewer's cursor, a newline must not forge a log line, and a right-to-left override must not reverse what a
reviewer reads. ``visible`` shows every such character as an escape a person can read (``\\x1b``, ``\\n``,
``\\u202e``), so the text stays faithful and does nothing. Pure functions and a formatter; no I/O.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping

#: Unicode categories that do something instead of showing something: controls (C0, DEL, C1), format characters
#: (bidi overrides and isolates, zero-width space and joiners, soft hyphen, byte-order mark), lone surrogates,
#: and the line and paragraph separators.
INERT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(char: str) -> str:
    """One character as Python writes it in a string literal: ``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0001``."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def is_active(char: str) -> bool:
    """True for a character a terminal, a log reader or a text renderer acts on rather than shows."""
    return unicodedata.category(char) in INERT_CATEGORIES


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, format and separator character replaced by its escape; everything else as is.

    With ``keep_newlines`` a ``\\n`` stays a line break (for multi-line views whose lines are all marked as the
    writer's); ``\\r`` is always escaped, since it moves the cursor back over what was already printed.
    """
    if text.isprintable():  # the common case (no control, format or separator character but the space): as it is
        return text
    return "".join(
        char if (keep_newlines and char == "\n") or not is_active(char) else escape_char(char) for char in text
    )


class InertFormatter(logging.Formatter):
    """A log formatter that keeps one record on one line: the message and its arguments show control characters
    as escapes. A traceback or stack, which spans lines by nature, has its own control characters escaped and each of
    its lines indented, so no line of it can pass for a record of its own (records start at the line's first column).
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in visible(text, keep_newlines=True).split("\n"))


def nul_at(value: object, where: str) -> str | None:
    """Where in ``value`` (a string, or JSON made of dicts, lists and scalars) a NUL character is, written as a path
    from ``where`` (``payload.items[2].name``), or None. PostgreSQL's text refuses NUL, so signoff refuses it on
    every engine, before anything is stored: the same input gets the same answer whichever database is behind."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"a key in {where}"
            if (found := nul_at(item, f"{where}.{key}")) is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := nul_at(item, f"{where}[{i}]")) is not None:
                return found
    return None
