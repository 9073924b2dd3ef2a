"""Signing in and out: a reviewer token (never an agent's), or on loopback without tokens a one-time link."""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import Response

from signoff.server.console.core import Console, client_address, redirect
from signoff.server.console.security import clear_session_cookie, foreign_origin, secured, set_session_cookie
from signoff.server.console.sessions import Session
from signoff.storage import EventKind, NewEvent
from signoff.tools.access import Role

logger = logging.getLogger(__name__)

LINK_PATH = "/sign-in/link"
UNKNOWN = "unknown"  #: the name a refused sign-in is recorded under when its token is nobody's


async def form(console: Console, request: Request) -> Response:
    if console.signed_in(request) is not None:
        return redirect("/")
    return _form(console, request, console.sessions.anonymous())


def _form(console: Console, request: Request, session: Session, error: str = "", status: int = 200) -> Response:
    if console.links is not None and not console.links.unused and console.announce_link is not None:
        console.announce_link(f"{LINK_PATH}?key={console.links.new_key()}")
    response = console.page(
        "signin.html",
        status,
        csrf=session.csrf,
        error=error,
        tokens=console.reviewer_tokens,
        local=console.links is not None,
    )
    set_session_cookie(response, request, session.id, max_age=None)
    return response


async def sign_in(console: Console, request: Request) -> Response:
    client = client_address(request)
    fields = await request.form()
    session = console.session(request)
    if foreign_origin(request) is not None or session is None or not session.csrf_ok(_text(fields.get("csrf"))):
        logger.warning("console sign-in refused: no valid sign-in form", extra={"client": client})
        return _form(console, request, console.sessions.anonymous(), "This sign-in form expired. Try again.", 403)
    token = (_text(fields.get("token")) or "").strip()
    found = console.verifier.lookup(token) if console.verifier is not None and token else None
    if found is not None and Role.REVIEWER.value in found.scopes:
        # a reviewer's token signs in even while its address is over the limit: the limit is for guesses, and the
        # people behind one proxy or NAT share an address, so one guesser must not lock them all out
        return await _start(console, request, session, found.client_id, "token")
    wait = console.attempts.wait_seconds(client)
    if wait > 0:
        logger.warning("console sign-in refused: too many attempts", extra={"client": client})
        message = f"Too many failed sign-ins from your address. Wait {math.ceil(wait)} seconds and try again."
        return _form(console, request, session, message, 429)
    # an unknown token, or an agent's: a guess, counted against the address
    console.attempts.failed(client)
    why = "unknown token" if found is None else f"the {found.scopes[0]} token of {found.client_id}"
    logger.warning("console sign-in refused: %s", why, extra={"client": client})
    who = found.client_id if found is not None else UNKNOWN
    if console.attempts.may_record():
        await audit(console, EventKind.CONSOLE_SIGN_IN_REFUSED, who, address=client, reason=why, via="token")
    message = (
        "That token is not a reviewer's token. Agents' tokens cannot sign in."
        if found is not None
        else "That token is not valid. Paste a reviewer token from `signoff token new --role reviewer`."
    )
    return _form(console, request, session, message, 403 if found is not None else 401)


async def link(console: Console, request: Request) -> Response:
    client = client_address(request)
    if console.links is None:  # this console issues no links: nothing to redeem, and nothing worth recording
        message = "This signoff issues no sign-in links: sign in with a reviewer token."
        return _form(console, request, console.sessions.anonymous(), message, 404)
    wait = console.attempts.wait_seconds(client)
    key = request.query_params.get("key", "")
    if wait > 0 or not console.links.redeem(key):
        console.attempts.failed(client)
        logger.warning("console sign-in link refused", extra={"client": client})
        # Not recorded: a refusal by the rate limit (the limit bounds what the chain must hold), and a link another
        # site made the browser load (an <img> on any page would otherwise write to the chain for every visitor).
        if wait <= 0 and request.headers.get("sec-fetch-site") != "cross-site" and console.attempts.may_record():
            why = "a used or unknown sign-in link"
            await audit(console, EventKind.CONSOLE_SIGN_IN_REFUSED, UNKNOWN, address=client, reason=why, via="link")
        message = "That sign-in link was already used or is not valid. A new one is printed where signoff runs."
        return _form(console, request, console.sessions.anonymous(), message, 403)
    return await _start(console, request, console.session(request), console.links.identity, "link")


async def _start(console: Console, request: Request, previous: Session | None, identity: str, via: str) -> Response:
    client = client_address(request)
    await audit(console, EventKind.CONSOLE_SIGNED_IN, identity, address=client, via=via)
    session = console.sessions.sign_in(previous, identity)
    logger.info("console sign-in: %s", identity, extra={"reviewer": identity, "client": client})
    response = redirect("/")
    set_session_cookie(response, request, session.id, max_age=None)
    return response


async def sign_out(console: Console, request: Request) -> Response:
    fields = await request.form()
    session = console.session(request)
    if foreign_origin(request) is not None or session is None or not session.csrf_ok(_text(fields.get("csrf"))):
        return secured(Response("refused: sign out from the console's own page", status_code=403))
    console.sessions.end(session)
    if session.identity is not None:
        logger.info("console sign-out: %s", session.identity, extra={"reviewer": session.identity})
        await audit(console, EventKind.CONSOLE_SIGNED_OUT, session.identity, address=client_address(request))
    response = redirect("/sign-in")
    clear_session_cookie(response, request)
    return response


async def audit(console: Console, kind: EventKind, name: str, **data: str) -> None:
    """Chain a console event under ``console:<name>`` (the reviewer, or the refused token's owner); never a token.
    Refusals are recorded only when they count against the sign-in rate limit, and at most
    ``Attempts.recorded_limit`` a minute from all addresses together, which so bounds them."""
    event = NewEvent(kind=kind, request_id=f"console:{name}", at=console.service.clock.now(), data=data)
    await console.service.store.append_event(event)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
