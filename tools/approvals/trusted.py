"""Reading ``[[lookups]]``: CSV and JSON files and read-only SQLite queries, cached for their ``ttl_seconds``.

This is the I/O behind ``lookups.LookupReader``; the pure policy never imports it. A file is read whole and kept
as a table; a query is run per key and each key's row kept (at most ``max_keys`` rows, least recently used out).
Anything that goes wrong is an ``Answer`` with ``error`` in words (never an exception), kept for a few seconds
only, so a fixed file or database is used again soon.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from signoff.storage.folding import fold_key
from signoff.tools.approvals.conditions import show
from signoff.tools.approvals.lookups import Answer, Lookup

__all__ = ["TrustedData"]

ERROR_TTL_SECONDS = 5.0  #: a failed load or query is retried after at most this long
MAX_FILE_BYTES = 256 * 1024 * 1024
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

Table = dict[str, Mapping[str, Any]]


class _Loaded(NamedTuple):
    """A file's table, and its keys as a person reads them (``fold_key``: case, surrounding spaces and invisible
    characters ignored), each to the key as listed."""

    rows: Table
    folded: Mapping[str, str]

    @classmethod
    def of(cls, rows: Table) -> _Loaded:
        folded: dict[str, str] = {}
        for key in rows:
            folded.setdefault(fold_key(key), key)
        return cls(rows, folded)


class TrustedData:
    """A ``LookupReader`` over files and SQLite databases. Relative paths are taken from ``base_dir`` (the policy
    file's folder). ``clock`` (monotonic seconds) decides when a cached answer is stale. Thread-safe."""

    def __init__(
        self, base_dir: Path | None = None, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.base_dir = base_dir or Path.cwd()
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._tables: dict[Lookup, tuple[float, _Loaded | str]] = {}  # lookup -> (expires at, table or error)
        self._rows: OrderedDict[tuple[Lookup, str | int], tuple[float, Answer]] = OrderedDict()
        self._connections: dict[Path, sqlite3.Connection] = {}

    def path(self, name: str) -> Path:
        return (self.base_dir / Path(name).expanduser()).resolve()

    def source(self, lookup: Lookup) -> str:
        if lookup.file is not None:
            return f"lookup {lookup.name} (file {self.path(lookup.file)})"
        return f"lookup {lookup.name} (query on {self.path(lookup.database or '')})"

    def cached(self, lookup: Lookup, key: str | int) -> Answer | None:
        """The answer if it is cached and fresh; None if ``answer`` would have to read the source."""
        now = self.clock()
        with self._lock:
            if lookup.file is not None:
                found = self._tables.get(lookup)
                if found is None or found[0] <= now:
                    return None
                return self._from_table(lookup, found[1], key)
            row = self._rows.get((lookup, key))
            if row is None or row[0] <= now:
                return None
            self._rows.move_to_end((lookup, key))
            return row[1]

    def answer(self, lookup: Lookup, key: str | int) -> Answer:
        """The lookup's answer for ``key``, from the cache or read now (blocking: call it off the event loop)."""
        found = self.cached(lookup, key)
        if found is not None:
            return found
        if lookup.file is not None:
            table = self._load(lookup)
            return self._from_table(lookup, table, key)
        return self._query(lookup, key)

    def check(self, lookup: Lookup) -> str | None:
        """What is wrong with a lookup's source, or None: the file loads, the database opens and the query compiles."""
        if lookup.file is not None:
            loaded = self._read_file(lookup)
            return loaded if isinstance(loaded, str) else None
        try:
            connection = self._connect(lookup)
            connection.execute(f"EXPLAIN {lookup.query}", (None,)).fetchall()
        except sqlite3.Error as exc:
            return f"the query cannot run: {exc}"
        except _Unavailable as exc:
            return str(exc)
        return None

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()

    # files

    def _from_table(self, lookup: Lookup, table: _Loaded | str, key: str | int) -> Answer:
        """The key's row; for a key not listed as sent but listed in another spelling (``acct-9`` for ``ACCT-9``,
        ``"ACCT-9 "``, a zero-width character inside), an error: such a key is not a clear "not listed" (the system
        that acts may read both alike), so the rules fail closed and a person checks which was meant."""
        source = self.source(lookup)
        if isinstance(table, str):
            return Answer(source=source, error=table)
        row = table.rows.get(str(key))
        if row is None and isinstance(key, str) and (listed := table.folded.get(fold_key(key))) is not None:
            return Answer(
                source=source,
                error=f"{show(key)} is not listed, but {show(listed)} is, and they differ only in case, spaces or"
                " invisible characters",
            )
        return Answer(source=source, row=row)

    def _load(self, lookup: Lookup) -> _Loaded | str:
        read = self._read_file(lookup)
        loaded = read if isinstance(read, str) else _Loaded.of(read)
        ttl = lookup.ttl_seconds if not isinstance(loaded, str) else min(lookup.ttl_seconds, ERROR_TTL_SECONDS)
        with self._lock:
            self._tables[lookup] = (self.clock() + ttl, loaded)
        return loaded

    def _read_file(self, lookup: Lookup) -> Table | str:
        path = self.path(lookup.file or "")
        try:
            size = os.stat(path).st_size
            if size > MAX_FILE_BYTES:
                return f"{path} is {size:,} bytes; lookup files are limited to {MAX_FILE_BYTES:,}"
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            return f"{path} does not exist"
        except IsADirectoryError:
            return f"{path} is a directory, not a file"
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
        except UnicodeDecodeError as exc:
            return f"{path} is not UTF-8 text: {exc.reason}"
        if path.suffix.lower() == ".csv":
            return _csv_table(text, lookup.key or "", path)
        return _json_table(text, lookup.key, path)

    # databases

    def _connect(self, lookup: Lookup) -> sqlite3.Connection:
        path = self.path(lookup.database or "")
        connection = self._connections.get(path)
        if connection is None:
            if not path.is_file():
                raise _Unavailable(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
            try:
                connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
                connection.execute("PRAGMA query_only = 1")
            except sqlite3.Error as exc:
                raise _Unavailable(f"cannot open {path} read-only: {exc}") from None
            self._connections[path] = connection
        return connection

    def _query(self, lookup: Lookup, key: str | int) -> Answer:
        source = self.source(lookup)
        deadline = time.monotonic() + lookup.timeout_seconds  # a bound on real time, not a decision's input
        with self._lock:  # one query at a time per process: each connection serves one thread at once
            try:
                connection = self._connect(lookup)
                connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
                connection.execute(f"PRAGMA busy_timeout = {max(1, int(lookup.timeout_seconds * 1000))}")
                try:
                    cursor = connection.execute(lookup.query or "", (key,))
                    first = cursor.fetchone()
                    columns = [column[0] for column in cursor.description or ()]
                    cursor.close()
                finally:
                    connection.set_progress_handler(None, 0)
                answer = Answer(source=source, row=None if first is None else dict(zip(columns, first, strict=True)))
                ttl = lookup.ttl_seconds
            except _Unavailable as exc:
                answer, ttl = Answer(source=source, error=str(exc)), min(lookup.ttl_seconds, ERROR_TTL_SECONDS)
            except sqlite3.OperationalError as exc:
                late = "interrupted" in str(exc) or time.monotonic() > deadline
                error = (
                    f"the query took longer than {lookup.timeout_seconds:g} s" if late else f"the query failed: {exc}"
                )
                answer, ttl = Answer(source=source, error=error), min(lookup.ttl_seconds, ERROR_TTL_SECONDS)
            except sqlite3.Error as exc:
                answer = Answer(source=source, error=f"the query failed: {exc}")
                ttl = min(lookup.ttl_seconds, ERROR_TTL_SECONDS)
            self._rows[(lookup, key)] = (self.clock() + ttl, answer)
            self._rows.move_to_end((lookup, key))
            while len(self._rows) > self.max_keys:
                self._rows.popitem(last=False)
        return answer


class _Unavailable(Exception):
    """A database that cannot be opened."""


def _cell(text: str) -> Any:
    """A CSV cell as a value: numbers as numbers, an empty cell as null, anything else as the string."""
    text = text.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text


def _csv_table(text: str, key: str, path: Path) -> Table | str:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None:
        return f"{path} is empty; it needs a header row naming the columns"
    if key not in reader.fieldnames:
        return f"{path} has no column {key!r} (its header names {', '.join(reader.fieldnames)})"
    table: Table = {}
    try:
        for row in reader:
            name = (row.get(key) or "").strip()
            if name:
                table.setdefault(name, {column: _cell(value or "") for column, value in row.items() if column})
    except csv.Error as exc:
        return f"{path} line {reader.line_num}: not valid CSV: {exc}"
    return table


def _json_table(text: str, key: str | None, path: Path) -> Table | str:
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"{path} is not valid JSON: {exc}"
    table: Table = {}
    if isinstance(document, dict) and key is None:
        for name, value in document.items():
            table[name] = value if isinstance(value, dict) else {"value": value}
        return table
    if isinstance(document, list) and key is not None:
        for index, item in enumerate(document):
            if not isinstance(item, dict):
                return f"{path}: element {index} is not an object"
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                table.setdefault(str(value), item)
        return table
    if isinstance(document, list):
        return f'{path} is an array of objects; set key to the field that names each, e.g. key = "id"'
    return f"{path} must be an object (key -> row) without key, or an array of objects with key"
