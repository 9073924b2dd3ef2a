"""Who is signed in to the console: server-side sessions, sign-in attempts per address, one-time sign-in links.

Everything here lives in the memory of one process (a restart signs everyone out); the clock is passed in."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]  #: seconds, monotonic

MAX_ANONYMOUS = 1000  #: sign-in forms handed out and not yet used; the oldest are forgotten first
ANONYMOUS_SECONDS = 600.0  #: how long a sign-in form stays usable


@dataclass(slots=True)
class Session:
    id: str
    csrf: str  #: sent back in every form and checked on every POST
    identity: str | None  #: None: a sign-in form was shown, nobody signed in yet
    expires_at: float  #: monotonic seconds; pushed back by every request while signed in

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf.encode(), presented.encode())


@dataclass(slots=True)
class Sessions:
    """Random session ids to identities, forgotten after ``idle_seconds`` without a request."""

    idle_seconds: float
    clock: Clock = time.monotonic
    _by_id: dict[str, Session] = field(default_factory=dict)

    def _new(self, identity: str | None, lifetime: float) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            identity=identity,
            expires_at=self.clock() + lifetime,
        )
        self._by_id[session.id] = session
        return session

    def anonymous(self) -> Session:
        """A session for a sign-in form, so the form can carry a CSRF token too."""
        self._prune()
        anonymous = [s for s in self._by_id.values() if s.identity is None]
        for stale in anonymous[: max(0, len(anonymous) - MAX_ANONYMOUS + 1)]:
            del self._by_id[stale.id]
        return self._new(None, ANONYMOUS_SECONDS)

    def sign_in(self, previous: Session | None, identity: str) -> Session:
        """A new session (never the form's: its id was shown to a signed-out browser) for ``identity``."""
        if previous is not None:
            self._by_id.pop(previous.id, None)
        return self._new(identity, self.idle_seconds)

    def get(self, session_id: str | None, *, activity: bool = True) -> Session | None:
        """The live session with this id, its idle time restarted if this is a person's ``activity`` (a live-update
        stream reconnecting is not); None if unknown or expired."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if session.expires_at <= now:
            del self._by_id[session.id]
            return None
        if session.identity is not None and activity:
            session.expires_at = now + self.idle_seconds
        return session

    def alive(self, session: Session) -> bool:
        """Whether the session still stands, without counting as activity (a live-update stream asks this)."""
        return self._by_id.get(session.id) is session and session.expires_at > self.clock()

    def end(self, session: Session) -> None:
        self._by_id.pop(session.id, None)

    def _prune(self) -> None:
        now = self.clock()
        for session in [s for s in self._by_id.values() if s.expires_at <= now]:
            del self._by_id[session.id]


@dataclass(slots=True)
class Attempts:
    """Failed sign-ins per client address: after ``limit`` in ``window`` seconds, that address waits. An IPv6
    address counts as its /64, which one host or home network holds whole (one guesser, however many addresses).
    ``may_record`` bounds how many refusals go into the audit chain per window from all addresses together."""

    limit: int = 5
    window: float = 60.0
    clock: Clock = time.monotonic
    recorded_limit: int = 60
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _recorded: deque[float] = field(default_factory=deque)

    def wait_seconds(self, client: str) -> float:
        """0 if ``client`` may try now, else how long until it may."""
        recent = self._recent(client)
        if len(recent) < self.limit:
            return 0.0
        return max(0.0, recent[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:  # many addresses: keep only those with recent failures
            for address in [a for a in self._failures if not self._recent(a)]:
                del self._failures[address]
        self._recent(client).append(self.clock())

    def may_record(self) -> bool:
        """Whether one more refusal may be written to the audit chain in this window (every refusal is logged)."""
        while self._recorded and self._recorded[0] <= self.clock() - self.window:
            self._recorded.popleft()
        if len(self._recorded) >= self.recorded_limit:
            return False
        self._recorded.append(self.clock())
        return True

    def _recent(self, client: str) -> deque[float]:
        recent = self._failures.setdefault(_counted_as(client), deque())
        while recent and recent[0] <= self.clock() - self.window:
            recent.popleft()
        return recent


def _counted_as(client: str) -> str:
    """The address a failed sign-in counts against: an IPv6 address's /64 network, any other as it is."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return client


@dataclass(slots=True)
class SignInLinks:
    """One-time sign-in links for a console on loopback without tokens: each key signs in once, as ``identity``."""

    identity: str
    _key: str | None = None

    def new_key(self) -> str:
        self._key = secrets.token_urlsafe(32)
        return self._key

    @property
    def unused(self) -> bool:
        return self._key is not None

    def redeem(self, presented: str) -> bool:
        """True, once, for the key last made; any other key (or a second use) is refused."""
        key = self._key
        if key is None or not hmac.compare_digest(key.encode(), presented.encode()):
            return False
        self._key = None
        return True
