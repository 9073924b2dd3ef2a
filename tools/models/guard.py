"""When the canary guard acts, pure: one canary analysis is one look, and the guard looks every 30 seconds.

``canary.analyze`` answers for a single look at level ``alpha``. The guard re-tests a sliding window every
``guard_interval`` seconds, so at ``alpha = 0.01`` an identical canary is sooner or later "significantly worse" by
chance alone: in a simulation (tests/unit/test_canary_guard.py, 1,000 runs) it was taken off in 12% of 2-hour
runs, 16% with the relative error-rate limit. Two rules make repeated looks safe: 0.2% of runs.

1. **A stricter alpha per look** (Bonferroni over one window's looks): ``GuardRule.limits_for`` divides ``alpha``
   by ``looks_per_window`` (``window / interval``: 120 for a 1-hour window looked at every 30 s). Whatever the
   correlation between looks, an identical canary then fails some look among one window's worth of looks with
   probability of about ``alpha`` (at most ``alpha`` for exact p-values; Fisher's mid-p is close to one), so a
   run of length ``T`` sees a false FAIL with probability of about ``alpha * T / window`` (1% an hour at the
   defaults). Looks 30 s apart share most of their data, so the real rate is far lower. This rule does nearly
   all the work against chance.
2. **Confirmation on newer data**: a FAIL acts only once every look since the first FAIL of the streak has
   failed too, and the window has moved on by at least ``confirm_after`` (one minute: a window holding a minute
   the first FAIL did not see). Any other verdict ends the streak. Against chance alone it adds little (two
   windows a minute apart share most of their data); it keeps a single look from acting on a skewed moment:
   one client's failures recorded before another's successes, a cluster of errors in a small early window.

A FAIL with a p-value below ``decisive_p`` (1e-9: beyond what chance gives in years of looks) acts on one look:
a canary failing a third of its requests should not serve another minute, and a window that has not moved (a
stopped clock in tests, no new minute yet) could never confirm it.

The price is speed. At 20-50 inferences a minute on each side and a 1% baseline, the simulation took a canary
with 10% errors off after 7 minutes (median; at most 16) instead of 3.5, one with 5% after 26 minutes (at most 85)
instead of 5.5 (seed 7, 100 runs each; the FAIL verdict needs the increase shown with confidence, see
``tools.canary``).

Usage, once per guard round: ``observe`` each running canary's result (computed with ``limits_for``) and act
when it returns True; then ``retain`` the canaries still running, so one stopped and restarted starts afresh.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from signoff.tools.models.canary import CanaryLimits, CanaryResult, CanaryVerdict

Key = tuple[str, str]  #: (model, candidate version)


@dataclass(frozen=True, kw_only=True, slots=True)
class GuardRule:
    """How sure the guard must be before it takes a canary's traffic away."""

    looks_per_window: int = 120  #: the guard's alpha is the limits' alpha divided by this
    confirm_after: timedelta = timedelta(minutes=1)  #: a failing streak acts once its windows span this much
    decisive_p: float = 1e-9  #: a FAIL with a p-value below this acts at once; 0 turns it off

    def __post_init__(self) -> None:
        if self.looks_per_window < 1:
            raise ValueError(f"looks_per_window is {self.looks_per_window}; it must be at least 1")

    @classmethod
    def for_schedule(cls, interval: float, window_seconds: float) -> GuardRule:
        """The rule for a guard that looks every ``interval`` seconds at the last ``window_seconds``."""
        return cls(looks_per_window=max(1, math.ceil(window_seconds / interval)))

    def limits_for(self, limits: CanaryLimits) -> CanaryLimits:
        """``limits`` with the guard's per-look alpha: analyze with these, then ``GuardMemory.observe``."""
        return dataclasses.replace(limits, alpha=limits.alpha / self.looks_per_window)


class GuardMemory:
    """Each running canary's failing streak: since which window end every look has failed."""

    def __init__(self, rule: GuardRule) -> None:
        self.rule = rule
        self._failing_since: dict[Key, datetime] = {}

    def observe(self, key: Key, result: CanaryResult, window_end: datetime) -> bool:
        """Record one look at ``key`` and say whether to take its traffic away now.

        ``result`` is ``canary.analyze`` with ``rule.limits_for(limits)``; ``window_end`` is the end of the window
        it judged (``CanaryReport.until``). True ends the streak: the next look starts a new one.
        """
        if result.verdict is not CanaryVerdict.FAIL:
            self._failing_since.pop(key, None)
            return False
        p_values = [m.p_value for m in result.metrics if m.verdict is CanaryVerdict.FAIL and m.p_value is not None]
        since = self._failing_since.setdefault(key, window_end)
        if min(p_values, default=1.0) < self.rule.decisive_p or window_end - since >= self.rule.confirm_after:
            del self._failing_since[key]
            return True
        return False

    def retain(self, keys: Iterable[Key]) -> None:
        """Forget every canary not in ``keys``: call once a round with the canaries that are running."""
        running = set(keys)
        for key in [k for k in self._failing_since if k not in running]:
            del self._failing_since[key]
