"""Every CLI command, run as a user runs it, against every way its database can be wrong: one clear line on stderr
and a non-zero exit, never a traceback; or success where the command legitimately works (a read-only file for the
commands that only read, a missing file for the two that create one, anything for the commands that use no database).

The commands come from the parser itself, so a new command is covered here as soon as it exists (and fails until
``ARGS`` says how to call it)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from signoff.server.cli import READ_ONLY, build_parser
from signoff.storage.approvals.sqlite import SqliteStore
from tests.factories import add
from tests.integration.support import REPO, SIGNOFF, Ran, base_env

KNOWN = "req_errorcase0001"
ARGS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("serve",): (),
    ("init",): (),
    ("db", "upgrade"): (),
    ("db", "copy"): ("--from", "signoff.db", "--to", "postgresql://…"),  # not below: see NOT_ON_SIGNOFF_DB
    ("console",): ("--port", "0"),  # every case below is an error: it never gets to serving
    ("review", "list"): (),
    ("review", "show"): (KNOWN,),
    ("review", "approve"): (KNOWN, "--as", "alice"),
    ("review", "reject"): (KNOWN, "--as", "alice", "--comment", "wrong account"),
    ("review", "claim"): (KNOWN, "--as", "alice"),
    ("review", "release"): (KNOWN, "--as", "alice"),
    ("history",): (),
    ("stats",): (),
    ("audit", "verify"): (),
    ("token", "new"): ("--identity", "billing-bot", "--role", "agent"),
    ("outbox", "list"): (),
    ("outbox", "retry"): ("--all-dead",),
    ("fairness",): (),
    ("policy", "check"): ("signoff.example.toml",),
    ("policy", "test"): ("signoff.example.toml",),
    ("policy", "replay"): ("signoff.example.toml",),
    ("slack", "check"): (),
    ("slack", "manifest"): (),
    ("alerts",): (),
    ("export", "training-data"): ("--format", "csv"),  # a header even with nothing decided
    ("report",): (),
}
CREATE = {("serve",), ("init",), ("db", "upgrade")}  #: the only commands that may create a database
CASES = ("missing", "read-only", "directory", "not-a-database", "unknown-id")


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = command_paths(sub, (*prefix, name))
                paths += nested or [(*prefix, name)]
    return paths


COMMANDS = command_paths(build_parser())
#: commands whose databases are their own options, not SIGNOFF_DB: their bad databases are tested beside them
#: (db copy: a missing or outdated source, a target with data, in tests/integration/test_pg_cli.py)
NOT_ON_SIGNOFF_DB = {("db", "copy")}
#: every command with every case, but "unknown-id" only for the commands that take a request id
PAIRS = [
    (c, case)
    for c in COMMANDS
    if c not in NOT_ON_SIGNOFF_DB
    for case in CASES
    if case != "unknown-id" or KNOWN in ARGS.get(c, (KNOWN,))
]


def uses_db(command: tuple[str, ...]) -> bool:
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return any("--db" in a.option_strings for a in parser._actions)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the test makes read-only, made writable again and removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="signoff-cli-"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


async def database_with_a_request(path: Path) -> None:
    store = await SqliteStore.open(path)
    try:
        await add(store, id=KNOWN)
    finally:
        await store.close()


def as_reader(path: Path) -> list[str]:
    """Make ``path`` readable but not writable for the user the command runs as; the command's prefix."""
    path.chmod(0o444)
    path.parent.chmod(0o555)
    if os.geteuid() == 0:
        # Root writes whatever the mode says, unless it runs without capabilities: then the owner's bits apply to it
        # too. (Dropping to another user instead would need the virtual environment readable by that user.)
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    return []


async def run(prefix: list[str], env: dict[str, str], *args: str) -> Ran:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [*prefix, str(SIGNOFF), *args], env=env, check=False, stdin=subprocess.DEVNULL, cwd=str(REPO)
        )
    return Ran(args, done.returncode, done.stdout.decode(), done.stderr.decode())


def assert_one_error_line(ran: Ran, *words: str) -> None:
    assert ran.returncode != 0, ran
    assert "Traceback" not in ran.stderr and "Traceback" not in ran.stdout, ran
    lines = ran.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran
    for word in words:
        assert word in lines[0], ran


def assert_works(ran: Ran) -> None:
    assert "Traceback" not in ran.stderr, ran
    assert ran.returncode == 0 or ran.args[:2] == ("slack", "check"), ran  # no Slack tokens here: it says so


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
@pytest.mark.parametrize(("command", "case"), PAIRS, ids=[f"{' '.join(c)}-{case}" for c, case in PAIRS])
async def test_every_command_on_a_bad_database(command: tuple[str, ...], case: str, folder: Path) -> None:
    args = ARGS[command]  # a KeyError: a new command; say here how to call it
    db = folder / "signoff.db"
    prefix: list[str] = []
    if case in ("read-only", "unknown-id"):
        await database_with_a_request(db)
        if case == "read-only":
            prefix = as_reader(db)
        else:
            args = tuple("req_nosuchrequest" if a == KNOWN else a for a in args)
    elif case == "directory":
        db.mkdir()
    elif case == "not-a-database":
        db.write_text("name,amount\nacme,120\n")
    env = base_env(db)
    ran = await run(prefix, env, *command, *args)

    if not uses_db(command):  # it must not care what SIGNOFF_DB points at
        assert_works(ran)
        assert case != "missing" or not db.exists()
        return
    if case == "missing":
        if command in CREATE:
            assert_works(ran)
            assert db.is_file()
        else:
            assert_one_error_line(ran, str(db), "SIGNOFF_DB", "signoff init")
            assert not db.exists(), "a command that only reads or votes created a database"
    elif case == "read-only":
        if command in READ_ONLY:
            assert_works(ran)
            assert ran.stdout.strip() and "no requests" not in ran.stdout, ran
        else:
            assert_one_error_line(ran, str(db))
    elif case == "directory":
        assert_one_error_line(ran, str(db))
    elif case == "not-a-database":
        assert_one_error_line(ran, str(db), "not a signoff database")
        assert db.read_text() == "name,amount\nacme,120\n"
    else:
        assert_one_error_line(ran, "req_nosuchrequest", "signoff review list")
        assert "list_requests" not in ran.stderr  # an MCP tool's name means nothing at the terminal


def test_every_command_is_called_above() -> None:
    assert set(ARGS) == set(COMMANDS)


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
async def test_a_reader_without_write_access_sees_what_a_running_server_writes(folder: Path) -> None:
    db = folder / "signoff.db"
    await database_with_a_request(db)
    db.chmod(0o644)
    server = await SqliteStore.open(db)  # holds the database open, as a server does: its -wal and -shm exist
    try:
        prefix = as_reader(db)
        first = await run(prefix, base_env(db), "review", "list")
        assert first.returncode == 0 and KNOWN in first.stdout and first.stderr == "", first
        await add(server, id="req_writtenmeanwhile")
        second = await run(prefix, base_env(db), "review", "list")
        assert "req_writtenmeanwhile" in second.stdout, second
        voted = await run(prefix, base_env(db), "review", "approve", KNOWN, "--as", "alice")
        assert_one_error_line(voted, str(db), "write access")
    finally:
        await server.close()
