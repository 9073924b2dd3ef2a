"""Findings 10, 11 and 13: private files, an HTTP transport that sheds idle, slow and foreign clients, signed
webhook delivery ids, and storage failures told in one sentence (nothing approved)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from mcp import Client, StdioServerParameters

from signoff.notifiers import WebhookNotifier
from signoff.notifiers.webhook import verify
from signoff.server.app import build_server
from signoff.server.auth import new_token
from signoff.server.config import Settings
from signoff.server.http_guard import RateLimitedAccept
from signoff.server.workers import deliver_due
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import load_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.integration.support import (
    REPO,
    SIGNOFF,
    ask,
    base_env,
    free_port,
    http_server,
    signoff,
    stdio_params,
    wait_for_port,
    webhook_receiver,
)

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- 10. files ------------------------------------------------------------------------------------------------


async def test_database_wal_shm_and_receipt_key_are_private_after_a_real_start(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    env = base_env(db)
    old = os.umask(0o022)  # the usual umask: what SQLite and open() would otherwise give is 0644
    try:
        with anyio.fail_after(60):
            async with http_server(env, tmp_path / "server.log") as url, Client(url) as client:
                assert (await ask(client, confidence=0.2))["status"] == "pending"
                files = [db, db.with_name("signoff.db-wal"), db.with_name("signoff.db-shm")]
                files.append(db.with_name("signoff.db.receipt-key"))
                assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o600) for f in files}
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o666, 0o644, 0o640, 0o620], ids=oct)
async def test_a_planted_receipt_key_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    db = tmp_path / "signoff.db"
    key = db.with_name("signoff.db.receipt-key")
    key.write_text("attacker-chosen-key-" * 4)
    key.chmod(mode)
    ran = await signoff(base_env(db), "serve")
    assert ran.returncode == 1, ran
    assert "chmod 600" in ran.stderr and "delete it" in ran.stderr, ran
    assert "Traceback" not in ran.stderr, ran
    assert key.read_text() == "attacker-chosen-key-" * 4  # left for the operator to look at


async def test_a_short_receipt_key_is_refused(tmp_path: Path) -> None:
    ran = await signoff(base_env(tmp_path / "signoff.db", SIGNOFF_RECEIPT_KEY="s3cret"), "history")
    assert ran.returncode == 1, ran
    assert ran.stderr.strip() == ran.stderr.strip().splitlines()[0], ran
    assert "SIGNOFF_RECEIPT_KEY is 6 bytes; use at least 32" in ran.stderr, ran


# -- 11. HTTP -------------------------------------------------------------------------------------------------


async def raw_http(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything the server answers until it closes the connection."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(request)
        answer = b""
        while True:
            try:
                answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return answer


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("sent", [b"", b"GET /api/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "])
async def test_an_idle_or_slow_connection_is_closed_after_the_request_timeout(tmp_path: Path, sent: bytes) -> None:
    env = base_env(tmp_path / "signoff.db", SIGNOFF_HTTP_REQUEST_TIMEOUT="0.5")
    with anyio.fail_after(60):
        async with http_server(env, tmp_path / "server.log") as url:
            assert await raw_http(port_of(url), sent) == b""  # closed by the server, with nothing said


async def test_beyond_the_connection_limit_requests_get_503(tmp_path: Path) -> None:
    env = base_env(tmp_path / "signoff.db", SIGNOFF_HTTP_MAX_CONNECTIONS="2", SIGNOFF_HTTP_REQUEST_TIMEOUT="60")
    with anyio.fail_after(60):
        async with http_server(env, tmp_path / "server.log") as url:
            port = port_of(url)
            get = f"GET /api/requests HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
            assert status_line(await raw_http(port, get)) != "HTTP/1.1 503 Service Unavailable"
            held = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
            try:
                assert status_line(await raw_http(port, get)) == "HTTP/1.1 503 Service Unavailable"
            finally:
                for stream in held:
                    await stream.aclose()


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/requests"), ("POST", "/slack/interactions"), ("POST", "/mcp")]
)
async def test_a_foreign_host_header_is_refused_on_every_route(tmp_path: Path, method: str, path: str) -> None:
    env = base_env(tmp_path / "signoff.db")
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
    with anyio.fail_after(60):
        async with http_server(env, tmp_path / "server.log") as url:
            port = port_of(url)

            def request(host: str) -> bytes:
                head = (
                    f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                )
                return head.encode() + body

            foreign = await raw_http(port, request("attacker.example:80"))
            own = await raw_http(port, request(f"127.0.0.1:{port}"))
    assert status_line(foreign) == "HTTP/1.1 421 Misdirected Request", foreign
    assert status_line(own) != "HTTP/1.1 421 Misdirected Request", own


async def test_the_console_alone_beyond_loopback_refuses_a_foreign_host_as_serve_does(tmp_path: Path) -> None:
    """``signoff console --host 0.0.0.0`` checked no ``Host`` at all: a page of another site, its name pointed at
    this address (DNS rebinding), could talk to it. It accepts what ``signoff serve`` accepts (review R3)."""
    _, digest = new_token()
    config = tmp_path / "signoff.toml"
    config.write_text(f'[[auth.tokens]]\nidentity = "alice"\nrole = "reviewer"\nsha256 = "{digest}"\n')
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(config))
    assert (await signoff(env, "init")).returncode == 0
    port, log = free_port(), tmp_path / "console.log"
    command = [
        str(SIGNOFF),
        "console",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--allowed-host",
        f"ops.example:{port}",
    ]
    with anyio.fail_after(60), log.open("wb") as out:
        async with await anyio.open_process(command, env=env, stdout=out, stderr=out, cwd=str(REPO)) as proc:
            try:
                await wait_for_port(port, proc, log)

                async def sign_in_page(host: str) -> str:
                    get = f"GET /sign-in HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
                    return status_line(await raw_http(port, get))

                foreign = await sign_in_page(f"attacker.example:{port}")
                own, extra = await sign_in_page(f"127.0.0.1:{port}"), await sign_in_page(f"ops.example:{port}")
            finally:
                proc.terminate()
    assert foreign == "HTTP/1.1 421 Misdirected Request", foreign
    assert own == extra == "HTTP/1.1 200 OK", (own, extra)


ESCALATING_POLICY = """
[[rules]]
name = "everything waits"
action = "*"
outcome = "review"
escalate_after_seconds = 60
escalate_to = "S0ONCALL"
"""


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    async with webhook_receiver(hook) as url:
        yield url, received


async def test_an_escalation_has_its_own_signed_webhook_delivery_id(tmp_path: Path) -> None:
    (config := tmp_path / "policy.toml").write_text(ESCALATING_POLICY)
    store, clock = MemoryStore(), FakeClock()
    service = ApprovalService(store, Policy(load_policy_config(config)), clock)
    async with receiver() as (url, received):
        notifier = WebhookNotifier(url, "whsec-test")
        request = await service.request_approval(Draft(action="deploy.prod", summary="ship", payload={}))
        await deliver_due(service, notifier)
        clock.advance(61)
        assert await service.escalate_due() == 1
        await deliver_due(service, notifier)
    [(_first, first_headers), (second, second_headers)] = received
    assert json.loads(second)["request"]["escalated_at"] is not None
    ids = [h["X-Signoff-Delivery"] for h in (first_headers, second_headers)]
    assert ids[0] != ids[1], "a receiver that drops repeats would drop the escalation"
    assert all(i.startswith(f"{request.id}:") for i in ids)
    at, signature = second_headers["X-Signoff-Timestamp"], second_headers["X-Signoff-Signature"]
    assert verify("whsec-test", at, ids[1], second, signature)
    assert not verify("whsec-test", at, ids[0], second, signature), "the delivery id is not covered by the signature"


# -- 13. errors -----------------------------------------------------------------------------------------------


async def test_a_nested_cursor_is_a_clear_tool_error(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "unused.db")
    nested = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
    async with Client(build_server(settings, store=MemoryStore())) as client:
        result = await client.call_tool("list_requests", {"cursor": nested})
    assert result.is_error
    assert "cursor is not one this server issued" in result.content[0].text  # type: ignore[union-attr]


def full_disk_params(env: dict[str, str]) -> StdioServerParameters:
    """``signoff serve`` on stdio whose writes cannot grow the database (see tests/security/full_disk.py)."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "tests.security.full_disk", "serve"], env=env, cwd=str(REPO)
    )


