"""Alert state and the alert outbox, kept in the database so every process that shares it agrees (sql/0012);
``Alerts`` is what the alert worker needs of either engine (PostgreSQL: ``alerts_pg``).

A rule's state changes by compare-and-set inside ``BEGIN IMMEDIATE``: of several processes that see the same change,
one records it and queues its messages; the others find the state already changed and queue nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from signoff.storage.approvals.queries import INSERT_EVENT, LAST_EVENT
from signoff.storage.audit import GENESIS_HASH, EncodedEvent
from signoff.storage.records import EventKind, NewEvent
from signoff.storage.sqlite_db import SqliteDatabase
from signoff.storage.timefmt import from_text, to_text


class AlertKind(StrEnum):
    FIRING = "firing"  #: the condition started
    RESOLVED = "resolved"  #: the condition ended


@dataclass(frozen=True, kw_only=True, slots=True)
class GuardAction:
    """The canary guard took a canary's traffic away: an applied ``guard`` model change."""

    seq: int  #: the model change's number (``signoff models history``)
    model: str
    version: str  #: the canary it took off
    production: str | None  #: the version its traffic went back to
    at: datetime
    reason: str  #: the guard's words: which metric failed, by how much


@dataclass(frozen=True, kw_only=True, slots=True)
class Measures:
    """What the built-in rules look at, read from the database at one moment."""

    human_decisions: int  #: requests people decided in the window
    human_rejections: int  #: of which rejected
    pending: int  #: requests pending now
    oldest_pending: datetime | None = None  #: when the oldest pending request was made
    dead_notifications: int = 0  #: notifications a notifier gave up on (until `signoff outbox retry`)
    guard_actions: tuple[GuardAction, ...] = ()  #: what the canary guard did lately (read only when a rule asks)


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertMessage:
    """One queued message to one target."""

    id: int
    episode: int
    rule: str
    kind: AlertKind
    target: str
    message: str
    value: float
    at: datetime
    attempts: int
    repeat: int = 0  #: 0: the firing or resolved message; n: the n-th reminder that the alert still holds


@dataclass(frozen=True, kw_only=True, slots=True)
class Episode:
    """One episode of a rule: fired, and perhaps resolved."""

    id: int
    rule: str
    fired_at: datetime
    fired_value: float
    message: str
    resolved_at: datetime | None
    resolved_value: float | None
    undelivered: int  #: messages of this episode not delivered yet (retrying)
    dead: int  #: messages given up on
    repeats: int = 0  #: reminders queued while it held


def alert_event(rule: str, episode: int, *, firing: bool, value: float, message: str, at: datetime) -> NewEvent:
    """The audit event of an episode's start or end (``request_id`` ``alert:<rule>``)."""
    kind = EventKind.ALERT_FIRED if firing else EventKind.ALERT_RESOLVED
    data = {"rule": rule, "episode": episode, "value": value, "message": message}
    return NewEvent(kind=kind, request_id=f"alert:{rule}", at=at, data=data)


MEASURE = """
SELECT (SELECT count(*) FROM requests WHERE decided_by = 'human' AND decided_at >= ?),
       (SELECT count(*) FROM requests WHERE decided_by = 'human' AND decided_at >= ? AND status = 'rejected'),
       (SELECT count(*) FROM requests WHERE status = 'pending'),
       (SELECT min(created_at) FROM requests WHERE status = 'pending'),
       (SELECT count(*) FROM outbox_deliveries WHERE state = 'dead')
"""


#: the canary guard's actions since a moment, oldest first (model changes are few: no index needed)
GUARD_ACTIONS = """
SELECT seq, model, payload, production, settled_at, reason FROM model_changes
WHERE kind = 'guard' AND status = 'applied' AND settled_at >= ? ORDER BY seq
"""


def guard_action(row: Sequence[object]) -> GuardAction:
    """A ``GUARD_ACTIONS`` row as a record (either engine)."""
    seq, model, payload, production, at, reason = row
    version = json.loads(str(payload)).get("version")
    return GuardAction(
        seq=int(str(seq)),
        model=str(model),
        version=str(version) if version is not None else "?",
        production=str(production) if production is not None else None,
        at=from_text(str(at)),
        reason=str(reason),
    )


