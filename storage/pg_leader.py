"""One leader per job among every signoff process on a PostgreSQL database (the expiry sweeper, the canary guard,
the alert worker): work that must run once, not once per replica.

A process leads a job while it holds a session-level advisory lock (``pg_try_advisory_lock``) on a connection of
its own. The lock lives as long as that connection: when the leader's process dies or its connection drops,
PostgreSQL releases it and another process, trying every ``retry_seconds``, takes over. A leader that sees its own
connection drop stops the work at once (it no longer holds the lock, so another may already lead). The connection
reports a drop when the server closes it; a silent network partition is noticed by TCP keepalives (libpq's
``keepalives_idle`` and friends in the URL), so a few seconds' overlap is possible then: every job is a
compare-and-set on its own, so the overlap can at worst repeat a round of checks, never a decision.

Importing this module loads psycopg (``pip install "signoff[postgres]"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import psycopg

from signoff.storage.pg_url import redacted

logger = logging.getLogger(__name__)

#: pg_try_advisory_lock keys: one per job, so different replicas may lead different jobs
JOBS = {
    "expiry sweeper": 0x5167_6E6F_6666_0010,
    "canary guard": 0x5167_6E6F_6666_0011,
    "alerts": 0x5167_6E6F_6666_0012,
}
RETRY_SECONDS = 2.0  #: how often a process that does not lead a job tries to take it over


async def lead(
    url: str,
    job: str,
    work: Callable[[], Coroutine[Any, Any, None]],
    *,
    retry_seconds: float = RETRY_SECONDS,
    on_standby: Callable[[], None] | None = None,
) -> None:
    """Run ``work`` whenever this process leads ``job`` on the database at ``url``; forever (cancel to stop).
    ``on_standby`` is called each time another process was found leading it."""
    key = JOBS[job]
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            try:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if (await cur.fetchone() or (False,))[0]:
                    logger.info("this process leads the %s", job)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(work)
                        await _until_lost(conn)
                        tg.cancel_scope.cancel()
                    logger.warning("this process lost the lead of the %s: its database connection dropped", job)
                elif on_standby is not None:
                    on_standby()
            finally:
                # shielded: when the process stops, this task is cancelled, and a cancelled close would leave the
                # connection (and the lead it holds) open until the garbage collector finds it
                with anyio.CancelScope(shield=True):
                    await conn.close()
        except psycopg.OperationalError as exc:
            logger.warning("cannot reach %s to lead the %s: %s", redacted(url), job, " ".join(str(exc).split()))
        await anyio.sleep(retry_seconds)


async def _until_lost(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Return when ``conn`` drops: waiting for notifications reads its socket, which fails when it closes."""
    try:
        async for _ in conn.notifies():
            pass
    except psycopg.OperationalError:
        return
