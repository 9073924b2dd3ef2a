"""Group commit: the write transactions waiting at one moment, committed together on the writer's thread.

A caller hands over its transaction's body, a synchronous function of a ``sqlite3.Connection``, and waits.
One of the waiting callers leads: it takes every body queued so far and runs them in one call on a worker
thread (no round trip to the event loop between statements), as one transaction::

    BEGIN IMMEDIATE
    SAVEPOINT job; <body 1>; RELEASE job      -- a body that raises: ROLLBACK TO job, and only it is undone
    SAVEPOINT job; <body 2>; RELEASE job
    ...
    COMMIT                                    -- one fsync for all of them

Every caller is answered only after that COMMIT returned (or failed: then every body that had succeeded is
told the error, since its rows are gone), so nothing is acknowledged before it is durable. The bodies run one
after another under SQLite's write lock, each seeing what the ones before it wrote: a batch behaves exactly
like its transactions run one by one, in the order they arrived. Waiting is shielded from cancellation: a
cancelled caller still waits for its commit's outcome, which is therefore never unknown. A body that raises
something other than an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) abandons the whole batch: it is
rolled back and every caller in it gets that exception.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import anyio

T = TypeVar("T")
Body = Callable[[sqlite3.Connection], T]


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    body: Body[T]
    wake: anyio.Event | None = None  #: set when finished, or when it is this job's turn to lead; made when waiting
    finished: bool = False
    result: T | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Runs write transactions on ``conn``, one batch at a time, while holding ``lock``.

    ``lock`` is shared with any other writer of the same database in this process, so SQLite's write lock
    is never contended from inside the process.
    """

    def __init__(self, conn: sqlite3.Connection, lock: anyio.Lock) -> None:
        self._conn = conn
        self._lock = lock
        self._limiter = anyio.CapacityLimiter(1)  #: the connection is used by one thread at a time
        self._queue: list[_Job[Any]] = []
        self._leading = False  #: a caller has taken (or is waiting for ``lock`` to take) the next batch

    async def run(self, body: Body[T]) -> T:
        """Run ``body`` inside a write transaction; return its result once the transaction has committed.

        If ``body`` raises, nothing it wrote is kept and the exception propagates.
        """
        job: _Job[T] = _Job(body)
        with anyio.CancelScope(shield=True):
            self._queue.append(job)
            while not job.finished:
                if self._leading:
                    job.wake = anyio.Event()
                    await job.wake.wait()
                else:
                    await self._lead()
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    async def _lead(self) -> None:
        self._leading = True
        batch: list[_Job[Any]] = []
        try:
            async with self._lock:  # taken in turn with the other writers; more callers queue up meanwhile
                batch, self._queue = self._queue, []
                await anyio.to_thread.run_sync(commit_batch, self._conn, batch, limiter=self._limiter)
        except BaseException as exc:  # not a body's error (commit_batch records those): the batch is lost
            for job in batch:
                job.error = job.error or exc
        finally:
            self._leading = False
            for job in batch:
                job.finished = True
                if job.wake is not None:
                    job.wake.set()
            if self._queue and (oldest := self._queue[0]).wake is not None:  # hand over: it leads the next batch
                oldest.wake.set()

    async def aclose(self) -> None:
        """Wait for the batch in flight, then close the connection."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(self._conn.close, limiter=self._limiter)


def commit_batch(conn: sqlite3.Connection, batch: list[_Job[Any]]) -> None:
    """One transaction for the whole batch, each body in its own savepoint; outcomes are stored in the jobs."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.body(conn)
            except Exception as exc:
                job.error = exc
                if not conn.in_transaction:  # SQLite rolled the whole transaction back (I/O error, disk full)
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            else:
                conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for job in batch:
            if job.error is None:  # it succeeded (its rows are gone now) or never ran
                job.error = exc
                job.result = None
