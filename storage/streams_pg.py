"""Resumable streams on PostgreSQL: ``storage.streams.SqliteStreams``'s contract (sql_pg/0017).

Its writes take no writers' lock: a stream is one row that only its key's owner (or a compare-and-set claim) changes,
and none of it is audited. Importing this module loads psycopg (``pip install "signoff[postgres]"``).
"""

from __future__ import annotations

from datetime import datetime

from signoff.storage.pg_db import Conn, PostgresDatabase
from signoff.storage.streams import COLUMNS, KEEP_ALIVE, STOP, Stream, row_stream, stream_row
from signoff.storage.timefmt import to_text


class PostgresStreams:
    def __init__(self, db: PostgresDatabase, *, own: bool = True) -> None:
        self._db = db
        self._own = own

    @classmethod
    async def open(cls, url: str) -> PostgresStreams:
        return cls(await PostgresDatabase.open(url, max_size=4))

    async def close(self) -> None:
        if self._own:
            await self._db.close()

    async def _change(self, sql: str, params: tuple[object, ...]) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(sql, params)
            return cur.rowcount

        return await self._db.unlocked(body)

    async def open_stream(self, stream: Stream) -> None:
        placeholders = ", ".join(["%s"] * 8)
        await self._change(f"INSERT INTO resume_streams ({COLUMNS}) VALUES ({placeholders})", stream_row(stream))

    async def stream(self, key: str) -> Stream | None:
        rows = await self._db.read(f"SELECT {COLUMNS} FROM resume_streams WHERE key = %s", (key,))
        return row_stream(tuple(rows[0])) if rows else None

    async def keep_alive(self, owner: str, at: datetime) -> None:
        await self._change(KEEP_ALIVE, (to_text(at), owner))

    async def stop(self, key: str, owner: str) -> None:
        await self._change(STOP, (key, owner))

    async def claim(self, key: str, owner: str, now: datetime, stale_before: datetime) -> bool:
        claimed = await self._change(
            "UPDATE resume_streams SET owner = %s, alive_at = %s WHERE key = %s AND response IS NULL"
            " AND (alive_at IS NULL OR alive_at < %s)",
            (owner, to_text(now), key, to_text(stale_before)),
        )
        return claimed == 1

    async def finish(self, key: str, response: str) -> None:
        await self._change(
            "UPDATE resume_streams SET response = %s, request = '' WHERE key = %s AND response IS NULL",
            (response, key),
        )

    async def delete_before(self, cutoff: datetime) -> int:
        return await self._change("DELETE FROM resume_streams WHERE created_at < %s", (to_text(cutoff),))
