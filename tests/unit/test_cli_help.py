"""Every CLI command explains itself and shows an example."""

from __future__ import annotations

import subprocess
import sys

import pytest

from signoff.server.cli import build_parser, main

COMMANDS = [
    ["serve"],
    ["init"],
    ["console"],
    ["review", "list"],
    ["review", "show"],
    ["review", "approve"],
    ["review", "reject"],
    ["review", "claim"],
    ["review", "release"],
    ["history"],
    ["stats"],
    ["audit", "verify"],
    ["token", "new"],
    ["outbox", "list"],
    ["outbox", "retry"],
    ["fairness"],
    ["policy", "check"],
    ["policy", "test"],
    ["policy", "replay"],
    ["slack", "check"],
    ["slack", "manifest"],
    ["alerts"],
    ["export", "training-data"],
    ["report"],
    ["db", "upgrade"],
    ["db", "copy"],
    ["review"],
    ["audit"],
    ["export"],
    ["outbox"],
    ["policy"],
    ["slack"],
    ["token"],
    ["db"],
    [],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "signoff")
def test_every_command_has_help_with_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and "signoff " in text.split("example", 1)[1]


def test_the_list_above_covers_every_command() -> None:
    parser = build_parser()
    top = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    leaves = set()
    for name, sub in top.items():
        nested = sub._subparsers
        if nested is None:
            leaves.add((name,))
        else:
            leaves |= {(name, leaf) for leaf in nested._group_actions[0].choices}
    single = (["serve"], ["init"], ["console"], ["history"], ["stats"], ["alerts"], ["report"], ["fairness"])
    assert leaves == {tuple(c) for c in COMMANDS if len(c) == 2 or c in single}


def test_the_cli_starts_without_loading_slack_http_or_smtp_clients() -> None:
    """A reviewer's `signoff review approve` pays for what it uses: Slack's SDK, aiohttp and the SMTP client load
    only where a notifier is built (a third of the command's start-up time when they loaded with the settings)."""
    heavy = ("aiohttp", "slack_sdk", "aiosmtplib")
    probe = f"import sys, signoff.server.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]", ran.stdout
