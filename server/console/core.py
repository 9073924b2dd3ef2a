"""The console's shared parts: the service it works on, who may sign in, sessions, templates, responses."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from signoff.server.auth import ConfigTokenVerifier
from signoff.server.console import present
from signoff.server.console.security import COOKIE, foreign_origin, secured
from signoff.server.console.sessions import Attempts, Session, Sessions, SignInLinks
from signoff.storage import QueueEntry
from signoff.storage.audit import ChainReport
from signoff.storage.text import visible
from signoff.tools.access import Role
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelService

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["v"] = lambda value: visible(str(value)) if value is not None else ""
    return env


@dataclass(kw_only=True)
class Console:
    """One console: the approval service it shows (read when a page is asked: the MCP server's lifespan makes it),
    who may sign in (reviewer tokens, or one-time links for one local person), and its sessions."""

    service_of: Callable[[], ApprovalService | None]
    models_of: Callable[[], ModelService | None] = lambda: None  #: the model plane, for the Models pages
    #: the history page's audit check: the chain and every row it explains (``server.audit_check``); without it,
    #: the chain and the request and vote rows
    check_chain: Callable[[ApprovalService, ModelService | None], Awaitable[ChainReport]] | None = None
    verifier: ConfigTokenVerifier | None = None
    links: SignInLinks | None = None  #: loopback without tokens: sign in by a link printed on the terminal
    announce_link: Callable[[str], None] | None = None  #: prints a new link's path where the person can see it
    idle_minutes: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sessions: Sessions = field(init=False)
    attempts: Attempts = field(init=False)
    templates: Environment = field(default_factory=_environment)
    chain_check: object | None = field(default=None, init=False)  #: the history page's last audit check
    #: the queue (pending requests, as ``QueueEntry``), kept between changes and brought up to date by reading only
    #: the requests that changed since the audit log's ``_head`` (``pending``)
    _queue: dict[str, QueueEntry] = field(default_factory=dict, init=False)
    _head: int | None = field(default=None, init=False)
    _queue_store: object | None = field(default=None, init=False)  #: the store ``_queue`` was read from
    _queue_read: tuple[object, list[QueueEntry]] | None = field(default=None, init=False)  #: by (store, token)
    #: each queued request's row as last made (``queue_row``): the entry it was made of, its claimer then, the row
    _rows: dict[str, tuple[QueueEntry, str | None, dict[str, Any]]] = field(default_factory=dict, init=False)
    _pending_lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(idle_seconds=self.idle_minutes * 60, clock=self.clock)
        self.attempts = Attempts(clock=self.clock)

    @property
    def service(self) -> ApprovalService:
        service = self.service_of()
        if service is None:
            raise RuntimeError("the console was asked for a page before the server started")
        return service

    @property
    def models(self) -> ModelService | None:
        return self.models_of()

    @property
    def reviewer_tokens(self) -> bool:
        return self.verifier is not None and any(t.role is Role.REVIEWER for t in self.verifier.tokens)

    def session(self, request: Request, *, activity: bool = True) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), activity=activity)

    def signed_in(self, request: Request, *, activity: bool = True) -> Session | None:
        session = self.session(request, activity=activity)
        return session if session is not None and session.identity is not None else None

    async def posted(self, request: Request, what: str) -> tuple[Session, FormData] | Response:
        """The signed-in session and the fields of a form POST from the console's own page (its CSRF token, no
        foreign Origin), or the refusal to send: 401 not signed in, 403 "refused: ``what`` from the console's own
        page"."""
        fields = await request.form()
        session = self.signed_in(request)
        if session is None:
            return secured(Response("sign in first", status_code=401))
        csrf, origin = fields.get("csrf"), foreign_origin(request)
        if origin is not None or not session.csrf_ok(csrf if isinstance(csrf, str) else None):
            logger.warning("console %s refused: no CSRF token, or Origin %s", what, origin)
            return secured(Response(f"refused: {what} from the console's own page", status_code=403))
        return session, fields

    def page(self, name: str, status: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(name).render(**context)
        return secured(HTMLResponse(html, status_code=status))

    async def pending(self, token: object | None = None) -> list[QueueEntry]:
        """Every pending request, as the queue shows it. The console keeps the queue between calls and reads only
        the requests that changed since the last (``Store.pending_queue``). With ``token`` (the store's
        ``change_token``, taken before): the list read for that same token if there is one, so the live streams of
        every open page, woken by one change, read the queue once between them, not once each."""
        store = self.service.store
        if token is not None and self._queue_read is not None and self._queue_read[0] == (store, token):
            return self._queue_read[1]
        async with self._pending_lock:  # streams woken together: the first reads, the others take its list
            if token is not None and self._queue_read is not None and self._queue_read[0] == (store, token):
                return self._queue_read[1]
            if store is not self._queue_store:  # another store (a test's, a restarted server's): read it whole
                self._queue_store, self._head = store, None
            read = await store.pending_queue(self._head)
            if read.changed is None:
                self._queue = {entry.id: entry for entry in read.entries}
                self._rows.clear()
            else:
                for request_id in read.changed:
                    self._queue.pop(request_id, None)
                    self._rows.pop(request_id, None)
                self._queue.update((entry.id, entry) for entry in read.entries)
            self._head = read.head
            found = list(self._queue.values())
            self._queue_read = ((store, token), found) if token is not None else None
            return found

    def queue_row(self, entry: present.Queued, now: datetime) -> dict[str, Any]:
        """``present.queue_row``, made once per entry read and claimer: a change re-makes only its own rows."""
        if not isinstance(entry, QueueEntry):
            return present.queue_row(entry, now)
        claimer = entry.claim_at(now)
        made = self._rows.get(entry.id)
        if made is not None and made[0] is entry and made[1] == claimer:
            return made[2]
        row = present.queue_row(entry, now)
        self._rows[entry.id] = (entry, claimer, row)
        return row


def redirect(url: str) -> Response:
    return secured(RedirectResponse(url, status_code=303))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
