"""Trusted data the operator provides: ``[[lookups]]`` (a CSV or JSON file, or a SQL query on a read-only SQLite
database), and what the pure policy needs to ask them.

Pure: no I/O. The policy receives a ``LookupReader`` (``trusted.TrustedData`` reads and caches the sources, outside
the core; the service hands the policy answers it fetched beforehand) and turns each ``Answer`` into a verdict. A
lookup that fails (a missing file, a bad query, a timeout, a key the table lacks when a rule needs one) fails
closed: the request goes to people, and the trigger says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from signoff.tools.typed_toml import Fault

__all__ = ["Answer", "Lookup", "LookupReader", "Prefetched", "lookup_key"]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILE_KINDS = (".csv", ".json")


@dataclass(frozen=True, kw_only=True, slots=True)
class Lookup:
    """``[[lookups]]``: a named table of trusted values, keyed by one value of the request."""

    name: str  #: what rules call it: ``lookup = "credit_limits"``
    file: str | None = None  #: a .csv (with a header row) or .json file; relative to the policy file's folder
    key: str | None = None  #: with a file: the column whose value is the key (a JSON object of objects needs none)
    database: str | None = None  #: a SQLite database, opened read-only; relative to the policy file's folder
    query: str | None = None  #: with a database: one SELECT with one ``?``, the key; its first row is the answer
    ttl_seconds: float = 300.0  #: an answer (a whole file, or one key's row) is reused this long
    timeout_seconds: float = 1.0  #: a query (or a file's load) taking longer fails: the request goes to people

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise Fault(("name",), f"{self.name!r} is not a name; use letters, digits and _, e.g. credit_limits")
        if (self.file is None) == (self.database is None):
            raise Fault((), "give either file (a .csv or .json table) or database (a SQLite file) with query")
        if self.file is not None:
            if not self.file.lower().endswith(FILE_KINDS):
                raise Fault(("file",), f"{self.file!r} must end in .csv or .json")
            if self.query is not None:
                raise Fault(("query",), "applies only to a database; a file is read whole")
            if self.file.lower().endswith(".csv") and not self.key:
                raise Fault((), 'a CSV file needs key, the column that holds the key, e.g. key = "customer_id"')
        else:
            if self.key is not None:
                raise Fault(("key",), "applies only to a file; a query receives the key as its ? parameter")
            query = (self.query or "").strip()
            if not query:
                raise Fault(
                    (), 'a database needs query, e.g. query = "SELECT credit_limit FROM customers WHERE id = ?"'
                )
            if not re.match(r"(?is)(select|with)\b", query):
                raise Fault(("query",), "must be one SELECT (or WITH … SELECT) statement; lookups only read")
            if query.rstrip(";").count(";"):
                raise Fault(("query",), "must be one statement; remove the extra ;")
            if query.count("?") != 1:
                raise Fault(("query",), f"must have exactly one ? (the key), not {query.count('?')}")
        if not (math.isfinite(self.ttl_seconds) and 1 <= self.ttl_seconds <= 86_400):
            raise Fault(("ttl_seconds",), f"must be from 1 to 86,400 seconds, not {self.ttl_seconds}")
        if not (math.isfinite(self.timeout_seconds) and 0.01 <= self.timeout_seconds <= 30):
            raise Fault(("timeout_seconds",), f"must be from 0.01 to 30 seconds, not {self.timeout_seconds}")

    @property
    def where(self) -> str:
        """Where the trusted values come from, as a reviewer reads it."""
        if self.file is not None:
            return f"lookup {self.name} (file {self.file})"
        return f"lookup {self.name} (query on {self.database})"


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """What a lookup said for one key."""

    source: str  #: where the value came from, e.g. ``lookup credit_limits (file /etc/signoff/limits.csv)``
    row: Mapping[str, Any] | None = None  #: the key's row (column -> value); None: the key is not there
    error: str | None = None  #: the lookup failed, and why in words (the row means nothing then)


class LookupReader(Protocol):
    """What the policy asks for trusted data. Implementations do the I/O and caching, outside the pure core."""

    def answer(self, lookup: Lookup, key: str | int) -> Answer: ...


class Prefetched:
    """Answers fetched beforehand (by the async service), handed to the synchronous policy."""

    def __init__(self, answers: Mapping[tuple[Lookup, str | int], Answer]) -> None:
        self.answers = answers

    def answer(self, lookup: Lookup, key: str | int) -> Answer:
        found = self.answers.get((lookup, key))
        if found is None:
            return Answer(source=lookup.where, error="it was not fetched before the policy ran")
        return found


def lookup_key(value: Any) -> str | int | None:
    """The key a request value looks up: a string, or a whole number; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None
