"""Debian's nginx in front of signoff replicas, for the tests: the shipped ``examples/nginx/signoff.conf`` with the
replicas' ports and a listening port filled in, run in the foreground with its own prefix, pid file, logs and
temporary folders in a test's folder (no system path, no privileged port).

The wrapping ``nginx.conf`` adds only what a test needs to see: an access log naming the replica that served each
request, and the same as an ``X-Signoff-Replica`` response header.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.integration.support import REPO, free_port, wait_for_port

SHIPPED = REPO / "examples" / "nginx" / "signoff.conf"
REPLICA_HEADER = "X-Signoff-Replica"

WRAPPER = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    log_format replica '$request_method $uri $status $upstream_addr';
    access_log {prefix}/access.log replica;
    add_header {header} $upstream_addr always;
    include {prefix}/signoff.conf;
}}
"""


def nginx_binary() -> str:
    """Debian's nginx; installed with apt-get when it is missing and apt exists (as CI does), else the test skips."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("nginx is not installed and there is no apt-get to install it: install nginx to run this test")
    apt = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], env=apt, capture_output=True, check=False)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx"], env=apt, capture_output=True, text=True, check=False
    )
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    assert found, f"`apt-get install -y nginx` did not install nginx ({done.returncode}):\n{done.stderr}"
    return found


def configured(shipped: str, replicas: Sequence[int], port: int) -> str:
    """The shipped config with every upstream listing ``127.0.0.1:<replica>`` (each server line's options kept)
    and the server listening on ``127.0.0.1:<port>``."""

    def upstream(match: re.Match[str]) -> str:
        body = match.group(2)
        servers = re.findall(r"^\s*server\s+\S+?(\s[^;]*)?;\s*$", body, re.MULTILINE)
        assert servers, f"no server line in upstream {match.group(1)}"
        options = servers[0] or ""
        listed = "\n".join(f"    server 127.0.0.1:{replica}{options};" for replica in replicas)
        lines: list[str] = []
        for line in body.splitlines():
            if not re.match(r"\s*server\s", line):
                lines.append(line)
            elif listed:  # the replicas where the first server line was; the other lines go
                lines.append(listed)
                listed = ""
        return "upstream {} {{{}\n}}".format(match.group(1), "\n".join(lines))

    text, count = re.subn(r"upstream\s+(\w+)\s*\{(.*?)\n\}", upstream, shipped, flags=re.DOTALL)
    assert count == 2, f"expected two upstreams in {SHIPPED}, found {count}"
    text, count = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{port};", text, flags=re.MULTILINE)
    assert count == 1, f"expected one listen line in {SHIPPED}, found {count}"
    return text


@dataclass(frozen=True, slots=True)
class Proxy:
    url: str  #: http://127.0.0.1:PORT
    access_log: Path  #: one line per request: method, path, status, the replica's address

    def served(self) -> list[tuple[str, str, str, str]]:
        """(method, path, status, replica address) for every request nginx logged so far."""
        rows = [line.split(" ", 3) for line in self.access_log.read_text().splitlines() if line]
        return [(m, p, s, a) for m, p, s, a in rows]


@asynccontextmanager
async def nginx(prefix: Path, replicas: Sequence[int]) -> AsyncIterator[Proxy]:
    """nginx in front of the replicas on ``replicas`` (ports on 127.0.0.1), until the block ends."""
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (prefix / "signoff.conf").write_text(configured(SHIPPED.read_text(), replicas, port))
    (prefix / "nginx.conf").write_text(WRAPPER.format(prefix=prefix, header=REPLICA_HEADER))
    (prefix / "access.log").touch()
    command = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"nginx -t refused the config:\n{checked.stderr}"
    log = prefix / "nginx.out"
    with log.open("wb") as out:
        proc = await anyio.open_process(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        async with proc:
            try:
                await wait_for_port(port, proc, prefix / "error.log")
                yield Proxy(f"http://127.0.0.1:{port}", prefix / "access.log")
            finally:
                with anyio.CancelScope(shield=True):
                    if proc.returncode is None:
                        proc.terminate()  # SIGTERM: nginx's fast shutdown
                        with anyio.move_on_after(10):
                            await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
