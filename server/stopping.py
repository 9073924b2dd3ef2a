"""Stopping a server on SIGINT or SIGTERM: one log line, every waiting call answered, exit 0, no traceback.

On the signal, every approval service the server runs is told to stop (``ApprovalService.stop``): each
``get_status``/``request_approval`` wait and each permission prompt answers at once with the request as it stands
(``pending``, and a message saying to ask again). Then the transport ends:

- stdio: once every request read has been answered (or after ``GRACE`` seconds), stdin is treated as closed,
  which is how the SDK ends a session cleanly. signoff reads stdin itself, on the event loop: the SDK reads it on
  a worker thread that no cancellation can interrupt, which is why a Ctrl-C used to wait for one more line of
  input that never came, and a second one left a traceback and a process still blocked on stdin.
- HTTP: uvicorn's graceful shutdown, with signoff's signal handling instead of uvicorn's (which raises the signal
  again after a clean shutdown: a ``KeyboardInterrupt`` traceback), and a bound on how long it waits for
  connections still open (an SDK client's listening stream never ends by itself).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import mcp_types
from mcp.server import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from signoff.server.duplicate_keys import CheckedLines
from signoff.tools.approvals.service import ApprovalService

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("signoff")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE = 1.5  #: seconds for answers to reach the clients once the waits have ended, before the transport closes anyway


class Stopper:
    """Waits for SIGINT or SIGTERM and then stops every approval service attached to it."""

    def __init__(self) -> None:
        self.signal: str | None = None  #: the name of the signal that stopped the server
        self._services: list[ApprovalService] = []

    def attach(self, service: ApprovalService) -> None:
        """A signal stops ``service`` (at once, if it came already): the server's lifespan calls this."""
        self._services.append(service)
        if self.signal is not None:
            service.stop()

    async def watch(self, stop_transport: Callable[[], Awaitable[None]]) -> None:
        """Until cancelled: on the first SIGINT or SIGTERM, log it, stop the services, then ``stop_transport``.
        Later signals are ignored (the stop is bounded anyway, and a second Ctrl-C must not print a traceback)."""
        with anyio.open_signal_receiver(*SIGNALS) as received:
            async for number in received:
                if self.signal is None:
                    self.signal = signal.Signals(number).name
                    logger.info("signoff stopping: %s", self.signal)
                    for service in self._services:
                        service.stop()
                    await stop_transport()


# -- stdio ------------------------------------------------------------------------------------------------------


async def serve_stdio(server: MCPServer[Any], stopper: Stopper) -> None:
    """Serve ``server`` on stdin/stdout until stdin closes or a signal stops it."""
    with _claim_stdin() as fd:
        lines = _StdinLines(fd)
        ledger = _Ledger()
        async with anyio.create_task_group() as tasks:

            async def stop_transport() -> None:
                with anyio.move_on_after(GRACE):
                    await ledger.answered_all()
                lines.close()  # stdin "ends": the SDK closes the session, then the lifespan
                await anyio.sleep(GRACE)
                tasks.cancel_scope.cancel()  # what does not end in time is cut short

            tasks.start_soon(stopper.watch, stop_transport)
            checked = CheckedLines(lines)  # tools/calls with repeated JSON keys are marked, then refused
            async with stdio_server(stdin=cast("anyio.AsyncFile[str]", checked)) as (read, write):
                lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async runs, with signoff's stdin
                await lowlevel.run(
                    ledger.reading(read), ledger.writing(write), lowlevel.create_initialization_options()
                )
            tasks.cancel_scope.cancel()


@contextmanager
def _claim_stdin() -> Iterator[int]:
    """A private copy of stdin for the protocol; fd 0 reads the null device meanwhile (as the SDK does), so that
    a child process or a stray ``input()`` cannot take the client's messages."""
    import fcntl

    private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        yield private
    finally:
        os.dup2(private, 0)
        os.close(private)


class _StdinLines:
    """Lines of stdin read on the event loop (no thread), so a stop can end them at once."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._pending: list[bytes] = []
        self._closed = False
        self._scope: anyio.CancelScope | None = None
        self._pollable = True  # a regular file cannot be polled, and never blocks a read

    def close(self) -> None:
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            chunk = await self._read()
            if chunk is None:
                continue  # closed while waiting
            if not chunk:  # end of input
                self._closed = True
                if self._buffer:
                    self._pending.append(self._buffer)
                    self._buffer = b""
                continue
            *complete, self._buffer = (self._buffer + chunk).split(b"\n")
            self._pending.extend(line for line in complete if line.strip())
        return self._pending.pop(0).decode("utf-8", errors="replace")

    async def _read(self) -> bytes | None:
        with anyio.CancelScope() as self._scope:
            if self._pollable:
                try:
                    await anyio.wait_readable(self._fd)
                except OSError:  # EPERM: stdin is a regular file
                    self._pollable = False
            return os.read(self._fd, 1 << 16)
        return None


class _Ledger:
    """Which requests read from the client are not answered yet."""

    def __init__(self) -> None:
        self._open: set[str | int] = set()
        self._event = anyio.Event()

    async def answered_all(self) -> None:
        while self._open:
            await self._event.wait()

    def _note(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    def reading(self, stream: Any) -> Any:
        ledger = self

        class Reading(_Proxy):
            async def receive(self) -> object:
                item = await self._inner.receive()
                if isinstance(item, SessionMessage) and isinstance(item.message, mcp_types.JSONRPCRequest):
                    ledger._open.add(item.message.id)
                return item

            @property
            def last_context(self) -> object:
                return getattr(self._inner, "last_context", None)

            def __aiter__(self) -> Reading:
                return self

            async def __anext__(self) -> object:
                try:
                    return await self.receive()
                except anyio.EndOfStream:
                    raise StopAsyncIteration from None

        return Reading(stream)

    def writing(self, stream: Any) -> Any:
        ledger = self

        class Writing(_Proxy):
            async def send(self, item: object, /) -> None:
                await self._inner.send(item)
                if isinstance(item, SessionMessage) and isinstance(
                    item.message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError
                ):
                    ledger._open.discard(item.message.id)
                    ledger._note()

        return Writing(stream)


class _Proxy:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Proxy:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# -- HTTP -------------------------------------------------------------------------------------------------------


async def serve_uvicorn(config: uvicorn.Config, stopper: Stopper) -> None:
    """Run uvicorn until a signal: then the waits answer, and uvicorn shuts down gracefully."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the Stopper handles the signals (uvicorn's own re-raises them after a clean shutdown)

    server = Server(config)
    async with anyio.create_task_group() as tasks:

        async def stop_transport() -> None:
            server.should_exit = True

        tasks.start_soon(stopper.watch, stop_transport)
        await server.serve()
        tasks.cancel_scope.cancel()
