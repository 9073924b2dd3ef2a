"""The one exception hierarchy every layer raises and the edges translate.

The MCP handlers turn these into ``ToolError`` and the CLI into a one-line error; each
message is written for whoever must act on it and says what to change.
"""

from __future__ import annotations


class SignoffError(Exception):
    """signoff could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or "")

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


class Forbidden(SignoffError):
    """You may not do this."""


class ConfigError(SignoffError):
    """The configuration is invalid."""


class CorruptRecord(SignoffError):
    """A stored row cannot be read: it was changed outside signoff."""

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq
