"""`signoff slack check` and `signoff slack manifest`, run as a user would."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

from tests.fakes.slack import FakeSlack

SIGNOFF = str(Path(sys.executable).parent / "signoff")


async def signoff(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = await anyio.run_process([SIGNOFF, *args], env={**os.environ, **env}, check=False)
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def test_slack_check_reports_what_works_and_what_is_missing(tmp_path: Path) -> None:
    fake = await FakeSlack().start()
    policy = tmp_path / "policy.toml"
    policy.write_text('[slack]\napprovers = ["U0ALICE"]\n')
    base = {"SIGNOFF_DB": str(tmp_path / "s.db"), "SIGNOFF_SLACK_API_URL": fake.api_url}
    try:
        nothing = await signoff(base, "slack", "check")
        ready = await signoff(
            {
                **base,
                "SIGNOFF_CONFIG": str(policy),
                "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-good",
                "SIGNOFF_SLACK_APP_TOKEN": "xapp-good",
                "SIGNOFF_SLACK_CHANNEL": "C0APPROVALS",
            },
            "slack",
            "check",
        )
        half = await signoff(
            {**base, "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-good", "SIGNOFF_SLACK_CHANNEL": "C0MISSING"}, "slack", "check"
        )
    finally:
        await fake.stop()
    assert nothing[0] == 1 and "SIGNOFF_SLACK_BOT_TOKEN is not set" in nothing[1]
    for missing in ("no channel", "clicks cannot reach signoff", "no approvers"):  # every missing setting at once
        assert f"missing: {missing}" in nothing[1], nothing[1]
    assert ready[0] == 0, ready[1]
    assert "ok: bot token works" in ready[1] and "ok: Socket Mode works" in ready[1] and "U0ALICE" in ready[1]
    assert half[0] == 1
    assert "channel C0MISSING cannot be read" in half[1] and "/invite @signoff" in half[1]
    assert "clicks cannot reach signoff" in half[1] and "no approvers" in half[1]


async def test_slack_check_says_in_one_sentence_that_slack_cannot_be_reached(tmp_path: Path) -> None:
    fake = await FakeSlack().start()
    await fake.stop()  # nothing listens there now
    env = {
        "SIGNOFF_DB": str(tmp_path / "s.db"),
        "SIGNOFF_SLACK_API_URL": fake.api_url,
        "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-good",
        "SIGNOFF_SLACK_APP_TOKEN": "xapp-good",
    }
    code, output = await signoff(env, "slack", "check")
    assert code == 1
    [unreachable] = [line for line in output.splitlines() if "cannot be reached" in line]
    assert unreachable == (
        f"missing: Slack cannot be reached at {fake.api_url}: could not connect to 127.0.0.1:{fake.port} "
        "(connection refused). Check the network, or SIGNOFF_SLACK_API_URL"
    )
    assert "Error(" not in output and "Traceback" not in output
    assert "missing: no channel" in output and "missing: no approvers" in output  # the rest is still reported


async def test_slack_manifest_is_a_socket_mode_app_unless_a_request_url_is_given() -> None:
    _, socket_mode = await signoff({}, "slack", "manifest")
    _, http = await signoff({}, "slack", "manifest", "--request-url", "https://signoff.example.com/slack/interactions")
    socket_manifest, http_manifest = json.loads(socket_mode), json.loads(http)
    assert socket_manifest["settings"]["socket_mode_enabled"] is True
    assert socket_manifest["settings"]["interactivity"] == {"is_enabled": True}
    assert "chat:write" in socket_manifest["oauth_config"]["scopes"]["bot"]
    assert http_manifest["settings"]["socket_mode_enabled"] is False
    assert http_manifest["settings"]["interactivity"]["request_url"].endswith("/slack/interactions")


def test_the_manifest_in_the_repository_is_the_one_the_command_prints() -> None:
    from signoff.notifiers.slack_setup import manifest

    committed = Path(__file__).parents[2] / "notifiers" / "slack_app_manifest.json"
    assert json.loads(committed.read_text()) == manifest()
