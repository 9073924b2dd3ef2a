"""The model store after PostgreSQL restarted (a failover): its reads work the first time, as the approval store's
do (a connection the server dropped is replaced and the read tried once more), and a write that met a dropped
connection fails "database unavailable" (its outcome is not guessed at) and has the pool's other dropped connections
replaced, so the next write works. The test runs its own cluster: stopping the shared one would cut others off."""

from __future__ import annotations

import anyio
import pytest

from signoff.storage import ChangeKind
from signoff.storage.errors import DatabaseUnavailable
from signoff.storage.models.postgres import PostgresModelStore
from tests.contract.test_model_store_contract import SALT, change, registered, version
from tests.pg_cluster import Cluster


async def restarted_with_idle_connections(store: PostgresModelStore, cluster: Cluster, idle: int) -> None:
    """The pool holding ``idle`` connections when the server restarts: each one is dropped."""
    pool = store._db.pool
    async with anyio.create_task_group() as tg:  # the pool grows to ``idle`` connections, all then idle
        held = anyio.Event()
        taken = 0

        async def take() -> None:
            nonlocal taken
            async with pool.connection():
                taken += 1
                if taken == idle:
                    held.set()
                await held.wait()

        for _ in range(idle):
            tg.start_soon(take)
    assert pool.get_stats()["pool_size"] >= idle
    await anyio.to_thread.run_sync(cluster.pause)
    await anyio.to_thread.run_sync(cluster.resume)


async def test_model_reads_work_the_first_time_after_a_restart(own_pg_cluster: Cluster) -> None:
    store = await PostgresModelStore.open(own_pg_cluster.new_database(), poll_interval=600)
    try:
        await registered(store, "v1")
        await restarted_with_idle_connections(store, own_pg_cluster, 3)
        state = await store.get_model("fraud")
        assert state is not None and [v.version for v in state.versions] == ["v1"]
        await restarted_with_idle_connections(store, own_pg_cluster, 3)
        assert [m.name for m in await store.list_models()] == ["fraud"]
    finally:
        await store.close()


async def test_a_model_write_after_a_restart_fails_once_then_the_next_one_works(own_pg_cluster: Cluster) -> None:
    store = await PostgresModelStore.open(own_pg_cluster.new_database(), poll_interval=600)
    try:
        await registered(store, "v1")
        await restarted_with_idle_connections(store, own_pg_cluster, 3)
        with pytest.raises(DatabaseUnavailable):  # the commit's outcome is unknown: not tried again
            await store.register(version(v="v2"), SALT, change(ChangeKind.REGISTER, payload={"version": "v2"}))
        await store.register(version(v="v3"), SALT, change(ChangeKind.REGISTER, payload={"version": "v3"}))
        state = await store.get_model("fraud")
        assert state is not None and [v.version for v in state.versions] == ["v1", "v3"]
    finally:
        await store.close()
