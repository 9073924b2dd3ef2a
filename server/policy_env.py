"""``SIGNOFF_CONFIDENCE_THRESHOLD`` and ``SIGNOFF_DEFAULT_OUTCOME``: the policy's two common knobs, from the
environment, over the policy file (or the built-in defaults).

An override changes what decides, so it changes the policy version every request records: the version is then the
hash of the file's text followed by the overrides (see ``version``), never the file's own version.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from signoff.storage import ConfigError
from signoff.tools.approvals.policy_config import Outcome, PolicyConfig, policy_version

__all__ = ["PolicyOverrides"]

THRESHOLD = "SIGNOFF_CONFIDENCE_THRESHOLD"
OUTCOME = "SIGNOFF_DEFAULT_OUTCOME"


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyOverrides:
    confidence_threshold: float | None = None  #: SIGNOFF_CONFIDENCE_THRESHOLD: 0 to 1
    default_outcome: Outcome | None = None  #: SIGNOFF_DEFAULT_OUTCOME: approve or review

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PolicyOverrides:
        """The overrides set in ``env`` (empty values count as unset); a bad value is a ConfigError saying what to
        write instead."""
        threshold, outcome = env.get(THRESHOLD, "").strip(), env.get(OUTCOME, "").strip()
        value: float | None = None
        if threshold:
            try:
                value = float(threshold)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ConfigError(f"{THRESHOLD} must be a number from 0 to 1 (e.g. 0.9), not {threshold!r}")
        chosen: Outcome | None = None
        if outcome:
            if outcome.lower() not in (Outcome.APPROVE, Outcome.REVIEW):
                raise ConfigError(
                    f'{OUTCOME} must be "approve" or "review", not {outcome!r} ("reject" is not a default: write a'
                    ' rule with outcome = "reject" for what to refuse)'
                )
            chosen = Outcome(outcome.lower())
        return cls(confidence_threshold=value, default_outcome=chosen)

    def __bool__(self) -> bool:
        return self.confidence_threshold is not None or self.default_outcome is not None

    def apply(self, config: PolicyConfig) -> PolicyConfig:
        """``config`` with the overrides in place of its own values."""
        if self.confidence_threshold is not None:
            config = dataclasses.replace(config, confidence_threshold=self.confidence_threshold)
        if self.default_outcome is not None:
            config = dataclasses.replace(config, default_outcome=self.default_outcome)
        return config

    def version(self, text: str | None) -> str:
        """The version of the policy in ``text`` (None: the built-in one) with these overrides: the file's own
        version without overrides; else the hash of the text followed by one ``# NAME=value`` line per override."""
        if not self:
            return policy_version(text)
        return policy_version((text or "") + "".join(f"\n# {line}" for line in self.settings()))

    def settings(self) -> list[str]:
        """``NAME=value`` for each override set."""
        found = []
        if self.confidence_threshold is not None:
            found.append(f"{THRESHOLD}={self.confidence_threshold:g}")
        if self.default_outcome is not None:
            found.append(f"{OUTCOME}={self.default_outcome}")
        return found

    def summary(self, file_config: PolicyConfig) -> list[str]:
        """One line per override, saying what it replaces in the file (for ``signoff policy check``)."""
        lines = []
        if self.confidence_threshold is not None:
            lines.append(
                f"{THRESHOLD}={self.confidence_threshold:g} overrides confidence_threshold"
                f" {file_config.confidence_threshold:g} from the file"
            )
        if self.default_outcome is not None:
            lines.append(f"{OUTCOME}={self.default_outcome} overrides default_outcome {file_config.default_outcome}")
        return lines
