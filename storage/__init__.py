"""Records, the Store protocol and its implementations, and the audit chain."""

from storage.audit import ChainReport, verify_chain
from storage.canonical import canonical_json, payload_sha256
from storage.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound, SignoffError
from storage.memory import MemoryStore
from storage.records import (
    ActionHistory,
    ApprovalRequest,
    DecidedBy,
    Event,
    EventKind,
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
    "ConfigError",
    "Conflict",
    "DecidedBy",
    "Event",
    "EventKind",
    "Forbidden",
    "InvalidInput",
    "MemoryStore",
    "NewEvent",
    "NotFound",
    "OutboxItem",
    "Page",
    "Priority",
    "RequestQuery",
    "SignoffError",
    "SqliteStore",
    "Status",
    "Store",
    "Transition",
    "Trigger",
    "TriggerKind",
    "Verdict",
    "Vote",
    "canonical_json",
    "payload_sha256",
    "verify_chain",
]
