"""The model control plane inside the server: its store, its settings, and its two workers.

- The applier applies a model change as soon as its approval request is approved (by anyone, in any
  process: it wakes on the approval store's change signal, which also notices other processes' commits),
  and drops it when the request is rejected, expires or is cancelled.
- The guard analyzes every running canary against production every ``guard_interval`` seconds and
  returns a failing canary's traffic to production.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from signoff.server.stores import once, open_model_store
from signoff.storage import ModelStore
from signoff.storage.errors import StorageError
from signoff.storage.models.memory import MemoryModelStore
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelService, ModelSettings

logger = logging.getLogger(__name__)


@asynccontextmanager
async def model_plane(
    db_path: Path,
    approvals: ApprovalService,
    workers: TaskGroup,
    *,
    store: ModelStore | None,
    in_memory: bool,
    settings: ModelSettings,
    db_url: str | None = None,
) -> AsyncIterator[ModelService]:
    """The ModelService on ``store`` (or one opened on ``db_path``, or PostgreSQL at ``db_url``, or in memory), with
    its workers running.

    ``in_memory``: the approvals are kept in memory (tests), so the models are too.
    """
    own = store is None
    active: ModelStore = store or (MemoryModelStore() if in_memory else await open_model_store(db_path, db_url))
    try:
        models = ModelService(active, approvals, settings=settings)
        workers.start_soon(apply_approved_changes, models)
        workers.start_soon(once(db_url, "canary guard", partial(guard_canaries, models)))
        yield models
    finally:
        if own:
            with anyio.CancelScope(shield=True):  # the server's task group is being cancelled around us
                await active.close()


SETTLE_GAP_SECONDS = 0.05
APPLIER_POLL_SECONDS = 0.25  #: how soon an approval made by another process (the CLI) is noticed


async def apply_approved_changes(
    models: ModelService, idle_wait: float = 1.0, min_gap: float = SETTLE_GAP_SECONDS
) -> None:
    """Settle model changes whose approval requests were decided, as soon as they are.

    Every commit to the approval store wakes this worker, and a busy server commits hundreds of requests a
    second that have nothing to do with models; so it settles at most once per ``min_gap``. A decision is
    never missed (the change token is taken before settling), only applied up to ``min_gap`` later.
    """
    store = models.approvals.store
    while True:
        try:
            token = await store.change_token()
            await models.settle()
            await anyio.sleep(min_gap)
            await store.wait_for_change(token, idle_wait, poll_interval=APPLIER_POLL_SECONDS)
        except StorageError as exc:  # the database unavailable (a restart, a failover): one line, and try again
            logger.error("applying approved model changes failed: %s Retrying in %.0fs", exc, idle_wait)
            await anyio.sleep(idle_wait)
        except Exception:  # a worker that dies takes the server with it; log, and try again a little later
            logger.exception("applying approved model changes failed; retrying in %.0fs", idle_wait)
            await anyio.sleep(idle_wait)


async def guard_canaries(models: ModelService) -> None:
    while True:
        try:
            await models.guard_once()
        except Exception:  # a guard round that fails must not stop the server; the next round tries again
            logger.exception("canary guard round failed; retrying in %.0fs", models.settings.guard_interval)
        await anyio.sleep(models.settings.guard_interval)
