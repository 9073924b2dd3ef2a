"""The policy the anomaly security tests serve over HTTP: approve by default, the numeric check on (five samples,
threshold 3.5, novelty off), with ``test_http_auth``'s agent and reviewer tokens."""

from __future__ import annotations

from tests.integration.test_http_auth import CONFIG

POLICY = (
    """\
default_outcome = "approve"

[anomaly]
enabled = true
novel_action = false
min_samples = 5
threshold = 3.5
"""
    + CONFIG
)
