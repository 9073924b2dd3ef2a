"""The approval store the settings choose: the SQLite file (the default) or PostgreSQL (``SIGNOFF_DB=postgresql://…``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from signoff.server.config import Settings
from signoff.storage import ConfigError, ModelStore, Store
from signoff.storage.alerts import Alerts, AlertStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.storage.pg_url import redacted
from signoff.storage.streams import SqliteStreams, Streams

NO_DRIVER = (
    'SIGNOFF_DB names a PostgreSQL database, but its driver is not installed ({}): pip install "signoff[postgres]"'
)


async def open_store(settings: Settings) -> Store:
    """Open (creating and migrating as needed) the database the settings name."""
    if settings.db_url is None:
        return await SqliteStore.open(settings.db_path)
    try:
        from signoff.storage.approvals.postgres import PostgresStore  # psycopg: the optional `postgres` extra
    except ImportError as exc:
        raise ConfigError(NO_DRIVER.format(exc)) from None
    return await PostgresStore.open(settings.db_url)


async def open_model_store(db_path: Path, db_url: str | None) -> ModelStore:
    """The model store on the same database as the approval store: the SQLite file, or PostgreSQL at ``db_url``."""
    if db_url is None:
        return await SqliteModelStore.open(db_path)
    try:
        from signoff.storage.models.postgres import PostgresModelStore  # psycopg: the optional `postgres` extra
    except ImportError as exc:
        raise ConfigError(NO_DRIVER.format(exc)) from None
    return await PostgresModelStore.open(db_url)


async def open_alert_store(db_path: Path, db_url: str | None) -> Alerts:
    """The alerts' state and outbox on the same database as the approval store."""
    if db_url is None:
        return await AlertStore.open(db_path)
    try:
        from signoff.storage.alerts_pg import PostgresAlertStore  # psycopg: the optional `postgres` extra
    except ImportError as exc:
        raise ConfigError(NO_DRIVER.format(exc)) from None
    return await PostgresAlertStore.open(db_url)


async def open_stream_store(db_path: Path, db_url: str | None) -> Streams:
    """The resumable streams of waiting calls on the same database as the approval store."""
    if db_url is None:
        return await SqliteStreams.open(db_path)
    try:
        from signoff.storage.streams_pg import PostgresStreams  # psycopg: the optional `postgres` extra
    except ImportError as exc:
        raise ConfigError(NO_DRIVER.format(exc)) from None
    return await PostgresStreams.open(db_url)


Work = Callable[[], Coroutine[Any, Any, None]]


def once(db_url: str | None, job: str, work: Work) -> Work:
    """``work`` (a background job's loop) as this process should run it: on PostgreSQL only while this process
    leads ``job`` among every server on the database (``storage.pg_leader``); on SQLite, one machine, in every
    process as before (each of its rounds is a compare-and-set)."""
    if db_url is None:
        return work
    from signoff.storage.pg_leader import lead  # psycopg: the optional `postgres` extra, there when db_url is

    return partial(lead, db_url, job, work)


def database_name(settings: Settings) -> str:
    """The database as logs and errors name it: the SQLite path, or the PostgreSQL URL without its password."""
    return redacted(settings.db_url) if settings.db_url is not None else str(settings.db_path)
