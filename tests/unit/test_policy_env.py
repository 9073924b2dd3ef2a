"""SIGNOFF_CONFIDENCE_THRESHOLD and SIGNOFF_DEFAULT_OUTCOME over the policy file: parsed with clear errors, applied,
and part of the policy version."""

from __future__ import annotations

import pytest

from signoff.server.app import load_policy
from signoff.server.config import Settings
from signoff.server.policy_env import PolicyOverrides
from signoff.storage import ConfigError
from signoff.tools.approvals.policy_config import DEFAULT_VERSION, Outcome, PolicyConfig, policy_version


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGNOFF_CONFIDENCE_THRESHOLD": "high"}, "SIGNOFF_CONFIDENCE_THRESHOLD must be a number from 0 to 1"),
        ({"SIGNOFF_CONFIDENCE_THRESHOLD": "1.5"}, "not '1.5'"),
        ({"SIGNOFF_CONFIDENCE_THRESHOLD": "nan"}, "not 'nan'"),
        ({"SIGNOFF_DEFAULT_OUTCOME": "reject"}, 'SIGNOFF_DEFAULT_OUTCOME must be "approve" or "review"'),
        ({"SIGNOFF_DEFAULT_OUTCOME": "yes"}, "not 'yes'"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_") as raised:
        Settings.from_env({"SIGNOFF_DB": "/tmp/x.db", **env})
    assert message in str(raised.value)


def test_empty_values_are_unset_and_change_nothing() -> None:
    overrides = PolicyOverrides.from_env({"SIGNOFF_CONFIDENCE_THRESHOLD": "", "SIGNOFF_DEFAULT_OUTCOME": " "})
    assert not overrides
    assert overrides.apply(PolicyConfig()) == PolicyConfig()
    assert overrides.version("x = 1") == policy_version("x = 1") and overrides.version(None) == DEFAULT_VERSION


def test_the_server_applies_them_over_the_file_and_records_a_version_of_its_own(tmp_path: object) -> None:
    from pathlib import Path

    policy = Path(str(tmp_path)) / "p.toml"
    policy.write_text("confidence_threshold = 0.7\n")
    plain = load_policy(Settings.from_env({"SIGNOFF_DB": "/tmp/x.db", "SIGNOFF_CONFIG": str(policy)}))
    env = {
        "SIGNOFF_DB": "/tmp/x.db",
        "SIGNOFF_CONFIG": str(policy),
        "SIGNOFF_CONFIDENCE_THRESHOLD": "0.95",
        "SIGNOFF_DEFAULT_OUTCOME": "Approve",
    }
    effective = load_policy(Settings.from_env(env))
    assert plain.config.confidence_threshold == 0.7 and plain.version == policy_version(policy.read_text())
    assert effective.config.confidence_threshold == 0.95
    assert effective.config.default_outcome is Outcome.APPROVE
    assert effective.version not in (plain.version, DEFAULT_VERSION)
    without_file = load_policy(Settings.from_env({"SIGNOFF_DB": "/tmp/x.db", "SIGNOFF_DEFAULT_OUTCOME": "approve"}))
    assert without_file.config.default_outcome is Outcome.APPROVE and without_file.version != DEFAULT_VERSION
