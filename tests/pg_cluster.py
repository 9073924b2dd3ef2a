"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temporary folder, a unix socket.

``initdb`` refuses to run as root, so as root (CI) the server runs as the ``postgres`` system user that Debian's
package creates (``runuser``); only the server binaries run as that user, never Python (the CI venv is private to
root). Without the binaries the tests that need PostgreSQL fail, saying how to install it: they never skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin or on PATH:"
    " install them with `apt-get install -y postgresql` (.ci/run does this), then run the tests again"
)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with ``initdb``, else the folder of ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class Cluster:
    root: Path  #: the temporary folder: data/ and the socket
    bin_dir: Path
    run_as: str | None  #: the system user the server runs as (None: this user)
    user: str = "signoff"  #: the database superuser the tests connect as
    _databases: int = 0

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, cwd="/")

    def start(self) -> None:
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self._run("pg_ctl", "-D", str(data), "-o", self._options(), "-w", "-l", str(self.root / "server.log"), "start")

    def _options(self) -> str:
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=off"
        return options + " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"

    def pause(self) -> None:
        """Stop the server (every connection drops, as in a failover); ``resume`` starts it at the same address.

        A fast shutdown, not an immediate one: the tests' cluster runs with ``synchronous_commit=off``, so a crash
        would lose the last commits, which a failover to a synchronous standby does not."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        data = self.root / "data"
        self._run("pg_ctl", "-D", str(data), "-o", self._options(), "-w", "-l", str(self.root / "server.log"), "start")

    def stop(self) -> None:
        try:
            with contextlib.suppress(subprocess.CalledProcessError):  # a test may have left it stopped (``pause``)
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_cluster() -> Cluster:
    """Start a cluster, or raise RuntimeError saying what is missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(INSTALL_HINT)
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "the tests run as root and initdb refuses root, but there is no `postgres` system user to run the"
                " server as: install Debian's postgresql package (`apt-get install -y postgresql`), which creates it"
            ) from None
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="signoff-pg-", dir="/tmp" if run_as else None))  # reachable by run_as
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(root=root, bin_dir=bin_dir, run_as=run_as)
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the throwaway PostgreSQL cluster did not start: {exc.stderr or exc}") from exc
    return cluster
