"""The model control plane inside the server: its store, its settings, and its two workers.

- The applier applies a model change as soon as its approval request is approved (by anyone, in any
  process: it wakes on the approval store's change signal, which also notices other processes' commits),
  and drops it when the request is rejected, expires or is cancelled.
- The guard analyzes every running canary against production every ``guard_interval`` seconds and
  returns a failing canary's traffic to production.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
from anyio.abc import TaskGroup
from signoff.storage import ConfigError
from signoff.storage.models.memory import MemoryModelStore
from signoff.storage.models.sqlite import SqliteModelStore
from signoff.storage.models.store import ModelStore
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.canary import CanaryLimits
from signoff.tools.models.service import ModelService, ModelSettings

logger = logging.getLogger(__name__)


def model_settings_from_env(env: Mapping[str, str] | None = None) -> ModelSettings:
    """The model settings from ``SIGNOFF_MODEL_*`` variables; unset ones keep their defaults.

    ``SIGNOFF_MODEL_GUARD`` (on/off), ``SIGNOFF_MODEL_GUARD_INTERVAL``, ``SIGNOFF_MODEL_GUARD_WINDOW_SECONDS``,
    ``SIGNOFF_MODEL_GUARD_MIN_SAMPLES``, ``SIGNOFF_MODEL_ALPHA``, ``SIGNOFF_MODEL_MAX_ERROR_RATE_INCREASE``,
    ``SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO``, ``SIGNOFF_MODEL_MAX_LATENCY_INCREASE``.
    """
    env = os.environ if env is None else env
    defaults, limits = ModelSettings(), CanaryLimits()
    switch = env.get("SIGNOFF_MODEL_GUARD", "on").strip().lower()
    if switch not in ("on", "off", "true", "false", "1", "0"):
        raise ConfigError(f"SIGNOFF_MODEL_GUARD={switch!r}; use on or off")
    return replace(
        defaults,
        guard_enabled=switch in ("on", "true", "1"),
        guard_interval=_number(env, "SIGNOFF_MODEL_GUARD_INTERVAL", defaults.guard_interval, 0.01, 86_400),
        guard_window_seconds=int(
            _number(env, "SIGNOFF_MODEL_GUARD_WINDOW_SECONDS", defaults.guard_window_seconds, 60, 30 * 86_400)
        ),
        guard_min_samples=int(_number(env, "SIGNOFF_MODEL_GUARD_MIN_SAMPLES", defaults.guard_min_samples, 1, 1e9)),
        limits=replace(
            limits,
            alpha=_number(env, "SIGNOFF_MODEL_ALPHA", limits.alpha, 1e-9, 0.5),
            max_error_rate_increase=_number(
                env, "SIGNOFF_MODEL_MAX_ERROR_RATE_INCREASE", limits.max_error_rate_increase, 0, 1
            ),
            max_error_rate_ratio=_number(
                env, "SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO", limits.max_error_rate_ratio, 1, math.inf
            ),
            max_latency_increase=_number(
                env, "SIGNOFF_MODEL_MAX_LATENCY_INCREASE", limits.max_latency_increase, 0, 100
            ),
        ),
    )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range; use {low:g} to {high:g}")
    return value


@asynccontextmanager
async def model_plane(
    db_path: Path,
    approvals: ApprovalService,
    workers: TaskGroup,
    *,
    store: ModelStore | None,
    in_memory: bool,
    settings: ModelSettings,
) -> AsyncIterator[ModelService]:
    """The ModelService on ``store`` (or one opened on ``db_path``, or in memory), with its workers running.

    ``in_memory``: the approvals are kept in memory (tests), so the models are too.
    """
    own = store is None
    active: ModelStore = store or (MemoryModelStore() if in_memory else await SqliteModelStore.open(db_path))
    try:
        models = ModelService(active, approvals, settings=settings)
        workers.start_soon(apply_approved_changes, models)
        workers.start_soon(guard_canaries, models)
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
        token = await store.change_token()
        try:
            await models.settle()
        except Exception:  # e.g. the database briefly unavailable: log, and try again on the next change
            logger.exception("applying approved model changes failed; retrying")
        await anyio.sleep(min_gap)
        await store.wait_for_change(token, idle_wait, poll_interval=APPLIER_POLL_SECONDS)


async def guard_canaries(models: ModelService) -> None:
    while True:
        try:
            await models.guard_once()
        except Exception:  # a guard round that fails must not stop the server; the next round tries again
            logger.exception("canary guard round failed; retrying in %.0fs", models.settings.guard_interval)
        await anyio.sleep(models.settings.guard_interval)
