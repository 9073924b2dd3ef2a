"""Where is a key in a TOML text? tomllib reports no positions for values, so config errors find their line here."""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_STRING = (
    r'"""(?:\\.|[^\\])*?""""{0,2}'  # a closing """ may be followed by up to two quotes of content
    r"|'''.*?''''{0,2}"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'[^'\n]*'"
)
_KEY_PART = re.compile(rf"[A-Za-z0-9_-]+|{_STRING}")
_SCALAR = re.compile(rf"{_STRING}|[^,\]}}\n#]+", re.DOTALL)
_SPACES = re.compile(r"[ \t]*")
_GAPS = re.compile(r"(?:\s|#[^\n]*)*")  # whitespace, newlines and comments


class Locator:
    """The offset of every table, key and array element of a (valid) TOML document.

    tomllib reports no positions for values, so this walks the text once, tracking the same
    key paths the models use (``rules``, 1, ``when``, 0, ``op``), including ``[[rules]]`` counts.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}  # array-of-tables path -> tables seen so far
        try:
            self._document()
        except (IndexError, ValueError):
            pass  # best effort: what was found before the surprise still locates most faults

    def line(self, key: KeyPath) -> int:
        for end in range(len(key), 0, -1):
            if (offset := self.found.get(key[:end])) is not None:
                return self.text.count("\n", 0, offset) + 1
        return 1

    def _document(self) -> None:
        text, i = self.text, 0
        table: KeyPath = ()
        while (i := self._skip(i, newlines=True)) < len(text):
            start = i
            if text.startswith("[[", i):
                keys, i = self._key(i + 2)
                table, i = self._header(keys, start, array=True), text.index("]]", i) + 2
            elif text[i] == "[":
                keys, i = self._key(i + 1)
                table, i = self._header(keys, start, array=False), text.index("]", i) + 1
            else:
                i = self._pair(i, table)

    def _header(self, keys: tuple[str, ...], at: int, *, array: bool) -> KeyPath:
        path: KeyPath = ()
        for key in keys[:-1]:
            path = (*path, key)
            if path in self._arrays:
                path = (*path, self._arrays[path] - 1)
        path = (*path, keys[-1])
        self.found.setdefault(path, at)
        if array:
            index = self._arrays.get(path, 0)
            self._arrays[path] = index + 1
            path = (*path, index)
            self.found[path] = at
        return path

    def _pair(self, i: int, table: KeyPath) -> int:
        start = i
        keys, i = self._key(i)
        if self.text[i] != "=":
            raise ValueError("expected '='")
        for end in range(1, len(keys)):
            self.found.setdefault((*table, *keys[:end]), start)
        return self._value(self._skip(i + 1), (*table, *keys), start)

    def _key(self, i: int) -> tuple[tuple[str, ...], int]:
        parts: list[str] = []
        while match := _KEY_PART.match(self.text, i := self._skip(i)):
            part = match.group()
            parts.append(part[1:-1] if part[0] in "\"'" else part)
            i = self._skip(match.end())
            if self.text[i] != ".":
                return tuple(parts), i
            i += 1
        raise ValueError("expected a key")

    def _value(self, i: int, path: KeyPath, at: int) -> int:
        text = self.text
        self.found.setdefault(path, at)
        if text[i] in "[{":
            close, index = "]" if text[i] == "[" else "}", 0
            while text[i := self._skip(i + 1 if index == 0 else i, newlines=True)] != close:
                if close == "]":
                    i = self._value(i, (*path, index), i)
                else:
                    i = self._pair(i, path)
                index += 1
                if text[i := self._skip(i, newlines=True)] == ",":
                    i += 1
            return i + 1
        if match := _SCALAR.match(text, i):
            return match.end()
        raise ValueError("expected a value")

    def _skip(self, i: int, *, newlines: bool = False) -> int:
        match = (_GAPS if newlines else _SPACES).match(self.text, i)
        return match.end() if match else i
