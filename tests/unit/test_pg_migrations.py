"""Every SQLite migration has its PostgreSQL twin: the same number and name (the first PostgreSQL migration,
the baseline, stands for SQLite's migrations up to its number). A migration added for SQLite alone fails here."""

from __future__ import annotations

from pathlib import Path

STORAGE = Path(__file__).resolve().parents[2] / "storage"


def names(folder: str) -> list[str]:
    return sorted(p.name for p in (STORAGE / folder).glob("[0-9][0-9][0-9][0-9]_*.sql"))


def test_every_sqlite_migration_has_a_postgresql_twin() -> None:
    sqlite, postgres = names("sql"), names("sql_pg")
    baseline = int(postgres[0][:4])
    missing = [name for name in sqlite if int(name[:4]) > baseline and name not in postgres]
    assert not missing, (
        f"SQLite migrations without a PostgreSQL twin: {missing}; add storage/sql_pg/<the same name> "
        "(the same change in PostgreSQL's dialect: docs/postgresql.md, Migrations)"
    )


def test_postgresql_has_no_migration_sqlite_lacks() -> None:
    sqlite, postgres = names("sql"), names("sql_pg")
    baseline = int(postgres[0][:4])
    assert int(sqlite[baseline - 1][:4]) == baseline, "the baseline stands for SQLite's 0001 up to its number"
    assert [name for name in postgres[1:] if name not in sqlite] == []
