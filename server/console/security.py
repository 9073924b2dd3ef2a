"""The console's HTTP hygiene: security headers on every response, the session cookie, and the checks every
state-changing POST passes (a CSRF token from the session, and no other site's Origin)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "signoff_console"

#: No inline script or style, nothing from elsewhere, no framing, forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on the page's own form posts,
    # and the Origin check below could no longer tell them from a sandboxed frame's. Nothing leaves the site.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def secured(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_session_cookie(response: Response, request: Request, session_id: str, max_age: int | None) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over https."""
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def foreign_origin(request: Request) -> str | None:
    """The Origin of a POST that came from another site (or from an opaque origin), else None. A POST without
    Origin (a non-browser client) still needs the session cookie and its CSRF token."""
    origin = request.headers.get("origin")
    if origin is None or origin == own_origin(request):
        return None
    return origin
