"""Bearer tokens on the HTTP transport: each token is an identity with a role (agent, reviewer, models or metrics)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from mcp.server.auth.provider import AccessToken, TokenVerifier
from starlette.requests import Request

from signoff.tools.access import Role, Token

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and the SHA-256 to put in the config file."""
    token = "so_" + secrets.token_urlsafe(32)
    return token, digest(token)


class ConfigTokenVerifier(TokenVerifier):
    """Tokens from the config file, which holds only their SHA-256. The role gives the token's scopes."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tuple(tokens)

    async def verify_token(self, token: str) -> AccessToken | None:
        return self.lookup(token)

    def lookup(self, token: str) -> AccessToken | None:
        presented = digest(token)
        match = None
        for entry in self.tokens:  # compare against every entry, in constant time each
            if hmac.compare_digest(entry.sha256, presented):
                match = entry
        if match is None:
            return None
        return AccessToken(
            token=token, client_id=match.identity, subject=match.identity, scopes=list(match.role.scopes)
        )


def bearer_identity(request: Request, verifier: ConfigTokenVerifier | None, role: Role) -> tuple[int, str]:
    """For routes outside MCP: ``(200, identity)``, or ``(401 | 403, why)``."""
    if verifier is None:
        return 403, "this endpoint needs [[auth.tokens]] in the config file"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    found = verifier.lookup(token) if scheme.lower() == "bearer" and token else None
    if found is None:
        return 401, "send a valid token: Authorization: Bearer <token>"
    if role.value not in found.scopes:
        return 403, f"this needs a {role} token; {found.client_id} has a {found.scopes[0]} token"
    return 200, found.client_id
