from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signoff.storage import Store
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.streams import MemoryStreams, SqliteStreams, Streams
from tests import factories
from tests.pg_cluster import Cluster, start_cluster


@pytest.fixture(autouse=True)
def fresh_factories() -> None:
    """Every test numbers its requests from 1 (``tests.factories.restart``): no test depends on the ones before it."""
    factories.restart()


def _throwaway_cluster() -> Iterator[Cluster]:
    """A cluster (tests/pg_cluster.py), stopped and removed afterwards; fails the test, never skips, without one."""
    try:
        cluster = start_cluster()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole run."""
    yield from _throwaway_cluster()


@pytest.fixture
def own_pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for one test, which may stop it (stopping the shared one cuts others off)."""
    yield from _throwaway_cluster()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SIGNOFF_DB on either engine: an SQLite file or a PostgreSQL URL (a module may define its own ``database``)."""
    return str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else str(tmp_path / "signoff.db")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every Store implementation; the contract suite runs once per backend."""
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = await SqliteStore.open(tmp_path / "signoff.db")
    else:
        from signoff.storage.approvals.postgres import PostgresStore  # psycopg: the optional `postgres` extra

        backend = await PostgresStore.open(request.getfixturevalue("pg_url"))
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def streams(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Streams]:
    """Every store of waiting calls' streams (resumability); the stream contract runs once per backend."""
    backend: Streams
    if request.param == "memory":
        backend = MemoryStreams()
    elif request.param == "sqlite":
        backend = await SqliteStreams.open(tmp_path / "signoff.db")
    else:
        from signoff.storage.streams_pg import PostgresStreams

        backend = await PostgresStreams.open(request.getfixturevalue("pg_url"))
    try:
        yield backend
    finally:
        await backend.close()
