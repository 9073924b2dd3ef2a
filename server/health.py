"""``GET /healthz`` and ``GET /readyz`` on the HTTP transport, for a load balancer or an orchestrator.

``/healthz``: the process is up and answering (200). ``/readyz``: it can serve calls, so send it traffic (200), or
not (503, with the reason): still starting or stopping, the database cannot be reached, or its schema is not the
version this signoff knows (a newer signoff migrated it; this replica should be replaced, not sent calls). Both are
open without a token, as probes are; they say nothing about requests, and the reasons name no database or host
(the server's log has the details).
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from signoff.storage import Store
from signoff.storage.errors import StorageError

logger = logging.getLogger(__name__)


@runtime_checkable
class Versioned(Protocol):
    """A store on a database with migrations (SQLite, PostgreSQL); a memory store has none."""

    async def schema(self) -> tuple[int, int]: ...


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "up"})


async def readyz(_: Request, store: Store | None) -> Response:
    if store is None:
        return _not_ready("the server is starting or stopping")
    if not isinstance(store, Versioned):
        return JSONResponse({"status": "ready"})
    try:
        found, known = await store.schema()
    except (StorageError, OSError) as exc:
        logger.warning("readyz: the database cannot be reached: %s", exc)
        return _not_ready("the database cannot be reached")
    if found != known:
        return _not_ready(
            f"the database has schema version {found} and this server knows {known}: run `signoff db upgrade` with"
            " this version, or replace this server with the version that migrated it",
            schema=found,
        )
    return JSONResponse({"status": "ready", "schema": found})


def _not_ready(reason: str, **extra: int) -> Response:
    return JSONResponse({"status": "not ready", "reason": reason, **extra}, status_code=503)
