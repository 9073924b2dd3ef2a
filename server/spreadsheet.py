"""CSV that spreadsheets open as text, never as a formula (CSV injection).

Two things make a cell of an export run in a spreadsheet: text that starts like a formula (``=``, ``+``, ``-``,
``@``, a tab or a carriage return), and a separator the spreadsheet splits on inside a cell: a spreadsheet whose list
separator is ``;`` (Excel in many locales) reads a comma-separated file as one field a line, quotes and all, and
splits ``Refund;=cmd|' /C calc'!A0`` into two cells, the second a formula. So a text cell that starts like a formula
gets a leading apostrophe (shown as text), and so does every part of it after a separator (``,``, ``;``, a tab,
``|``, a line break) and any spaces; and every text cell is quoted, for readers that split on commas. JSON cells
(lists, objects) are text cells too: an agent wrote their strings. Numbers stay numbers. The
JSON exports carry the exact values.
"""

from __future__ import annotations

import csv
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


def csv_writer(out: TextIO, *, lineterminator: str = "\r\n") -> Any:
    """A ``csv.writer`` on ``out`` that quotes every cell but numbers (give it text through ``text_cell``)."""
    return csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator=lineterminator)
