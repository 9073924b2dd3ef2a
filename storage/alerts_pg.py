"""Alert state and the alert outbox on PostgreSQL: ``storage.alerts.AlertStore``'s contract (sql_pg/0012).

A rule's state changes by compare-and-set under the writers' advisory lock, so of several processes on several
hosts that see the same change, one records it and queues its messages. The episode's start and end are audit events
appended in the same transaction (the writers' lock keeps the chain one). A message is claimed with
``FOR UPDATE SKIP LOCKED`` and leased, so two processes never send it at once.

Importing this module loads psycopg (``pip install "signoff[postgres]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from signoff.storage.alerts import (
    GUARD_ACTIONS,
    MEASURE,
    AlertKind,
    AlertMessage,
    Episode,
    GuardAction,
    Measures,
    alert_event,
    guard_action,
)
from signoff.storage.approvals.pg_queries import INSERT_EVENT, LAST_EVENT
from signoff.storage.audit import GENESIS_HASH, EncodedEvent
from signoff.storage.pg_db import Conn, PostgresDatabase
from signoff.storage.timefmt import from_text, to_text

_CLAIMED = "id, episode, rule, kind, target, message, value, at, attempts, repeat"


class PostgresAlertStore:
    def __init__(self, db: PostgresDatabase, *, own: bool = True) -> None:
        self._db = db
        self._own = own

    @classmethod
    async def open(cls, url: str) -> PostgresAlertStore:
        return cls(await PostgresDatabase.open(url, max_size=2))

    async def close(self) -> None:
        if self._own:
            await self._db.close()

    async def measure(self, now: datetime, window: timedelta) -> Measures:
        since = to_text(now - window)
        rows = await self._db.read(MEASURE.replace("?", "%s"), (since, since))
        decided, rejected, pending, oldest, dead = rows[0]
        return Measures(
            human_decisions=int(decided),
            human_rejections=int(rejected),
            pending=int(pending),
            oldest_pending=from_text(oldest) if oldest else None,
            dead_notifications=int(dead),
        )

    async def guard_actions(self, since: datetime) -> list[GuardAction]:
        """``AlertStore.guard_actions``: the canary guard's applied changes since ``since``, oldest first."""
        rows = await self._db.read(GUARD_ACTIONS.replace("?", "%s"), (to_text(since),))
        return [guard_action(row) for row in rows]

    async def change(
        self, rule: str, *, firing: bool, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None:
        """``AlertStore.change``: the episode's id, or None when the state already was so."""
        seen = await self._db.read("SELECT firing FROM alert_state WHERE rule = %s", (rule,))
        if bool(seen[0][0] if seen else 0) == firing:  # the common case, without taking the writers' lock
            return None

        async def body(db: Conn) -> int | None:
            cur = await db.execute("SELECT firing, episode FROM alert_state WHERE rule = %s", (rule,))
            row = await cur.fetchone()
            if bool(row[0] if row else 0) == firing:
                return None
            at = to_text(now)
            if firing:
                cur = await db.execute(
                    "INSERT INTO alert_episodes (rule, fired_at, fired_value, message) VALUES (%s, %s, %s, %s)"
                    " RETURNING id",
                    (rule, at, value, message),
                )
                episode = int((await cur.fetchone() or (0,))[0])
            else:
                assert row is not None  # it was firing
                episode = int(row[1])
                await db.execute(
                    "UPDATE alert_episodes SET resolved_at = %s, resolved_value = %s WHERE id = %s",
                    (at, value, episode),
                )
            await db.execute(
                "INSERT INTO alert_state (rule, firing, since, value, episode, notified_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (rule) DO UPDATE SET firing = excluded.firing, since = excluded.since,"
                " value = excluded.value, episode = excluded.episode, notified_at = excluded.notified_at",
                (rule, int(firing), at, value, episode, at),
            )
            # in the audit chain, in the same transaction (the writers' lock is held: the chain cannot fork)
            event = EncodedEvent.of(alert_event(rule, episode, firing=firing, value=value, message=message, at=now))
            last = await (await db.execute(LAST_EVENT)).fetchone()
            seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
            await db.execute(INSERT_EVENT, event.row(seq + 1, prev_hash))
            kind = AlertKind.FIRING if firing else AlertKind.RESOLVED
            async with db.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO alert_outbox (episode, rule, kind, target, message, value, at, next_attempt_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(episode, rule, kind.value, target, message, value, at, at) for target in targets],
                )
            return episode

        return await self._db.write(body, notify=None)

    async def repeat(
        self, rule: str, *, every: timedelta, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None:
        """``AlertStore.repeat``: while ``rule`` fires, a reminder to each target when its messages were last queued
        ``every`` ago or longer; the repeat's number, or None (not firing, not due, or another process was first)."""
        due = to_text(now - every)
        check = "SELECT 1 FROM alert_state WHERE rule = %s AND firing = 1 AND notified_at <= %s"
        if not await self._db.read(check, (rule, due)):
            return None  # the common case, without taking the writers' lock

        async def body(db: Conn) -> int | None:
            cur = await db.execute(
                "SELECT s.episode, e.repeats + 1 FROM alert_state s JOIN alert_episodes e ON e.id = s.episode"
                " WHERE s.rule = %s AND s.firing = 1 AND s.notified_at <= %s FOR UPDATE OF s",
                (rule, due),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            episode, repeat = int(row[0]), int(row[1])
            at = to_text(now)
            await db.execute("UPDATE alert_state SET notified_at = %s WHERE rule = %s", (at, rule))
            await db.execute("UPDATE alert_episodes SET repeats = %s WHERE id = %s", (repeat, episode))
            async with db.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO alert_outbox (episode, rule, kind, target, message, value, at, next_attempt_at,"
                    " repeat) VALUES (%s, %s, 'firing', %s, %s, %s, %s, %s, %s)",
                    [(episode, rule, target, message, value, at, at, repeat) for target in targets],
                )
            return repeat

        return await self._db.write(body, notify=None)

    async def claim(
        self, targets: Sequence[str], now: datetime, lease: timedelta, limit: int = 20
    ) -> list[AlertMessage]:
        """``AlertStore.claim``: the due messages to these targets, each leased to this caller until ``now + lease``."""
        due = (
            "SELECT 1 FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= %s AND target = ANY(%s) LIMIT 1"
        )
        if not await self._db.read(due, (to_text(now), list(targets))):
            return []  # the common case, without locking a row

        async def body(db: Conn) -> list[tuple[object, ...]]:
            cur = await db.execute(
                f"SELECT {_CLAIMED} FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= %s"
                " AND target = ANY(%s) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (to_text(now), list(targets), limit),
            )
            rows = await cur.fetchall()
            for row in rows:
                await db.execute(
                    "UPDATE alert_outbox SET next_attempt_at = %s WHERE id = %s", (to_text(now + lease), row[0])
                )
            return list(rows)

        rows = await self._db.unlocked(body)
        return [
            AlertMessage(
                id=int(str(r[0])),
                episode=int(str(r[1])),
                rule=str(r[2]),
                kind=AlertKind(str(r[3])),
                target=str(r[4]),
                message=str(r[5]),
                value=float(str(r[6])),
                at=from_text(str(r[7])),
                attempts=int(str(r[8])),
                repeat=int(str(r[9])),
            )
            for r in rows
        ]

    async def delivered(self, message_id: int, now: datetime) -> None:
        params = (to_text(now), message_id)
        await self._db.unlocked(
            lambda db: db.execute(
                "UPDATE alert_outbox SET state = 'delivered', delivered_at = %s, attempts = attempts + 1 WHERE id = %s",
                params,
            )
        )

    async def failed(self, message_id: int, error: str, *, retry_at: datetime | None) -> None:
        """``AlertStore.failed``: retried at ``retry_at``, or given up on (dead) when it is None."""
        if retry_at is None:
            sql = "UPDATE alert_outbox SET state = 'dead', attempts = attempts + 1, last_error = %s WHERE id = %s"
            params: tuple[object, ...] = (error[:500], message_id)
        else:
            sql = "UPDATE alert_outbox SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s WHERE id = %s"
            params = (error[:500], to_text(retry_at), message_id)
        await self._db.unlocked(lambda db: db.execute(sql, params))

    async def episodes(self, limit: int = 50) -> list[Episode]:
        rows = await self._db.read(
            "SELECT e.id, e.rule, e.fired_at, e.fired_value, e.message, e.resolved_at, e.resolved_value,"
            " (SELECT count(*) FROM alert_outbox o WHERE o.episode = e.id AND o.state = 'pending'),"
            " (SELECT count(*) FROM alert_outbox o WHERE o.episode = e.id AND o.state = 'dead'), e.repeats"
            " FROM alert_episodes e ORDER BY e.id DESC LIMIT %s",
            (limit if limit >= 0 else None,),  # SQLite's LIMIT -1: all of them
        )
        return [
            Episode(
                id=r[0],
                rule=r[1],
                fired_at=from_text(r[2]),
                fired_value=r[3],
                message=r[4],
                resolved_at=from_text(r[5]) if r[5] else None,
                resolved_value=r[6],
                undelivered=r[7],
                dead=r[8],
                repeats=r[9],
            )
            for r in rows
        ]
