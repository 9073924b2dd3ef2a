"""The reviewers' web console: sign in, see the queue live, read a request in full, approve or reject it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff.server.console import history, models, pages, signin
from signoff.server.console.core import Console
from signoff.server.console.sessions import SignInLinks

__all__ = ["Console", "SignInLinks", "routes"]

Handler = Callable[[Console, Request], Awaitable[Response]]

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("/", "GET", pages.queue),
    ("/events", "GET", pages.events),
    ("/requests/{request_id}", "GET", pages.show),
    ("/requests/{request_id}/events", "GET", pages.request_stream),
    ("/requests/{request_id}/vote", "POST", pages.vote),
    ("/requests/{request_id}/claim", "POST", pages.claim),
    ("/history", "GET", history.page),
    ("/history/export.{kind}", "GET", history.export),
    ("/history/verify", "POST", history.verify),
    ("/models", "GET", models.index),
    ("/models/{name}", "GET", models.show),
    ("/sign-in", "GET", signin.form),
    ("/sign-in", "POST", signin.sign_in),
    (signin.LINK_PATH, "GET", signin.link),
    ("/sign-out", "POST", signin.sign_out),
    ("/static/{name}", "GET", pages.static),
)


def routes(console: Console) -> list[Route]:
    """The console's routes, to serve beside /mcp and /api or alone (``signoff console``)."""

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(console, request)

        return endpoint

    return [Route(path, bind(handler), methods=[method]) for path, method, handler in ROUTES]
