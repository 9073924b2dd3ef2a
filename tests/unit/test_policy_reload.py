"""The policy file reloaded while the server runs, and the version every request records."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import anyio
import pytest
from mcp import Client

from signoff.server.policy_reload import PolicyReloader
from signoff.storage import EventKind, Status
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import DEFAULT_VERSION, parse_policy_config, policy_version
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.views import ApprovalStatus
from tests.unit.test_mcp_tools import make_server

STRICT = "confidence_threshold = 0.99\n"
LOOSE = "confidence_threshold = 0.5\n"


def draft(amount: int = 50) -> Draft:
    return Draft(action="payments.transfer", summary="pay invoice 7", payload={"amount": amount}, confidence=0.9)


def serving(path: Path, text: str) -> tuple[ApprovalService, MemoryStore, PolicyReloader, list[bool]]:
    path.write_text(text)
    store, told = MemoryStore(), []
    service = ApprovalService(store, Policy(parse_policy_config(text), policy_version(text)))
    return service, store, PolicyReloader(path, service, on_reload=told.append), told


async def test_every_request_records_the_version_of_the_policy_that_decided_it(tmp_path: Path) -> None:
    service, store, reloader, _ = serving(tmp_path / "signoff.toml", STRICT)
    first = await service.request_approval(draft())
    assert first.status is Status.PENDING and first.policy_version == policy_version(STRICT)

    (tmp_path / "signoff.toml").write_text(LOOSE)
    assert reloader.reload()
    second = await service.request_approval(draft(amount=51))  # the same one again would go to people (pending)
    assert second.status is Status.APPROVED and second.policy_version == policy_version(LOOSE)

    created = [e for e in await store.request_events(second.id) if e.kind is EventKind.CREATED]
    assert created[0].data["policy_version"] == policy_version(LOOSE)
    assert ApprovalStatus.of(second).policy_version == policy_version(LOOSE)
    assert (await service.get(first.id)).policy_version == policy_version(STRICT)  # the old one keeps its version
    assert (await verify_store(store)).ok
    assert ApprovalService(MemoryStore()).policy.version == DEFAULT_VERSION


async def test_a_bad_edit_is_refused_with_one_log_line_and_the_old_policy_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "signoff.toml"
    service, _, reloader, told = serving(path, STRICT)
    path.write_text(STRICT + '[[rules]]\nname = "x"\noutcome = "maybe"\n')
    with caplog.at_level(logging.INFO, logger="signoff.server.policy_reload"):
        assert not reloader.reload()
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert f"version {policy_version(STRICT)} stays in force" in message
    assert f"{path} line 4: rules[0].outcome: unknown outcome 'maybe'" in message
    assert service.policy.version == policy_version(STRICT) and told == [False]
    assert (await service.request_approval(draft())).status is Status.PENDING


async def test_an_unchanged_text_or_a_missing_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "signoff.toml"
    service, _, reloader, told = serving(path, STRICT)
    path.write_text(STRICT)  # touched, same text
    assert not reloader.reload() and told == []
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="signoff.server.policy_reload"):
        assert not reloader.reload()
    assert "does not exist" in caplog.records[0].getMessage() and service.policy.version == policy_version(STRICT)


@pytest.mark.parametrize("how", ["edit", "sighup"])
async def test_the_watcher_reloads_on_an_edit_and_on_sighup(tmp_path: Path, how: str) -> None:
    path = tmp_path / "signoff.toml"
    service, _, reloader, _ = serving(path, STRICT)
    done = anyio.Event()
    reloader.on_reload = lambda applied: done.set()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            # for "sighup" the file is never polled in the test's time: only the signal can reload it
            await tasks.start(reloader.watch, 0.01 if how == "edit" else 3600.0)
            path.write_text(LOOSE)
            if how == "sighup":
                os.kill(os.getpid(), signal.SIGHUP)
            await done.wait()
            tasks.cancel_scope.cancel()
    assert service.policy.version == policy_version(LOOSE)


async def test_the_server_reloads_its_policy_file_while_serving(tmp_path: Path) -> None:
    server, _, _ = make_server(tmp_path, STRICT)
    path = tmp_path / "signoff.toml"
    reloaded = anyio.Event()

    class Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("policy reloaded"):
                reloaded.set()

    handler, logger = Told(), logging.getLogger("signoff.server.policy_reload")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with anyio.fail_after(30):
            async with Client(server) as client:
                ask = {"action": "payments.transfer", "summary": "pay", "payload": {"amount": 5}, "confidence": 0.9}
                before = (await client.call_tool("request_approval", ask)).structured_content
                path.write_text(LOOSE)
                await reloaded.wait()
                # another payload: the same one asked again would go to people, the first being still pending
                after = (
                    await client.call_tool("request_approval", {**ask, "payload": {"amount": 6}})
                ).structured_content
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert before is not None and after is not None
    assert (before["status"], before["policy_version"]) == ("pending", policy_version(STRICT))
    assert (after["status"], after["policy_version"]) == ("approved", policy_version(LOOSE))


def test_a_change_is_read_only_once_the_file_has_stopped_changing(tmp_path: Path) -> None:
    """A save in place caught half way can be valid TOML without the rules that follow: the watcher reads a change
    only when one look finds the file as the look before did."""
    path = tmp_path / "signoff.toml"
    guarded = STRICT + '[[rules]]\nname = "no drops"\naction = "db.drop_*"\noutcome = "reject"\n'
    service, _, reloader, told = serving(path, guarded)
    seen = reloader.look(reloader._stat())
    cut = LOOSE  # the first line of the new version, before its [[rules]] are written
    path.write_text(cut)
    os.utime(path, ns=(1, 1))  # a time of its own: the next write must differ from this one even within a tick
    seen = reloader.look(seen)
    assert told == [] and service.policy.version == policy_version(guarded)  # seen changing: not read yet
    path.write_text(LOOSE + '[[rules]]\nname = "no drops"\naction = "db.drop_*"\noutcome = "reject"\n')
    seen = reloader.look(seen)
    assert told == []  # still changing
    seen = reloader.look(seen)
    assert told == [True] and service.policy.version == policy_version(path.read_text())  # settled: read whole
