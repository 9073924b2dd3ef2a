"""Configuration mistakes stop `signoff serve` at once with one line saying what and where, never a traceback."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.integration.support import base_env, signoff

pytestmark = pytest.mark.slow

BAD_OPERATOR = """\
# review big payments
[[rules]]
name = "x"
outcome = "review"
when = [ { path = "payload.amount", op = "gtt", value = 1 } ]
"""


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_unknown_operator_stops_start_up_naming_the_line(tmp_path: Path, transport: str) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(BAD_OPERATOR)
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(config))
    with anyio.fail_after(20):
        ran = await signoff(env, "serve", "--transport", transport, "--port", "1")
    assert ran.returncode != 0, ran
    assert "line 5" in ran.stderr, ran
    assert "gtt" in ran.stderr, ran
    assert str(config) in ran.stderr, ran
    assert "Traceback" not in ran.stderr, ran
    assert ran.stdout == "", "stdout is the MCP channel on stdio: nothing else may be written there"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"SIGNOFF_CONFIG": "missing.toml"}, "missing.toml"),
        ({"SIGNOFF_PROGRESS_INTERVAL": "soon"}, "SIGNOFF_PROGRESS_INTERVAL"),
        ({"SIGNOFF_PERMISSION_WAIT_SECONDS": "-1"}, "SIGNOFF_PERMISSION_WAIT_SECONDS"),
        ({"SIGNOFF_LOG_LEVEL": "loud"}, "SIGNOFF_LOG_LEVEL"),
    ],
    ids=["missing-config-file", "progress-interval-not-a-number", "negative-permission-wait", "unknown-log-level"],
)
async def test_bad_setting_stops_start_up_with_a_message(tmp_path: Path, variables: dict[str, str], named: str) -> None:
    env = base_env(tmp_path / "signoff.db", **variables)
    with anyio.fail_after(20):
        ran = await signoff(env, "serve")
    assert ran.returncode != 0, ran
    assert named in ran.stderr, ran
    assert "Traceback" not in ran.stderr, ran
    assert ran.stdout == "", "stdout is the MCP channel on stdio: nothing else may be written there"
