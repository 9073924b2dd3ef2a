"""An in-process "something changed" signal that waiters can block on, with an optional poll for other processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


class ChangeSignal:
    def __init__(self) -> None:
        self.generation = 0
        self._changed: anyio.Event | None = None

    def notify(self) -> None:
        self.generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

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
