"""A new user's first hour, as the README tells it: the quick start run exactly as written (its agent script is read
from the README), and an HTTP server reachable beyond loopback under the names people actually use.

The other first-hour paths have their own suites: every CLI command against every kind of bad database
(test_cli_errors.py), SIGINT/SIGTERM on both transports with an SDK client and a raw HTTP client waiting
(test_shutdown.py), the reviewer API (test_review_api.py), Slack's 429 Retry-After per notifier
(test_notify_delivery.py).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
from pathlib import Path

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.integration.support import REPO, http_server, signoff
from tests.security.test_files_and_http import status_line

README = (REPO / "README.md").read_text()


def quick_start() -> tuple[str, str]:
    """The README's command that starts the server, and the agent script of "Try it in five minutes"."""
    serve = next(line for line in README.splitlines() if "signoff serve --transport http" in line and "pip" in line)
    section = README.split("## Try it in five minutes", 1)[1]
    script = re.search(r"\.venv/bin/python - <<'EOF'\n(.*?)\nEOF\n", section, re.S)
    assert script, "the README's quick start has no agent script"
    return serve, script.group(1)


def fresh_user_env(home: Path) -> dict[str, str]:
    """A user with a fresh HOME and no SIGNOFF_* settings: the database goes where the README says."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SIGNOFF_", "XDG_"))}
    env["HOME"] = str(home)
    return env


async def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    serve, script = quick_start()
    assert serve.endswith(".venv/bin/signoff serve --transport http"), serve
    assert "http://127.0.0.1:8765/mcp" in script  # the README's default port; this test runs on a free one
    env = fresh_user_env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    with anyio.fail_after(120):
        async with http_server(env, tmp_path / "server.log") as url:
            script = script.replace("http://127.0.0.1:8765/mcp", url)
            unbuffered = {**env, "PYTHONUNBUFFERED": "1"}  # as in a terminal: each line as it is printed
            agent = await anyio.open_process([sys.executable, "-c", script], env=unbuffered, cwd=str(tmp_path))
            async with agent:
                assert agent.stdout is not None
                lines = BufferedByteReceiveStream(agent.stdout)
                printed = [(await lines.receive_until(b"\n", 10_000)).decode() for _ in range(3)]
                assert printed[0].startswith("confident: approved"), printed
                assert printed[1].startswith("unsure: pending"), printed
                command = shlex.split(printed[2].strip())
                assert command[:3] == [".venv/bin/signoff", "review", "approve"], printed
                listed = await signoff(env, "review", "list")
                assert command[3] in listed.stdout, listed
                approved = await signoff(env, *command[1:])
                assert approved.returncode == 0, approved
                verdict = (await lines.receive_until(b"\n", 10_000)).decode()
                assert await agent.wait() == 0
    assert verdict.startswith("verdict: Approved by alice: go ahead with exactly this action and payload"), verdict
    history = await signoff(env, "history")
    audit = await signoff(env, "audit", "verify")
    assert history.returncode == 0 and command[3] in history.stdout, history
    assert audit.returncode == 0 and audit.stdout.startswith("ok: "), audit
    assert (tmp_path / "home" / ".local" / "share" / "signoff" / "signoff.db").is_file()  # the README's default


async def test_beyond_loopback_the_machines_names_are_accepted_and_a_421_says_how_to_add_one(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), "SIGNOFF_DB": str(tmp_path / "signoff.db")}
    options = ("--allow-unauthenticated", "--allowed-host", "approvals.example.com:443")
    with anyio.fail_after(60):
        # 127.0.0.2 is this machine's loopback interface, but not a loopback *name*: signoff treats it as beyond
        async with http_server(env, tmp_path / "server.log", *options, host="127.0.0.2") as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])

            async def answer(host: str) -> bytes:
                request = f"GET /api/requests HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                stream = await anyio.connect_tcp("127.0.0.2", port)
                async with stream:
                    await stream.send(request.encode())
                    received = b""
                    try:
                        while True:
                            received += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return received

            names = [
                f"127.0.0.2:{port}",
                f"{socket.gethostname()}:{port}",
                f"localhost:{port}",
                "approvals.example.com:443",
            ]
            accepted = {name: status_line(await answer(name)) for name in names}
            refused = await answer(f"attacker.example:{port}")
    assert all(not line.endswith("421 Misdirected Request") for line in accepted.values()), accepted
    assert status_line(refused) == "HTTP/1.1 421 Misdirected Request", refused
    body = refused.split(b"\r\n\r\n", 1)[1].decode()
    assert "--allowed-host NAME:PORT" in body and f"{socket.gethostname()}:{port}" in body, body
    log = (tmp_path / "server.log").read_text()
    assert "SERVING ON 127.0.0.2 WITHOUT AUTHENTICATION" in log, log  # asked for loudly, and said loudly
