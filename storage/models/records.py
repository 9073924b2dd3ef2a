"""Records of the model control plane: versions, what serves traffic, the changes to it, and telemetry."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from signoff.storage.records import JsonObject

#: Traffic weights are kept in basis points of the 10,000 routing buckets (100% = 10,000).
TOTAL_WEIGHT = 10_000


class ChangeKind(enum.StrEnum):
    REGISTER = "register"  #: A version was registered; what serves traffic is unchanged.
    SET_TRAFFIC = "set_traffic"  #: The traffic split changed.
    PROMOTE = "promote"  #: A version became production (the old one previous) and took all traffic.
    ROLLBACK = "rollback"  #: Back to the last approved production version, without approval.
    GUARD = "guard"  #: The canary guard returned a failing canary's traffic to production.


class ChangeStatus(enum.StrEnum):
    PENDING = "pending"  #: Waiting for its approval request; nothing has changed yet.
    APPLIED = "applied"  #: In effect: at once, or when its approval request was approved.
    DROPPED = "dropped"  #: Rejected, expired, cancelled or overtaken by another change; nothing changed.


@dataclass(frozen=True, kw_only=True, slots=True)
class Serving:
    """What serves a model's traffic: the aliases and the split (basis points, zero weights left out)."""

    production: str | None = None
    previous: str | None = None
    weights: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelVersion:
    """One registered version; immutable once registered."""

    model: str
    version: str
    endpoint: str
    metadata: JsonObject
    lineage: JsonObject
    registered_at: datetime
    registered_by: str | None
    idempotency_key: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelState:
    """A model as it stands: its routing salt, what serves it, and its versions in registration order."""

    name: str
    salt: str  #: hex; mixed into every routing key's hash, so buckets differ between models
    created_at: datetime
    serving: Serving
    revision: int  #: seq of the last applied change
    versions: tuple[ModelVersion, ...]

    def version(self, version: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class NewChange:
    """A change to record: applied at once, or pending on the approval request ``request_id``."""

    kind: ChangeKind
    at: datetime
    requested_by: str | None
    reason: str
    payload: JsonObject  #: the exact change; for a pending change, what the approval is bound to
    request_id: str | None = None
    outcome: str | None = None  #: for a change applied at once, why no approval was needed


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelChange:
    """One row of a model's history."""

    seq: int
    model: str
    kind: ChangeKind
    status: ChangeStatus
    requested_at: datetime
    requested_by: str | None
    reason: str
    payload: JsonObject
    request_id: str | None
    settled_at: datetime | None  #: when it was applied or dropped
    outcome: str | None  #: how it was settled, in words ("approved by alice", "rejected by bob: …")
    serving: Serving | None  #: what served traffic right after it applied; None unless applied


@dataclass(frozen=True, kw_only=True, slots=True)
class Settlement:
    """How a pending change ends: ``serving`` None drops it."""

    serving: Serving | None
    outcome: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Inference:
    """One observed inference, as the server received it."""

    model: str
    version: str
    at: datetime
    latency_ms: float
    ok: bool
    confidence: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionTelemetry:
    """A version's telemetry over a window: exact sums, and a sample of latencies.

    Each sample is ``(latency_ms, inclusion_probability)``: the chance that any one inference of its
    sampling period was kept, so ``1 / p`` is the number of inferences it stands for.
    """

    version: str
    count: int
    errors: int
    latency_sum: float
    confidence_sum: float
    confidence_count: int
    samples: tuple[tuple[float, float], ...] = ()
