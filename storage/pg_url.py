"""PostgreSQL URLs, told apart from SQLite paths and shown without their passwords. No driver is imported here."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(value: str) -> bool:
    """Whether ``SIGNOFF_DB`` / ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return value.startswith(SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
