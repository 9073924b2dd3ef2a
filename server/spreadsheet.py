"""CSV that spreadsheets open as text, never as a formula (CSV injection).

Two things make a cell of an export run in a spreadsheet: text that starts like a formula (``=``, ``+``, ``-``,
``@``, a tab or a carriage return), and a separator the spreadsheet splits on inside a cell: a spreadsheet whose list
separator is ``;`` (Excel in many locales) reads a comma-separated file as one field a line, quotes and all, and
splits ``Refund;=cmd|' /C calc'!A0`` into two cells, the second a formula. So a text cell that starts like a formula
gets a leading apostrophe (shown as text), and so does every part of it after a separator (``,``, ``;``, a tab,
``|``, a line break) and any spaces; and every text cell is quoted, for readers that split on commas. A JSON cell
(a list, an object) stays valid JSON equal to the value: ``;`` and ``|``, which JSON has only inside strings, are
written as the escapes ``\\u003b`` and ``\\u007c`` (line breaks and tabs are escaped by JSON already), so nothing in
it starts a part a spreadsheet splits off. Numbers stay numbers. The JSON exports carry the exact values.
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  #: a spreadsheet runs a cell starting so as a formula
#: a part a spreadsheet may split off (after a list separator, or a line break a reader ignoring quotes ends a row
#: at), starting like a formula
_AFTER_SEPARATOR = re.compile(r"([,;\t|\r\n] *)(?=[=+\-@\r])")


def text_cell(text: str) -> str:
    """``text`` as a cell a spreadsheet shows as text whatever it separates on: the cell, and each part after a
    separator, that starts like a formula gets a leading ``'`` (``Refund;=cmd`` -> ``Refund;'=cmd``)."""
    text = _AFTER_SEPARATOR.sub(r"\1'", text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def json_cell(value: list[Any] | dict[str, Any]) -> str:
    """``value`` as compact JSON a spreadsheet cannot split into a formula: the same JSON, with ``;`` and ``|``
    (found only inside its strings) escaped, so ``json.loads`` of the cell gives ``value`` back. It starts with
    ``[`` or ``{``, never like a formula."""
    return json.dumps(value, separators=(",", ":")).replace(";", "\\u003b").replace("|", "\\u007c")


def csv_writer(out: TextIO, *, lineterminator: str = "\r\n") -> Any:
    """A ``csv.writer`` on ``out`` that quotes every cell but numbers (give it text through ``text_cell``)."""
    return csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator=lineterminator)
