"""An in-process "something changed" signal that waiters can block on, and ways to notice other processes' changes:
a poll per waiter (``ChangeSignal.wait`` with ``changed_elsewhere``), or one poll for all of them (``CommitWatch``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import anyio

HURRY_FIRST = 0.0005  #: seconds from a write to the log to the second read of the version, doubling after


class ChangeSignal:
    def __init__(self) -> None:
        self.generation = 0  #: bumped by every change made in this process
        self.remote = 0  #: bumped by a ``CommitWatch`` when it sees another process's change
        self._changed: anyio.Event | None = None

    def notify(self) -> None:
        self.generation += 1
        self.wake()

    def notify_remote(self) -> None:
        self.remote += 1
        self.wake()

    def wake(self) -> None:
        """Wake every waiter without a new generation: they look again at what they wait for."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def event(self) -> anyio.Event:
        """The event the next ``notify`` or ``wake`` sets."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    async def wait(
        self,
        generation: int,
        timeout: float,
        *,
        changed_elsewhere: Callable[[], Awaitable[bool]] | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        """Return once ``generation`` is stale (or ``changed_elsewhere()`` says so, polled), or at ``timeout``."""
        with anyio.move_on_after(timeout):
            while self.generation == generation:
                if self._changed is None:
                    self._changed = anyio.Event()
                if changed_elsewhere is None:
                    await self._changed.wait()
                    continue
                with anyio.move_on_after(poll_interval):
                    await self._changed.wait()
                    return
                if await changed_elsewhere():
                    return


class CommitWatch:
    """Notices other connections' commits for all of a store's waiters with one poll, instead of one per waiter.

    The waiter that finds nobody polling polls for everyone, at the shortest interval any waiter asked for, and
    calls ``signal.notify_remote()`` when the version it reads moves on. When its own wait ends it stops and wakes the
    others (``signal.wake()``), one of which takes over. So a hundred agents waiting in ``get_status`` cost one
    read every 20 ms, not a hundred. With ``file_changes`` (``FileWatch.changed`` on the write-ahead log), the
    poller reads the version as soon as another process writes, instead of at the end of the interval.
    """

    def __init__(
        self,
        signal: ChangeSignal,
        read_version: Callable[[], Awaitable[int]],
        file_changes: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._signal = signal
        self._read_version = read_version
        self._file_changes = file_changes  #: returns when the database's files were written: poll at once
        self._hurried = False  #: set by a file change: the poll reads at once and then soon again
        self._latest: int | None = None  #: the version last read (by a poll, or a first waiter's token)
        self._intervals: Counter[float] = Counter()  #: the poll intervals of the waiters now waiting
        self._polling = False
        self.polls = 0  #: versions read so far, for tests and probes

    async def wait(self, generation: int, remote: int, version: int, timeout: float, poll_interval: float) -> None:
        """Return once ``generation`` or ``remote`` is stale (a change in this process, or one another process
        made, seen by a poll after ``version`` was read), or at ``timeout``."""
        self._intervals[poll_interval] += 1
        try:
            with anyio.move_on_after(timeout):
                while self._unchanged(generation, remote):
                    if self._polling:
                        await self._signal.event().wait()
                    else:
                        await self._poll(generation, remote, version)
        finally:
            self._intervals[poll_interval] -= 1
            if not self._intervals[poll_interval]:
                del self._intervals[poll_interval]

    def _unchanged(self, generation: int, remote: int) -> bool:
        return self._signal.generation == generation and self._signal.remote == remote

    async def _poll(self, generation: int, remote: int, version: int) -> None:
        self._polling = True
        if self._latest is None:
            self._latest = version
        try:
            if self._file_changes is None:
                await self._poll_until_changed(generation, remote)
                return
            async with anyio.create_task_group() as hurry:
                hurry.start_soon(self._wake_on_file_changes, self._file_changes)
                await self._poll_until_changed(generation, remote)
                hurry.cancel_scope.cancel()
        finally:
            self._polling = False
            self._signal.wake()  # someone still waiting takes the polling over

    async def _wake_on_file_changes(self, changed: Callable[[], Awaitable[None]]) -> None:
        while True:
            await changed()
            self._hurried = True
            self._signal.wake()  # the poll below reads the version now

    async def _poll_until_changed(self, generation: int, remote: int) -> None:
        # After a write to the log, the commit shows in the version only once SQLite has synced the log and updated
        # its index: read again after 0.5, 1, 2, ... ms until it does, then back to the interval.
        # A file change the last poll heard but did not act on (it ended first: its waiter was woken by something
        # else) is acted on at once: that write's inotify event is read already and will not come again.
        hurry: float | None = None
        while self._unchanged(generation, remote):
            if not self._hurried:
                with anyio.move_on_after(min(self._intervals) if hurry is None else hurry):
                    await self._signal.event().wait()
                if not self._unchanged(generation, remote):
                    return
            if self._hurried:
                self._hurried, hurry = False, HURRY_FIRST
            current = await self._read_version()
            self.polls += 1
            if current != self._latest:
                self._latest = current
                if hurry is not None:
                    # What changed may not be the commit that wrote the log: the log's restart shows first, the
                    # commit after its sync. So the next poll hurries too, and reads at once.
                    self._hurried = True
                self._signal.notify_remote()
            elif hurry is not None:
                hurry = hurry * 2 if hurry * 2 < min(self._intervals) else None
