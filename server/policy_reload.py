"""Reloading the policy file while the server runs: on SIGHUP, and when the file changes.

A file with faults is refused with one log line (the first fault, with its line) and the policy in force stays; a
valid one replaces it for every request decided from then on, each of which records the new version. What is read
once at start-up (the ``[auth]`` tokens and ``agents_see_all``, the Slack amount field) changes only on a restart;
the log says so when such a part changed.
"""

from __future__ import annotations

import logging
import os
import signal
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from signoff.server.policy_env import PolicyOverrides
from signoff.storage import ConfigError
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config, read_policy_text
from signoff.tools.approvals.service import ApprovalService

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  #: how often the file's size and modification time are compared


class PolicyReloader:
    """Keeps ``service.policy`` in step with the file at ``path``."""

    def __init__(
        self,
        path: Path,
        service: ApprovalService,
        on_reload: Callable[[bool], None] | None = None,
        overrides: PolicyOverrides | None = None,
    ) -> None:
        self.path = path
        self.overrides = overrides or PolicyOverrides()  #: the environment's, applied over every version
        self.service = service
        self.on_reload = on_reload  #: told after each attempt that read a changed file: True if it now applies
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def reload(self) -> bool:
        """Read the file again; True if a new version now decides. An unchanged text does nothing."""
        self._stamp = self._stat()
        current = self.service.policy
        try:
            text = read_policy_text(self.path)
            version = self.overrides.version(text)
            if version == current.version:
                return False
            config = self.overrides.apply(parse_policy_config(text, os.fspath(self.path)))
            if not tomllib.loads(text):  # valid, and what every file saved in place reads as for a moment
                raise ConfigError(
                    f"{self.path} has no settings (a file being saved in place reads so for a moment); to run with"
                    " the built-in defaults, restart signoff"
                )
        except ConfigError as exc:
            logger.error("policy not reloaded, version %s stays in force: %s", current.version, exc.message)
            self._told(False)
            return False
        self.service.policy = Policy(config, version)
        restart = []
        if config.auth != current.config.auth:
            restart.append("[auth]")
        if config.slack.amount_field != current.config.slack.amount_field:
            restart.append("slack.amount_field")
        later = f"; {' and '.join(restart)} take effect at the next restart" if restart else ""
        logger.info("policy reloaded from %s: version %s replaces %s%s", self.path, version, current.version, later)
        self._told(True)
        return True

    def _told(self, applied: bool) -> None:
        if self.on_reload is not None:
            self.on_reload(applied)

    async def watch(
        self, interval: float = POLL_SECONDS, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Reload on SIGHUP (where signals can be received) and whenever the file's size or time changed and then
        stayed the same for one more ``interval``: a file caught while it is being saved in place may be cut short
        and still be valid TOML (without its guardrails), so a change is read only once the writing has stopped."""
        async with anyio.create_task_group() as tasks:
            await tasks.start(self._on_hangup)
            task_status.started()
            seen = self._stamp
            while True:
                await anyio.sleep(interval)
                seen = self.look(seen)

    def look(self, seen: tuple[int, int] | None) -> tuple[int, int] | None:
        """One look at the file: reload it if it changed since the last reload and is as ``seen`` the look before;
        returns what this look saw, for the next."""
        stamp = self._stat()
        if stamp != self._stamp and stamp == seen:
            self.reload()
        return stamp

    async def _on_hangup(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with ExitStack() as stack:
            try:
                signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGHUP))
            except (AttributeError, NotImplementedError, RuntimeError, ValueError):  # no SIGHUP, or not main thread
                task_status.started()
                return
            task_status.started()
            async for _ in signals:
                self.reload()
