"""``[[alerts]]`` in the config file: which built-in alert rules run, and their thresholds (pure: no I/O).

Each table names a rule and may set the thresholds that rule has; a key another rule owns is refused, so a typo
or a misplaced key is an error with its line, never a silently ignored setting. Unset keys take the defaults
(``server.alerts`` fills them, with the environment's ``SIGNOFF_ALERT_*`` over both).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields

from signoff.tools.typed_toml import Fault

MAX_MINUTES = 525_600  #: one year


class AlertRuleName(enum.StrEnum):
    REJECTION_RATE = "rejection_rate"  #: people rejected more than ``rate`` of at least ``min_decisions`` in an hour
    PENDING_BACKLOG = "pending_backlog"  #: more than ``max_pending`` requests wait for people
    OLDEST_PENDING = "oldest_pending"  #: the oldest pending request has waited more than ``minutes``
    NOTIFICATIONS_DEAD = "notifications_dead"  #: a notifier gave up on a notification
    CANARY_GUARD = "canary_guard"  #: the canary guard took a canary's traffic away in the last ``minutes``


#: the thresholds each rule has (``repeat_minutes`` belongs to every rule)
RULE_KEYS: dict[AlertRuleName, tuple[str, ...]] = {
    AlertRuleName.REJECTION_RATE: ("rate", "min_decisions"),
    AlertRuleName.PENDING_BACKLOG: ("max_pending",),
    AlertRuleName.OLDEST_PENDING: ("minutes",),
    AlertRuleName.NOTIFICATIONS_DEAD: (),
    AlertRuleName.CANARY_GUARD: ("minutes",),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertRule:
    """One ``[[alerts]]`` table; a None threshold takes its default."""

    rule: AlertRuleName
    rate: float | None = None  #: rejection_rate: fire above this share of people's decisions (0 to 1)
    min_decisions: int | None = None  #: rejection_rate: ...among at least this many decisions in the hour
    max_pending: int | None = None  #: pending_backlog: fire above this many pending requests
    minutes: float | None = None  #: oldest_pending: older than this; canary_guard: the guard acted this recently
    repeat_minutes: float | None = None  #: remind this often while it holds; 0: never

    def __post_init__(self) -> None:
        owned = RULE_KEYS[self.rule]
        for f in fields(self):
            if f.name in ("rule", "repeat_minutes") or getattr(self, f.name) is None or f.name in owned:
                continue
            takes = ", ".join((*owned, "repeat_minutes"))
            owners = " and ".join(rule.value for rule, keys in RULE_KEYS.items() if f.name in keys)
            raise Fault((f.name,), f"applies to {owners}, not {self.rule.value}; {self.rule.value} takes {takes}")
        if self.rate is not None and not (math.isfinite(self.rate) and 0 <= self.rate <= 1):
            raise Fault(("rate",), f"must be a share from 0 to 1 (0.05 is 5 %), not {self.rate}")
        if self.min_decisions is not None and self.min_decisions < 1:
            raise Fault(("min_decisions",), f"must be at least 1, not {self.min_decisions:,}")
        if self.max_pending is not None and self.max_pending < 0:
            raise Fault(("max_pending",), f"must be at least 0, not {self.max_pending:,}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and 1 <= self.minutes <= MAX_MINUTES):
            raise Fault(("minutes",), f"must be from 1 to {MAX_MINUTES:,} minutes, not {self.minutes:g}")
        repeat = self.repeat_minutes
        if repeat is not None and not (math.isfinite(repeat) and 0 <= repeat <= MAX_MINUTES):
            raise Fault(("repeat_minutes",), f"must be from 0 (never) to {MAX_MINUTES:,} minutes, not {repeat:g}")


def check_alert_list(alerts: tuple[AlertRule, ...]) -> None:
    """Each rule at most once: its state in the database is kept by its name."""
    seen: set[AlertRuleName] = set()
    for index, alert in enumerate(alerts):
        if alert.rule in seen:
            raise Fault(
                ("alerts", index, "rule"),
                f"{alert.rule.value!r} is already listed; each rule appears once (set all its thresholds there)",
            )
        seen.add(alert.rule)
