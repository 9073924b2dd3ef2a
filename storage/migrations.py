"""Numbered schema migrations (``sql/NNNN_name.sql``), applied in order, each once, atomically."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from importlib import resources

import aiosqlite

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).joinpath("sql").iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append(Migration(int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def statements(script: str) -> list[str]:
    """Split a script into statements; ``sqlite3.complete_statement`` keeps trigger bodies whole."""
    result, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                result.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(ln.strip().startswith("--") for ln in buffer.splitlines() if ln.strip()):
        raise ValueError(f"unterminated statement at the end of a migration: {buffer.strip()[:80]!r}")
    return result


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema to the latest version; safe when several processes start at once."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        async with db.execute("SELECT version FROM schema_migrations") as cur:
            applied = {row[0] for row in await cur.fetchall()}
        latest = max(applied, default=0)
        for migration in available():
            if migration.version in applied:
                continue
            logger.info("applying migration %s", migration.name)
            for statement in statements(migration.sql):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            )
            latest = migration.version
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    return latest
