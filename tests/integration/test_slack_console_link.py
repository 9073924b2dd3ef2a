"""SIGNOFF_PUBLIC_URL: Slack messages link each request's console page ("Open in signoff"), checked at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from signoff.notifiers.slack_blocks import APPROVE_ACTION, OPEN_ACTION, REJECT_ACTION
from signoff.server.app import build_server
from signoff.server.config import Settings
from signoff.storage import ConfigError, Status
from tests.fakes.slack import FakeSlack, click
from tests.integration.test_slack import ask, posted, stored, updates_of

PUBLIC = "https://signoff.example.com/review"


@asynccontextmanager
async def linked_server(tmp_path: Path, public_url: str | None) -> AsyncIterator[tuple[Client, FakeSlack, Path]]:
    fake = await FakeSlack(channels={"#approvals": "C0APPROVALS"}).start()
    (tmp_path / "policy.toml").write_text('[slack]\napprovers = ["U0ALICE"]\n')
    settings = Settings.from_env(
        {
            "SIGNOFF_DB": str(tmp_path / "signoff.db"),
            "SIGNOFF_CONFIG": str(tmp_path / "policy.toml"),
            "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-test",
            "SIGNOFF_SLACK_APP_TOKEN": "xapp-test",
            "SIGNOFF_SLACK_CHANNEL": "#approvals",
            "SIGNOFF_SLACK_API_URL": fake.api_url,
            "SIGNOFF_PUBLIC_URL": public_url or "",
        }
    )
    try:
        async with Client(build_server(settings)) as agent:
            await fake.wait_for(lambda: fake.connected)
            yield agent, fake, settings.db_path
    finally:
        await fake.stop()


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_a_pending_message_has_an_open_in_signoff_button_to_the_requests_console_page(tmp_path: Path) -> None:
    async with linked_server(tmp_path, PUBLIC + "/") as (agent, fake, db):
        hostile = "https://evil.example/</a> <javascript:alert(1)|Open in signoff>"
        request_id = await ask(agent, summary=hostile, agent_id="bot|<https://evil.example>")
        channel, ts = await posted(fake, request_id)
        call = next(c for c in fake.of("chat.postMessage") if request_id in str(c.args.get("blocks")))
        shown = buttons(call.args["blocks"])
        page = f"{PUBLIC}/requests/{request_id}"  # the trailing slash of the setting is dropped
        assert [(b["action_id"], b.get("url")) for b in shown] == [
            (APPROVE_ACTION, None),
            (REJECT_ACTION, None),
            (OPEN_ACTION, page),
        ]
        assert shown[2]["text"]["text"] == "Open in signoff"
        footer = call.args["blocks"][-1]["elements"][0]["text"]
        assert f"<{page}|Open in signoff> to approve with changes" in footer
        # every link in the message is the console's: the agent's text never becomes one
        links = [part.split("|")[0] for part in str(call.args["blocks"]).split("<")[1:] if part.startswith("http")]
        assert links == [page]
        # a click on the link button is Slack telling us it was opened: nothing is recorded
        await fake.send_interaction(
            click(user_id="U0ALICE", username="alice", action_id=OPEN_ACTION, request_id="", channel=channel, ts=ts)
        )
        await fake.send_interaction(
            click(
                user_id="U0ALICE",
                username="alice",
                action_id=APPROVE_ACTION,
                request_id=request_id,
                channel=channel,
                ts=ts,
            )
        )
        await fake.wait_for(lambda: any("actions" not in str(u["blocks"]) for u in updates_of(fake, ts)))
        request, _ = await stored(db, request_id)
    assert request.status is Status.APPROVED and [v.reviewer for v in request.votes] == ["U0ALICE"]
    final = [u for u in updates_of(fake, ts) if "actions" not in str(u["blocks"])][-1]
    footer = final["blocks"][-1]["elements"][0]["text"]
    assert footer.endswith(f"<{page}|Open in signoff>")  # the decided message keeps the link, without buttons


async def test_without_a_public_url_there_is_no_link(tmp_path: Path) -> None:
    async with linked_server(tmp_path, None) as (agent, fake, _):
        request_id = await ask(agent)
        await posted(fake, request_id)
    call = next(c for c in fake.of("chat.postMessage") if request_id in str(c.args.get("blocks")))
    assert [b["action_id"] for b in buttons(call.args["blocks"])] == [APPROVE_ACTION, REJECT_ACTION]
    assert "Open in signoff" not in str(call.args["blocks"])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("signoff.example.com", "not an http or https URL with a host"),
        ("ftp://signoff.example.com", "not an http or https URL with a host"),
        ("https://", "not an http or https URL with a host"),
        ("https://signoff.example.com/?next=1", "has a query or fragment"),
        ("https://signoff.example.com/#top", "has a query or fragment"),
        ("https://alice:secret@signoff.example.com", "holds a user name or password"),
        ("https://signoff.example.com/a|b", "spaces, quotes or <>|"),
        ("https://signoff.example.com/a b", "spaces, quotes or <>|"),
        ("https://signoff.example.com:port", "is not a URL"),
    ],
)
def test_a_public_url_that_is_not_a_plain_http_address_is_refused_with_what_to_change(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_PUBLIC_URL") as refused:
        Settings.from_env({"SIGNOFF_PUBLIC_URL": value})
    assert says in str(refused.value) and "https://signoff.example.com" in str(refused.value)


def test_a_public_url_is_kept_without_its_trailing_slash() -> None:
    assert Settings.from_env({"SIGNOFF_PUBLIC_URL": " http://127.0.0.1:8000/ "}).public_url == "http://127.0.0.1:8000"
    assert Settings.from_env({}).public_url is None
