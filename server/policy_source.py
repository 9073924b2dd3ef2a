"""The policy a process decides under, built one way for every process that decides: `signoff serve`, `signoff
console` and the CLI's review commands.

The file at ``SIGNOFF_CONFIG`` with the environment's overrides (``policy_env``), its ``[[lookups]]`` read from the
policy file's folder (relative paths start there, wherever the process was started), and, for the processes that
keep running, the watcher that reloads the file when it changes (``policy_reload``).
"""

from __future__ import annotations

import os

from signoff.server.config import Settings
from signoff.server.policy_reload import PolicyReloader
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import PolicyConfig, parse_policy_config, read_policy_text
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.trusted import TrustedData

__all__ = ["load_policy", "reloader", "trusted_data"]


def load_policy(settings: Settings) -> Policy:
    """The policy from the config file (errors name the line at fault), or the safe defaults; with its version."""
    overrides = settings.policy_overrides  # SIGNOFF_CONFIDENCE_THRESHOLD, SIGNOFF_DEFAULT_OUTCOME
    if settings.config_path is None:
        return Policy(overrides.apply(PolicyConfig()), overrides.version(None)) if overrides else Policy()
    text = read_policy_text(settings.config_path)
    return Policy(overrides.apply(parse_policy_config(text, os.fspath(settings.config_path))), overrides.version(text))


def trusted_data(settings: Settings) -> TrustedData:
    """The reader of the policy's ``[[lookups]]``: relative paths start at the policy file's folder (without a
    policy file, the working directory, which no lookup can then name)."""
    return TrustedData(settings.config_path.parent if settings.config_path else None)


def reloader(settings: Settings, service: ApprovalService) -> PolicyReloader | None:
    """What keeps ``service.policy`` in step with the policy file (start its ``watch``); None without a file."""
    if settings.config_path is None:
        return None
    return PolicyReloader(settings.config_path, service, overrides=settings.policy_overrides)