async def test_a_full_database_is_one_sentence_for_agents_and_one_line_for_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    env = base_env(db)
    big = {"amount": 120, "invoice": "x" * 40_000}  # needs new pages: the database must grow
    with anyio.fail_after(90):
        async with Client(stdio_params(env)) as client:
            pending = (await ask(client, confidence=0.2))["request_id"]
        async with Client(full_disk_params(env)) as client:
            refused = await client.call_tool(
                "request_approval", {"action": "payments.transfer", "summary": "pay", "payload": big, "confidence": 1}
            )
        history = await signoff(env, "history", "--json")
        cli = await anyio.run_process(  # a new database on a full disk: its first write fails
            [sys.executable, "-m", "tests.security.full_disk", "init"],
            env=base_env(tmp_path / "new.db"),
            cwd=str(REPO),
            check=False,
        )
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert text.endswith(
        "The database's disk is full: nothing was saved and nothing was approved; free disk space, then try again."
    ), text
    stderr = cli.stderr.decode()
    assert cli.returncode == 1, stderr
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith("error: The database's disk is full"), stderr
    assert [r["request_id"] for r in history.json()] == [pending], history  # nothing stored, nothing approved


async def test_a_truncated_database_is_reported_damaged_not_locked(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    env = base_env(db)
    with anyio.fail_after(90):
        async with Client(stdio_params(env)) as client:
            request_id = (await ask(client, confidence=0.2))["request_id"]
            os.truncate(db, 0)  # under the running server
            shown = await signoff(env, "review", "show", request_id)
            os.truncate(db, 4096)
            again = await signoff(env, "history")
    for ran in (shown, again):
        assert ran.returncode == 1, ran
        assert ran.stderr.strip().splitlines() == [ran.stderr.strip()], ran
        assert "damaged" in ran.stderr and "locked" not in ran.stderr, ran


def test_the_accept_error_log_line_is_let_through_once_per_interval_with_a_count() -> None:
    now = [0.0]
    limiter = RateLimitedAccept(interval=60, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        error = OSError(24, "Too many open files")
        text = "socket.accept() out of system resource\nsocket: <socket>"
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, text, None, (OSError, error, None))

    first = record()
    assert limiter.filter(first) and first.exc_info is None and "Too many open files" in first.getMessage()
    assert [limiter.filter(record()) for _ in range(1000)] == [False] * 1000
    now[0] = 61.0
    later = record()
    assert limiter.filter(later) and "1000 more like this" in later.getMessage()
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "something else", None, None)
    assert limiter.filter(other)
