"""Records, the Store protocol and its implementations, and the audit chain."""

from storage.audit import ChainReport, verify_chain, verify_store
from storage.canonical import canonical_json, payload_sha256
from storage.errors import ConfigError, Conflict, CorruptRecord, Forbidden, InvalidInput, NotFound, SignoffError
from storage.memory import MemoryStore
from storage.model_memory import MemoryModelStore
from storage.model_records import (
    ChangeKind,
    ChangeStatus,
    Inference,
    ModelChange,
    ModelState,
    ModelVersion,
    NewChange,
    Serving,
    Settlement,
    VersionTelemetry,
)
from storage.model_sqlite import SqliteModelStore
from storage.model_store import ModelStore
from storage.records import (
    ActionHistory,
    ApprovalRequest,
    DecidedBy,
    Event,
    EventKind,
    MessageRef,
    NewEvent,
    OutboxItem,
    Page,
    Priority,
    RequestQuery,
    Status,
    Transition,
    Trigger,
    TriggerKind,
    Verdict,
    Vote,
)
from storage.sqlite import SqliteStore
from storage.store import Store

__all__ = [
    "ActionHistory",
    "ApprovalRequest",
    "ChainReport",
    "ChangeKind",
    "ChangeStatus",
    "ConfigError",
    "Conflict",
    "CorruptRecord",
    "DecidedBy",
    "Event",
    "EventKind",
    "Forbidden",
    "Inference",
    "InvalidInput",
    "MemoryModelStore",
    "MemoryStore",
    "MessageRef",
    "ModelChange",
    "ModelState",
    "ModelStore",
    "ModelVersion",
    "NewChange",
    "NewEvent",
    "NotFound",
    "OutboxItem",
    "Page",
    "Priority",
    "RequestQuery",
    "Serving",
    "Settlement",
    "SignoffError",
    "SqliteModelStore",
    "SqliteStore",
    "Status",
    "Store",
    "Transition",
    "Trigger",
    "TriggerKind",
    "Verdict",
    "VersionTelemetry",
    "Vote",
    "canonical_json",
    "payload_sha256",
    "verify_chain",
    "verify_store",
]
