"""The one exception hierarchy every layer raises and the edges translate.

The MCP handlers turn these into ``ToolError`` and the CLI into a one-line error; each
message is written for whoever must act on it and says what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signoff.storage.records import ApprovalRequest


class SignoffError(Exception):
    """signoff could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or " ".join((self.__doc__ or "").split()))  # a docstring's lines, as one

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(SignoffError):
    """The request is invalid: check the fields and try again."""


class NotFound(SignoffError):
    """No such request: check the request_id."""


def unknown_request(request_id: str) -> NotFound:
    return NotFound(f"no request with id {request_id!r}; check the id (list_requests shows recent requests)")


class Conflict(SignoffError):
    """The request is no longer in a state that allows this."""


class AskedBefore(Conflict):
    """``Store.create_request(..., refuse_approval_if_asked_before=True)`` stored nothing: the same agent asked for
    the same action and payload before (``earlier``, the newest such request that went to people), and people did
    not approve it."""

    def __init__(self, earlier: ApprovalRequest) -> None:
        super().__init__(
            f"request {earlier.id} with the same action and payload went to people and was not approved"
            f" ({earlier.status.value}); a person decides this one too"
        )
        self.earlier = earlier


class Forbidden(SignoffError):
    """You may not do this."""


class ConfigError(SignoffError):
    """The configuration is invalid."""


class CorruptRecord(SignoffError):
    """A stored row cannot be read: it was changed outside signoff."""

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq


class StorageError(SignoffError):
    """The database could not be used: nothing was saved and nothing was approved."""


class DatabaseFull(StorageError):
    """The database's disk is full: nothing was saved and nothing was approved; free disk space, then try again."""


class DatabaseReadOnly(StorageError):
    """The database is read-only here: nothing was saved and nothing was approved; give signoff's user write access
    to the database file and its folder."""


class DatabaseCorrupt(StorageError):
    """The database file is damaged or is not a signoff database (truncated, or overwritten): nothing was saved and
    nothing was approved; restore it from a backup or point SIGNOFF_DB at another file."""


class DatabaseBusy(StorageError):
    """The database stayed locked by another process for too long: nothing was saved and nothing was approved;
    try again, and check for a process holding a long transaction on it."""


class DatabaseUnavailable(StorageError):
    """The database file cannot be opened: nothing was saved and nothing was approved; check that its folder exists
    and that signoff's user may read and write it, or choose another file with --db or SIGNOFF_DB."""
