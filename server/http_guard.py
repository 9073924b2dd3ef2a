"""What keeps the HTTP transport up under idle, slow or foreign clients.

- ``TimedH11Protocol``: uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but has no deadline
  for receiving a request: a connection that sends nothing, or trickles its headers a byte at a time, is held
  forever, and ASGI middleware never sees it (it runs once the request is parsed). This protocol closes a
  connection that has not sent a whole request within ``request_timeout`` of opening, or of the request's first
  byte. Once a request is received, the deadline is off: a tool call that waits for a human is not cut short.
- ``HostOriginGuard``: the DNS-rebinding check (Host and Origin headers) the MCP SDK applies to ``/mcp`` only,
  applied to every route (``/api/…``, ``/slack/…``) with the same allowed hosts and origins.
- ``RateLimitedAccept``: when the process runs out of file descriptors, asyncio logs "socket.accept() out of
  system resource" with a traceback on every retry (97 MB in 35 s); this filter lets one through per interval.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import h11
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from signoff.server.auth import LOOPBACK_HOSTS

logger = logging.getLogger(__name__)


def timed_protocol(request_timeout: float, idle_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for receiving each request, and ``idle_timeout`` (seconds, not
    uvicorn's whole seconds) between requests."""

    class TimedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = idle_timeout  # type: ignore[assignment]  # call_later takes float seconds

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first byte of a new request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
                self._disarm()  # received whole (or the connection is done)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                logger.debug("closing a connection that sent no whole request within %gs", request_timeout)
                self.transport.close()

    return TimedH11Protocol


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  #: bind addresses that mean "every interface"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(host: str, port: int, extra: Sequence[str] = ()) -> TransportSecuritySettings:
    """The ``Host`` (and ``Origin``) values an HTTP server bound to ``host:port`` accepts: on loopback, the loopback
    names with any port (what the MCP SDK allows there); beyond, the bind address (unless it is a wildcard), this
    machine's host name and the loopback names, each with the port. ``extra`` (``--allowed-host``) adds to these."""
    if host in LOOPBACK_HOSTS:
        hosts = [f"{name}:*" for name in LOOPBACK_NAMES]
    else:
        names = [] if host in WILDCARD_HOSTS else [f"[{host}]" if ":" in host else host]
        names += _machine_names()
        names += LOOPBACK_NAMES
        hosts = [f"{name}:{port}" for name in dict.fromkeys(names)]
    hosts += [h for h in extra if h not in hosts]
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def _machine_names() -> list[str]:
    """The host name, and its first label when it is a dotted name (no DNS lookup: start-up must not wait on it)."""
    name = socket.gethostname().strip().lower()
    return [n for n in dict.fromkeys([name, name.split(".")[0]]) if n]


def effective_security(security: TransportSecuritySettings | None, host: str) -> TransportSecuritySettings:
    """The Host/Origin rules the SDK applies to ``/mcp``: the given ones, else on loopback the SDK's own."""
    if security is not None:
        return security
    if host in LOOPBACK_HOSTS:
        return allowed_hosts(host, 0)
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _allowed(value: str, patterns: list[str]) -> bool:
    """An exact match, or ``base:*`` matching ``base:<any port>`` (the SDK's rules)."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


class HostOriginGuard:
    """Refuse every HTTP request whose Host (421) or Origin (403) is not allowed, whatever the route."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.security.enable_dns_rebinding_protection:
            headers = Headers(scope=scope)
            host, origin = headers.get("host"), headers.get("origin")
            refusal = None
            if not host or not _allowed(host, self.security.allowed_hosts):
                refusal = PlainTextResponse(_host_refusal(host, self.security.allowed_hosts), status_code=421)
            elif origin and not _allowed(origin, self.security.allowed_origins):
                refusal = PlainTextResponse("Invalid Origin header", status_code=403)
            if refusal is not None:
                if scope["type"] == "http":
                    await refusal(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def _host_refusal(host: str | None, allowed: list[str]) -> str:
    shown = repr(host[:100]) if host else "(none)"
    return (
        f"Invalid Host header {shown}: this signoff server answers to {', '.join(allowed)}. To reach it under"
        " another name, start it with --allowed-host NAME:PORT (repeat it for each name)."
    )


class RateLimitedAccept(logging.Filter):
    """Let one "socket.accept() out of system resource" record through per ``interval`` seconds, without its
    traceback, counting the ones held back since; every other record passes unchanged."""

    NEEDLE = "socket.accept() out of system resource"

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.NEEDLE not in str(record.msg):
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self._held += 1
            return False
        cause = record.exc_info[1] if record.exc_info else None
        held, self._held, self._last = self._held, 0, now
        record.msg = (
            f"{self.NEEDLE} ({cause or 'no error given'}): raise the open-file limit (ulimit -n) or lower "
            f"SIGNOFF_HTTP_MAX_CONNECTIONS; {held} more like this in the last {self.interval:g}s were not logged"
        )
        record.args = None
        record.exc_info = record.exc_text = None
        return True
