"""Read a test's database directly, on either engine: an SQLite file or a PostgreSQL URL (``SIGNOFF_DB``).

Tests check what was stored with SQL both engines understand; ``?`` placeholders are turned into psycopg's ``%s``.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg


def is_postgres(database: str | Path) -> bool:
    return str(database).startswith("postgresql://")


def query(database: str | Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows ``sql`` selects from ``database``, as tuples."""
    if is_postgres(database):
        with psycopg.connect(str(database), autocommit=True) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("?", "%s"), params).fetchall()]
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql, params).fetchall()
