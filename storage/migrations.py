"""Numbered schema migrations (``sql/NNNN_name.sql``), applied in order, each once, atomically."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

import aiosqlite

from signoff.storage.errors import ConfigError
from signoff.storage.folding import history_folds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer signoff than this one."""

    def __init__(self, *, found: int, known: int, path: str = "the database") -> None:
        super().__init__(
            f"{path} has schema version {found}, but this signoff knows migrations up to version {known}:"
            " a newer signoff wrote it; upgrade signoff (or use another database with --db or SIGNOFF_DB)"
        )
        self.found = found
        self.known = known
        self.path = path


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


async def _baseline_model_plane(db: aiosqlite.Connection) -> None:
    from signoff.storage.models.sqlite import baseline_chain  # the model store imports this module's importer

    await baseline_chain(db)


#: The table ``_history_folds`` fills (0018_folded_history.sql creates it too, when it is run as a plain script).
HISTORY_FOLDS = (
    "CREATE TEMP TABLE history_folds"
    " (kind TEXT NOT NULL, raw TEXT NOT NULL, folded TEXT NOT NULL, PRIMARY KEY (kind, raw))"
)


async def _history_folds(db: aiosqlite.Connection) -> None:
    """What 0018_folded_history.sql renames: every action and field name in the anomaly history whose fold differs,
    folded by ``folding`` (which SQL cannot spell), in the temporary table the script reads."""
    await db.execute(HISTORY_FOLDS)
    actions = await db.execute_fetchall("SELECT action FROM agent_actions UNION SELECT action FROM action_values")
    fields = await db.execute_fetchall("SELECT DISTINCT field FROM action_values")
    folds = history_folds((row[0] for row in actions), (row[0] for row in fields))
    await db.executemany("INSERT INTO history_folds (kind, raw, folded) VALUES (?, ?, ?)", folds)


#: Steps that need Python, run right before a migration's SQL, in the same transaction.
_BEFORE: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {18: _history_folds}

#: Steps that need Python, run right after a migration's SQL, in the same transaction.
_AFTER: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {8: _baseline_model_plane}


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
        known = available()
        newest_known = max((m.version for m in known), default=0)
        if latest > newest_known:
            raise SchemaTooNew(found=latest, known=newest_known)
        for migration in known:
            if migration.version in applied:
                continue
            logger.info("applying migration %s", migration.name)
            if (before := _BEFORE.get(migration.version)) is not None:
                await before(db)
            for statement in statements(migration.sql):
                await db.execute(statement)
            if (step := _AFTER.get(migration.version)) is not None:
                await step(db)
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
