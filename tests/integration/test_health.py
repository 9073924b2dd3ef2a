"""``/healthz`` and ``/readyz`` on the HTTP transport, on SQLite and on PostgreSQL: up and ready on a current schema,
not ready (503, saying why) once a newer signoff has migrated the database."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from signoff.storage.migrations import available
from tests.integration.conftest import add_future_migration
from tests.integration.support import http_server

pytestmark = pytest.mark.slow


async def test_healthz_and_readyz_follow_the_database_schema(
    env: dict[str, str], database: str, tmp_path: Path
) -> None:
    latest = max(m.version for m in available())
    async with http_server({**env, "SIGNOFF_DB": database}, tmp_path / "serve.log") as url:
        base = url.removesuffix("/mcp")
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, dict[str, object]]:
                async with http.get(base + path) as response:
                    return response.status, await response.json()

            assert await get("/healthz") == (200, {"status": "up"})
            assert await get("/readyz") == (200, {"status": "ready", "schema": latest})

            add_future_migration(database)
            status, body = await get("/readyz")
            assert status == 503 and body["status"] == "not ready" and body["schema"] == 9999
            assert f"schema version 9999 and this server knows {latest}" in str(body["reason"])
            assert (await get("/healthz"))[0] == 200  # still up: only not to be sent calls
