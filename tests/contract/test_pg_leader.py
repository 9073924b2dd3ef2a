"""One leader per job on a PostgreSQL database: of two processes (each with its own connections) only one runs the
job; when the leader dies the other takes over; a leader whose connection drops stops at once."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from signoff.storage.pg_leader import JOBS, lead

pytestmark = pytest.mark.slow


class Job:
    """A background job's loop that records when it runs in which process."""

    def __init__(self, events: list[str], running: set[str], name: str) -> None:
        self.events, self.running, self.name = events, running, name
        self.started = anyio.Event()

    async def __call__(self) -> None:
        assert not self.running, f"{self.name} started while {self.running} ran"
        self.running.add(self.name)
        self.events.append(f"{self.name} starts")
        self.started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.running.discard(self.name)
            self.events.append(f"{self.name} stops")


async def test_only_one_process_leads_and_the_other_takes_over_when_it_dies(pg_url: str) -> None:
    events: list[str] = []
    running: set[str] = set()
    a, b = Job(events, running, "a"), Job(events, running, "b")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            process_a = anyio.CancelScope()

            async def run_a() -> None:
                with process_a:
                    await lead(pg_url, "canary guard", a, retry_seconds=0.05)

            tg.start_soon(run_a)
            await a.started.wait()
            standbys = 0
            tried_thrice = anyio.Event()

            def standby() -> None:
                nonlocal standbys
                standbys += 1
                if standbys == 3:
                    tried_thrice.set()

            tg.start_soon(lambda: lead(pg_url, "canary guard", b, retry_seconds=0.05, on_standby=standby))
            await tried_thrice.wait()  # b found a leading three times, and never ran
            assert events == ["a starts"]

            process_a.cancel()  # a dies: its connection closes, and b takes over
            await b.started.wait()
            tg.cancel_scope.cancel()
    assert events[:3] == ["a starts", "a stops", "b starts"]


async def test_a_leader_whose_connection_drops_stops_and_the_job_is_led_again(pg_url: str) -> None:
    events: list[str] = []
    running: set[str] = set()
    a = Job(events, running, "a")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: lead(pg_url, "expiry sweeper", a, retry_seconds=0.05))
            await a.started.wait()
            a.started = anyio.Event()
            with psycopg.connect(pg_url, autocommit=True) as conn:
                [pid] = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                    (JOBS["expiry sweeper"] & 0xFFFF_FFFF,),
                ).fetchone() or (None,)
                assert pid is not None
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await a.started.wait()  # it noticed, stopped, and led again on a new connection
            tg.cancel_scope.cancel()
    assert events[:3] == ["a starts", "a stops", "a starts"]


async def test_different_jobs_have_their_own_leaders(pg_url: str) -> None:
    events: list[str] = []
    sweeper, guard = Job(events, set(), "sweeper"), Job(events, set(), "guard")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: lead(pg_url, "expiry sweeper", sweeper, retry_seconds=0.05))
            tg.start_soon(lambda: lead(pg_url, "canary guard", guard, retry_seconds=0.05))
            await sweeper.started.wait()
            await guard.started.wait()
            tg.cancel_scope.cancel()
