"""The ModelStore protocol: what the model control plane needs from persistence, and nothing about SQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from signoff.storage.metrics_queries import InferenceTotals
from signoff.storage.models.records import (
    Inference,
    ModelChange,
    ModelState,
    ModelVersion,
    NewChange,
    Serving,
    Settlement,
    VersionTelemetry,
)

#: Given the model as it stands (under the write lock), what serves it after the change; raise to refuse.
Decide = Callable[[ModelState], Serving]
#: Given the model and the pending change (under the write lock), how the change ends; raise to leave it pending.
Settle = Callable[[ModelState, ModelChange], Settlement]


class ModelStore(Protocol):
    """Durable home of model versions, what serves each model, its history of changes, and telemetry.

    Every write is atomic. ``apply_now`` and ``settle`` hand the current state to a pure function while
    holding the write lock, so the rules in it are a compare-and-set, as ``Store.update`` is for requests.
    If that function raises, nothing is written and the exception propagates.
    """

    async def register(self, version: ModelVersion, salt: str, change: NewChange) -> tuple[ModelVersion, bool]:
        """Add a version (creating the model with ``salt`` if it is new) and record ``change`` as applied.

        Returns ``(version, True)``; when the model already has that version, stores nothing and returns
        ``(existing, False)``.
        """
        ...

    async def get_model(self, name: str) -> ModelState | None: ...

    async def list_models(self) -> list[ModelState]:
        """Every model, by name."""
        ...

    async def apply_now(self, name: str, change: NewChange, decide: Decide) -> ModelChange:
        """Record ``change`` as applied with the serving ``decide(current)``; ``NotFound`` for an unknown model."""
        ...

    async def add_pending(self, name: str, change: NewChange) -> ModelChange:
        """Record ``change`` as pending on its approval request; nothing serves differently yet."""
        ...

    async def settle(self, seq: int, at: datetime, decide: Settle) -> ModelChange:
        """Apply or drop a pending change exactly once; ``Conflict`` if it is no longer pending."""
        ...

    async def pending_changes(self, name: str | None = None) -> list[ModelChange]:
        """Pending changes, oldest first (of one model, or of all)."""
        ...

    async def history(self, name: str) -> list[ModelChange]:
        """Every change of a model, oldest first."""
        ...

    async def get_change(self, seq: int) -> ModelChange | None: ...

    async def record_inferences(self, items: Sequence[Inference]) -> None:
        """Add a batch to the telemetry in one transaction (see ``storage.telemetry``)."""
        ...

    async def telemetry(self, name: str, since: datetime, until: datetime) -> list[VersionTelemetry]:
        """Per version with data, the sums and latency samples of whole minutes in ``[since, until)``."""
        ...

    async def inference_totals(self) -> list[InferenceTotals]:
        """Per model and version, every inference recorded since the version was registered (``GET /metrics``)."""
        ...

    async def guard_action_totals(self) -> dict[str, int]:
        """Per model, how many times the canary guard took a canary's traffic away (``GET /metrics``)."""
        ...

    async def state_version(self) -> int:
        """A number that changes whenever any model's versions, serving or changes change (in any process)."""
        ...

    async def change_token(self) -> object:
        """A marker of the state now; take it before reading what you will wait on."""
        ...

    async def wait_for_change(self, token: object, timeout: float) -> None:
        """Return soon after anything changed since ``token`` (any process), or at ``timeout``."""
        ...

    async def close(self) -> None: ...