class Alerts(Protocol):
    """The alerts' state and outbox on one engine: ``AlertStore`` (SQLite) or ``PostgresAlertStore``."""

    async def close(self) -> None: ...

    async def measure(self, now: datetime, window: timedelta) -> Measures: ...

    async def guard_actions(self, since: datetime) -> list[GuardAction]: ...

    async def change(
        self, rule: str, *, firing: bool, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None: ...

    async def repeat(
        self, rule: str, *, every: timedelta, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None: ...

    async def claim(
        self, targets: Sequence[str], now: datetime, lease: timedelta, limit: int = 20
    ) -> list[AlertMessage]: ...

    async def delivered(self, message_id: int, now: datetime) -> None: ...

    async def failed(self, message_id: int, error: str, *, retry_at: datetime | None) -> None: ...

    async def episodes(self, limit: int = 50) -> list[Episode]: ...


class AlertStore:
    def __init__(self, db: SqliteDatabase, *, own: bool = True) -> None:
        self._db = db
        self._own = own

    @classmethod
    async def open(cls, path: str | Path) -> AlertStore:
        return cls(await SqliteDatabase.open(path))

    async def close(self) -> None:
        if self._own:
            await self._db.close()

    async def measure(self, now: datetime, window: timedelta) -> Measures:
        since = to_text(now - window)
        rows = list(await self._db.reader.execute_fetchall(MEASURE, (since, since)))
        decided, rejected, pending, oldest, dead = rows[0]
        return Measures(
            human_decisions=int(decided),
            human_rejections=int(rejected),
            pending=int(pending),
            oldest_pending=from_text(oldest) if oldest else None,
            dead_notifications=int(dead),
        )

    async def guard_actions(self, since: datetime) -> list[GuardAction]:
        """What the canary guard did since ``since`` (its applied ``guard`` model changes), oldest first."""
        rows = await self._db.reader.execute_fetchall(GUARD_ACTIONS, (to_text(since),))
        return [guard_action(row) for row in rows]

    async def change(
        self, rule: str, *, firing: bool, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None:
        """Record that ``rule`` started (``firing``) or stopped, and queue one message per target; the episode's id,
        or None when the state already was so (another process recorded the change first, or nothing changed)."""
        seen = list(await self._db.reader.execute_fetchall("SELECT firing FROM alert_state WHERE rule = ?", (rule,)))
        if bool(seen[0][0] if seen else 0) == firing:  # the common case, without taking the write lock
            return None
        async with self._db.transaction() as db:
            rows = list(await db.execute_fetchall("SELECT firing, episode FROM alert_state WHERE rule = ?", (rule,)))
            was_firing = bool(rows[0][0]) if rows else False
            if was_firing == firing:
                return None
            at = to_text(now)
            if firing:
                cursor = await db.execute(
                    "INSERT INTO alert_episodes (rule, fired_at, fired_value, message) VALUES (?, ?, ?, ?)",
                    (rule, at, value, message),
                )
                episode = int(cursor.lastrowid or 0)
            else:
                episode = int(rows[0][1])
                await db.execute(
                    "UPDATE alert_episodes SET resolved_at = ?, resolved_value = ? WHERE id = ?", (at, value, episode)
                )
            await db.execute(
                "INSERT INTO alert_state (rule, firing, since, value, episode, notified_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (rule) DO UPDATE SET firing = excluded.firing, since = excluded.since,"
                " value = excluded.value, episode = excluded.episode, notified_at = excluded.notified_at",
                (rule, int(firing), at, value, episode, at),
            )
            # in the audit chain, in the same transaction (the chain's head is read under the write lock)
            event = EncodedEvent.of(alert_event(rule, episode, firing=firing, value=value, message=message, at=now))
            async with db.execute(LAST_EVENT) as cur:
                last = await cur.fetchone()
            seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
            await db.execute(INSERT_EVENT, event.row(seq + 1, prev_hash))
            kind = AlertKind.FIRING if firing else AlertKind.RESOLVED
            await db.executemany(
                "INSERT INTO alert_outbox (episode, rule, kind, target, message, value, at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(episode, rule, kind.value, target, message, value, at, at) for target in targets],
            )
            return episode

    async def repeat(
        self, rule: str, *, every: timedelta, value: float, message: str, targets: list[str], now: datetime
    ) -> int | None:
        """While ``rule`` fires, queue a reminder to each target when its messages were last queued ``every`` ago
        or longer; the repeat's number, or None (not firing, not due, or another process queued it first)."""
        due = to_text(now - every)
        check = "SELECT 1 FROM alert_state WHERE rule = ? AND firing = 1 AND notified_at <= ?"
        if not list(await self._db.reader.execute_fetchall(check, (rule, due))):
            return None  # the common case, without taking the write lock
        async with self._db.transaction() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT s.episode, e.repeats + 1 FROM alert_state s JOIN alert_episodes e ON e.id = s.episode"
                    " WHERE s.rule = ? AND s.firing = 1 AND s.notified_at <= ?",
                    (rule, due),
                )
            )
            if not rows:
                return None
            episode, repeat = int(rows[0][0]), int(rows[0][1])
            at = to_text(now)
            await db.execute("UPDATE alert_state SET notified_at = ? WHERE rule = ?", (at, rule))
            await db.execute("UPDATE alert_episodes SET repeats = ? WHERE id = ?", (repeat, episode))
            await db.executemany(
                "INSERT INTO alert_outbox (episode, rule, kind, target, message, value, at, next_attempt_at, repeat)"
                " VALUES (?, ?, 'firing', ?, ?, ?, ?, ?, ?)",
                [(episode, rule, target, message, value, at, at, repeat) for target in targets],
            )
            return repeat

    async def claim(
        self, targets: Sequence[str], now: datetime, lease: timedelta, limit: int = 20
    ) -> list[AlertMessage]:
        """The messages to these targets due now, each leased to this caller until ``now + lease`` (no other
        process sends them meanwhile); oldest first."""
        marks = ", ".join("?" for _ in targets)
        due = (
            "SELECT 1 FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= ?"
            f" AND target IN ({marks}) LIMIT 1"
        )
        if not list(await self._db.reader.execute_fetchall(due, (to_text(now), *targets))):
            return []  # the common case, without taking the write lock
        async with self._db.transaction() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT id, episode, rule, kind, target, message, value, at, attempts, repeat FROM alert_outbox"
                    f" WHERE state = 'pending' AND next_attempt_at <= ? AND target IN ({marks}) ORDER BY id LIMIT ?",
                    (to_text(now), *targets, limit),
                )
            )
            await db.executemany(
                "UPDATE alert_outbox SET next_attempt_at = ? WHERE id = ?",
                [(to_text(now + lease), row[0]) for row in rows],
            )
        return [
            AlertMessage(
                id=row[0],
                episode=row[1],
                rule=row[2],
                kind=AlertKind(row[3]),
                target=row[4],
                message=row[5],
                value=row[6],
                at=from_text(row[7]),
                attempts=row[8],
                repeat=row[9],
            )
            for row in rows
        ]

    async def delivered(self, message_id: int, now: datetime) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                "UPDATE alert_outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                (to_text(now), message_id),
            )

    async def failed(self, message_id: int, error: str, *, retry_at: datetime | None) -> None:
        """A failed attempt: retried at ``retry_at``, or given up on (dead) when it is None."""
        async with self._db.transaction() as db:
            if retry_at is None:
                await db.execute(
                    "UPDATE alert_outbox SET state = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (error[:500], message_id),
                )
            else:
                await db.execute(
                    "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                    (error[:500], to_text(retry_at), message_id),
                )

    async def episodes(self, limit: int = 50) -> list[Episode]:
        """The newest episodes first; the firing ones have no ``resolved_at``."""
        rows = await self._db.reader.execute_fetchall(
            "SELECT e.id, e.rule, e.fired_at, e.fired_value, e.message, e.resolved_at, e.resolved_value,"
            " (SELECT count(*) FROM alert_outbox o WHERE o.episode = e.id AND o.state = 'pending'),"
            " (SELECT count(*) FROM alert_outbox o WHERE o.episode = e.id AND o.state = 'dead'), e.repeats"
            " FROM alert_episodes e ORDER BY e.id DESC LIMIT ?",
            (limit,),
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
