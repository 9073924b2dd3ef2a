"""Resumable streams of waiting tool calls (sql/0017): what a reconnecting MCP client needs from any server on the
database. ``Streams`` is the contract; ``MemoryStreams`` and ``SqliteStreams`` here, ``PostgresStreams`` in
``streams_pg``. A stream is made when a waiting call starts, kept alive by its owner while the call runs, finished
with the call's final JSON-RPC response, claimed by another process when its owner is gone, and deleted when old.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from signoff.storage.sqlite_db import SqliteDatabase
from signoff.storage.timefmt import from_text, to_text


@dataclass(frozen=True, kw_only=True, slots=True)
class Stream:
    key: str  #: random and unguessable: the client holds it as its SSE event id
    principal: str | None  #: the bearer token's identity that made the call (None without auth)
    tool: str  #: get_status or request_approval
    request: str  #: the JSON-RPC request, as the client sent it
    owner: str  #: the process serving it
    alive_at: datetime | None  #: when the owner last said it still serves it (None: it stopped without an answer)
    created_at: datetime
    response: str | None = None  #: the final JSON-RPC response (or error), once sent


class Streams(Protocol):
    async def open_stream(self, stream: Stream) -> None:
        """Record a new stream (its key is new)."""

    async def stream(self, key: str) -> Stream | None: ...

    async def keep_alive(self, owner: str, at: datetime) -> None:
        """``owner`` still serves its unanswered streams (one write per process, however many it serves); a stream
        it stopped, or another process claimed since, is left as it is."""

    async def stop(self, key: str, owner: str) -> None:
        """``owner`` stopped serving the stream without an answer: another process may take it over at once."""

    async def claim(self, key: str, owner: str, now: datetime, stale_before: datetime) -> bool:
        """Become the stream's owner if it has no answer and its owner is gone (stopped, or silent since before
        ``stale_before``); whether this call did."""

    async def finish(self, key: str, response: str) -> None:
        """Keep the final response (the first one kept stays), and forget the call's request, which only an unanswered
        stream needs (to run it again): a call refused at once keeps no more than its short answer."""

    async def delete_before(self, cutoff: datetime) -> int:
        """Delete the streams made before ``cutoff``; how many."""

    async def close(self) -> None: ...


def _claimable(stream: Stream, stale_before: datetime) -> bool:
    return stream.response is None and (stream.alive_at is None or stream.alive_at < stale_before)


class MemoryStreams:
    """For a server on a memory store: one process, so a stream resumes on the server that made it."""

    def __init__(self) -> None:
        self._streams: dict[str, Stream] = {}

    async def open_stream(self, stream: Stream) -> None:
        self._streams[stream.key] = stream

    async def stream(self, key: str) -> Stream | None:
        return self._streams.get(key)

    async def keep_alive(self, owner: str, at: datetime) -> None:
        for key, found in self._streams.items():
            if found.owner == owner and found.response is None and found.alive_at is not None:
                self._streams[key] = replace(found, alive_at=at)

    async def stop(self, key: str, owner: str) -> None:
        found = self._streams.get(key)
        if found is not None and found.owner == owner and found.response is None:
            self._streams[key] = replace(found, alive_at=None)

    async def claim(self, key: str, owner: str, now: datetime, stale_before: datetime) -> bool:
        found = self._streams.get(key)
        if found is None or not _claimable(found, stale_before):
            return False
        self._streams[key] = replace(found, owner=owner, alive_at=now)
        return True

    async def finish(self, key: str, response: str) -> None:
        found = self._streams.get(key)
        if found is not None and found.response is None:
            self._streams[key] = replace(found, response=response, request="")

    async def delete_before(self, cutoff: datetime) -> int:
        old = [key for key, found in self._streams.items() if found.created_at < cutoff]
        for key in old:
            del self._streams[key]
        return len(old)

    async def close(self) -> None:
        self._streams.clear()


COLUMNS = "key, principal, tool, request, owner, alive_at, created_at, response"
KEEP_ALIVE = "UPDATE resume_streams SET alive_at = %s WHERE owner = %s AND response IS NULL AND alive_at IS NOT NULL"
STOP = "UPDATE resume_streams SET alive_at = NULL WHERE key = %s AND owner = %s AND response IS NULL"


def stream_row(stream: Stream) -> tuple[str | None, ...]:
    at = to_text(stream.alive_at) if stream.alive_at is not None else None
    return (
        stream.key,
        stream.principal,
        stream.tool,
        stream.request,
        stream.owner,
        at,
        to_text(stream.created_at),
        stream.response,
    )


def row_stream(row: tuple[object, ...]) -> Stream:
    key, principal, tool, request, owner, alive_at, created_at, response = row
    return Stream(
        key=str(key),
        principal=str(principal) if principal is not None else None,
        tool=str(tool),
        request=str(request),
        owner=str(owner),
        alive_at=from_text(str(alive_at)) if alive_at is not None else None,
        created_at=from_text(str(created_at)),
        response=str(response) if response is not None else None,
    )


class SqliteStreams:
    def __init__(self, db: SqliteDatabase, *, own: bool = True) -> None:
        self._db = db
        self._own = own

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStreams:
        return cls(await SqliteDatabase.open(path))

    async def close(self) -> None:
        if self._own:
            await self._db.close()

    async def open_stream(self, stream: Stream) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                f"INSERT INTO resume_streams ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", stream_row(stream)
            )

    async def stream(self, key: str) -> Stream | None:
        rows = list(
            await self._db.reader.execute_fetchall(f"SELECT {COLUMNS} FROM resume_streams WHERE key = ?", (key,))
        )
        return row_stream(tuple(rows[0])) if rows else None

    async def keep_alive(self, owner: str, at: datetime) -> None:
        async with self._db.transaction() as db:
            await db.execute(KEEP_ALIVE.replace("%s", "?"), (to_text(at), owner))

    async def stop(self, key: str, owner: str) -> None:
        async with self._db.transaction() as db:
            await db.execute(STOP.replace("%s", "?"), (key, owner))

    async def claim(self, key: str, owner: str, now: datetime, stale_before: datetime) -> bool:
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "UPDATE resume_streams SET owner = ?, alive_at = ? WHERE key = ? AND response IS NULL"
                " AND (alive_at IS NULL OR alive_at < ?)",
                (owner, to_text(now), key, to_text(stale_before)),
            )
            return cursor.rowcount == 1

    async def finish(self, key: str, response: str) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                "UPDATE resume_streams SET response = ?, request = '' WHERE key = ? AND response IS NULL",
                (response, key),
            )

    async def delete_before(self, cutoff: datetime) -> int:
        async with self._db.transaction() as db:
            cursor = await db.execute("DELETE FROM resume_streams WHERE created_at < ?", (to_text(cutoff),))
            return cursor.rowcount
