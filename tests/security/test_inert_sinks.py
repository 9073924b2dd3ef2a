"""Every string an agent writes is inert in every sink: Slack, the terminal, the log.

Slack is checked on the Block Kit JSON the fake Slack receives from the real notifier; the terminal through a terminal
emulator (pyte) reading what the CLI printed; the log through the logging the CLI configures, in a process of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyte
import pytest

from signoff.notifiers import SlackNotifier, web_client
from signoff.notifiers.slack_blocks import escalation_note, request_blocks
from signoff.server import cli
from signoff.server.workers import deliver_due
from signoff.storage import ConfigError, DecidedBy, Status, Trigger, TriggerKind, Verdict, Vote
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.text import visible
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.factories import T0, make_request
from tests.fakes.slack import FakeSlack

MB = 1 << 20
CONFIG = """
[slack]
approvers = ["U0ALICE"]
amount_field = "payload.amount"

[limits]
max_payload_bytes = 4_000_000
max_summary_chars = 2_000_000
"""

HOSTILE = (
    "*Amount*\n98000\n:white_check_mark: *approved by alice*\n> quoted\n"
    "<https://evil.example|click> https://evil.example/x @channel <!channel> <!here> <@U123> #general "
    "_it_ ~strike~ `tick` ``` fence \u202eevil-rtl\u2066 zero\u200bwidth\ufeff &amp;"
)
#: what must never appear in Slack outside code: pieces of the hostile text that would act if they were mrkdwn
MARKERS = ("evil", "approved by alice", "channel", "!here", "U123", "98000", "general", "strike", "quoted")
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")  # \n aside


def test_visible_escapes_what_acts_and_keeps_what_reads() -> None:
    assert visible("a\x1b[2Jb\rc\nd\x7f\x9b\u202e\u200b\u2028\ufeff") == (
        "a\\x1b[2Jb\\rc\\nd\\x7f\\x9b\\u202e\\u200b\\u2028\\ufeff"
    )
    assert (
        visible("Zahlung an Müller: 5 € 🎉 東京, tab\tx", keep_newlines=True)
        == "Zahlung an Müller: 5 € 🎉 東京, tab\\tx"
    )
    assert visible("two\nlines\r", keep_newlines=True) == "two\nlines\\r"


# -- Slack -------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def slack_rig(config: str = CONFIG) -> AsyncIterator[tuple[ApprovalService, FakeSlack]]:
    fake = await FakeSlack().start()
    policy = Policy(parse_policy_config(config))
    service = ApprovalService(MemoryStore(), policy)
    notifier = SlackNotifier(
        web_client("xoxb-test", fake.api_url, wait_on_rate_limit=False),
        service.store,
        "#approvals",
        amount_field=policy.config.slack.amount_field,
    )
    try:
        yield service, fake
        await deliver_due(service, notifier)
    finally:
        await fake.stop()


async def posted(draft: Draft, config: str = CONFIG) -> dict[str, Any]:
    """The chat.postMessage arguments Slack received for a request made from ``draft``."""
    async with slack_rig(config) as (service, fake):
        await service.request_approval(draft)
    (call,) = fake.of("chat.postMessage")
    return call.args


def text_objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


CODE = re.compile(r"```(.*?)```|`([^`\n]+)`", re.DOTALL)
SLACK_DATE = re.compile(r"<!date\^\d+\^\{date_short_pretty\} at \{time\}\|[0-9T:+.-]+>")


def assert_inert(blocks: list[dict[str, Any]]) -> None:
    """Agent text appears only as plain_text without emoji, or inside code in a verbatim mrkdwn object; what is
    inside code holds no raw ``<``, ``>`` or control character; nothing outside code comes from the agent."""
    for obj in text_objects(blocks):
        text = obj["text"]
        assert len(text) <= 3000
        assert not ACTIVE.search(text), text
        if obj["type"] == "plain_text" and text not in ("Approve", "Reject"):  # the buttons' own labels aside
            assert obj.get("emoji") is False and "\n" not in text, obj
            continue
        if obj["type"] == "plain_text":
            continue
        assert obj.get("verbatim") is True, obj
        for match in CODE.finditer(text):
            inside = match.group(1) or match.group(2) or ""
            assert "<" not in inside and ">" not in inside, inside
        outside = SLACK_DATE.sub("", CODE.sub("", text))
        assert "<" not in outside and ">" not in outside.replace("&gt;", ""), outside
        for marker in MARKERS:
            assert marker not in outside, (marker, outside)


HOSTILE_DRAFTS = {
    "markup everywhere": Draft(
        action="payments.transfer",
        summary=HOSTILE,
        payload={"amount": 5, HOSTILE[:80]: HOSTILE, "note": "<!channel> `x` ```y```"},
        agent_id=f"<@U0ALICE> {HOSTILE[:150]}",
        flags=(HOSTILE[:90],),
    ),
    "fake approval line": Draft(
        action="payments.transfer",
        summary="Pay invoice 7\n\n:white_check_mark: *approved by alice* at 10:02\n*Amount*\n98000",
        payload={"amount": 5},
    ),
    "1 MB summary and value": Draft(
        action="payments.transfer",
        summary="*" + "evil<@U123> " * (MB // 12),
        payload={"amount": 5, "blob": "_evil_\u202e" * (MB // 7)},
        agent_id="bot",
    ),
}


@pytest.mark.parametrize("draft", HOSTILE_DRAFTS.values(), ids=HOSTILE_DRAFTS.keys())
async def test_slack_shows_what_an_agent_wrote_as_inert_text(draft: Draft) -> None:
    args = await posted(draft)
    assert_inert(args["blocks"])
    fallback = args["text"]  # what notifications show: escaped, so no link, mention or control gets through
    assert "<" not in fallback and ">" not in fallback and not ACTIVE.search(fallback)


def test_fields_the_policy_validates_are_rendered_inert_all_the_same() -> None:
    """Actions, cancel notes, reviewers' comments and trigger details made before a validation rule existed, or
    written by a reviewer, go through the same renderer."""
    for request in (
        make_request(action=HOSTILE, triggers=(Trigger(kind=TriggerKind.RULE, detail=HOSTILE),)),
        make_request(status=Status.CANCELLED, decided_at=T0, note=HOSTILE),
        make_request(
            status=Status.REJECTED,
            decided_by=DecidedBy.HUMAN,
            decided_at=T0,
            votes=(Vote(reviewer="bob", verdict=Verdict.REJECT, comment=HOSTILE, at=T0),),
        ),
    ):
        assert_inert([block.to_dict() for block in request_blocks(request, amount_field="payload.amount")])
        assert "\n" not in escalation_note(request, None).replace("\\n", "")


async def test_bidi_and_zero_width_characters_are_shown_not_obeyed_in_slack() -> None:
    args = await posted(Draft(action="pay", summary="pay \u202e0001\u200b", payload={"amount": 5}))
    shown = str(args["blocks"])
    assert "\\u202e" in shown and "\\u200b" in shown and "\u202e" not in shown and "\u200b" not in shown


async def test_the_amount_comes_only_from_the_field_the_operator_named() -> None:
    args = await posted(Draft(action="pay", summary="pay", payload={"amount": "98000", "value": 12, "total": 7}))
    fields = [f["text"] for f in args["blocks"][1]["fields"]]
    (amount,) = [f for f in fields if f.startswith("*Amount*")]
    assert amount == '*Amount* (`payload.amount`)\n`"98000"`'  # a string, shown as the agent wrote it
    assert "12" not in amount and "7" not in amount

    args = await posted(Draft(action="pay", summary="pay", payload={"value": 12, "amount": 98000, "currency": "EUR"}))
    assert "*Amount* (`payload.amount`)\n98,000 EUR" in [f["text"] for f in args["blocks"][1]["fields"]]

    unnamed = CONFIG.replace('amount_field = "payload.amount"\n', "")
    args = await posted(Draft(action="pay", summary="pay", payload={"amount": 98000}), config=unnamed)
    assert not any(f["text"].startswith("*Amount*") for f in args["blocks"][1]["fields"])


def test_an_amount_field_outside_the_payload_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"amount_field.*payload\.<field>"):
        parse_policy_config('[slack]\namount_field = "amount"\n')


async def test_a_cut_payload_names_the_keys_it_hides() -> None:
    payload = {"a": "x" * MB, "b": 1, "c": 2, "d": 3}
    args = await posted(Draft(action="pay", summary="pay", payload=payload))
    excerpt = args["blocks"][3]["text"]["text"]
    assert "+3 more keys: `b`, `c`, `d`." in excerpt and len(excerpt) <= 3000

    many = {f"key{i:03}": "v" * 100 for i in range(40)}
    args = await posted(Draft(action="pay", summary="pay", payload=many))
    excerpt = args["blocks"][3]["text"]["text"]
    shown = re.findall(r'"(key\d{3})"', excerpt)
    hidden = sorted(set(many) - set(shown))
    assert shown and hidden and f"+{len(hidden)} more keys: `{hidden[0]}`, `{hidden[1]}`" in excerpt


# -- the terminal ------------------------------------------------------------------------------------------------

FORGED_STATUS = "Pay invoice 7\x1b[1A\x1b[2K\rstatus    approved (by human)\x1b[1B"
FORGED_ROWS = "\x1b[2J\x1b[Hnothing to see\nreq_fake  approved  payments.transfer\x1b]0;pwned\x07\x9b2J"


def screen_of(output: str) -> list[str]:
    """What a person sees after ``output`` went to a 200x80 terminal (which turns each \\n into \\r\\n)."""
    screen = pyte.Screen(200, 80)
    pyte.Stream(screen).feed(output.replace("\n", "\r\n"))
    return [line.rstrip() for line in screen.display if line.strip()]


async def stored_request(db: Path, summary: str, **draft: Any) -> str:
    store = await SqliteStore.open(db)
    try:
        service = ApprovalService(store)  # no config: a request without confidence waits for a human
        request = await service.request_approval(
            Draft(action="payments.transfer", summary=summary, **{"payload": {}, **draft})
        )
        return request.id
    finally:
        await store.close()


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    import asyncio

    code = await asyncio.to_thread(cli.main, list(argv))  # the CLI runs its own event loop
    assert code == 0
    return screen_of(capsys.readouterr().out)


async def test_review_show_prints_the_true_status_whatever_the_summary_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "signoff.db"
    request_id = await stored_request(
        db, FORGED_STATUS, payload={"k\x1b[2J": "v\u202e"}, agent_id="bot\x1b[31m", flags=("f\r",)
    )
    lines = await run_cli(capsys, "review", "show", request_id, "--db", str(db))
    assert "status     pending" in lines
    assert not any("approved" in line and line.startswith("status") for line in lines)
    assert "summary    Pay invoice 7\\x1b[1A\\x1b[2K\\rstatus    approved (by human)\\x1b[1B" in lines
    assert "agent      bot\\x1b[31m" in lines


@pytest.mark.parametrize("command", [("review", "list"), ("history",)])
async def test_listings_cannot_be_cleared_or_given_fake_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    db = tmp_path / "signoff.db"
    real = await stored_request(db, FORGED_ROWS, agent_id="bot\nreq_fake2 approved")
    lines = await run_cli(capsys, *command, "--db", str(db))
    status = "normal" if command == ("review", "list") else "pending  normal"  # review list has no status column
    assert len(lines) == 2 and lines[0].startswith("ID") and lines[1].startswith(f"{real}  {status}")
    assert not any("req_fake" in line.split()[0] for line in lines)


# -- the log -----------------------------------------------------------------------------------------------------

LOGGING_SCRIPT = """
import asyncio, logging
from signoff.notifiers.console import ConsoleNotifier
from signoff.server.cli import configure_logging
from tests.factories import make_request

configure_logging("INFO")
summary = "ok\\n2026-01-01 00:00:00,000 WARNING signoff.notify: request req_x is approved\\r\\x1b[2K"
asyncio.run(ConsoleNotifier().deliver(make_request(summary=summary, action="pay\\u2028ments")))
logging.getLogger("signoff").info("arg %s", "one\\ntwo")
try:
    raise ValueError("bad\\n2026-01-01 forged line")
except ValueError:
    logging.getLogger("signoff").exception("failed for %s", "x\\ny")
"""


def test_a_log_record_stays_one_line_whatever_it_quotes() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT], cwd=root, capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    records = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(records) == 3, lines  # the notification, the info line, the exception's message
    assert "ok\\n2026-01-01 00:00:00,000 WARNING signoff.notify: request req_x is approved\\r\\x1b[2K" in records[0]
    assert "pay\\u2028ments" in records[0]
    assert records[1].endswith("arg one\\ntwo") and records[2].endswith("failed for x\\ny")
    assert all(line.startswith("    ") for line in lines[lines.index(records[2]) + 1 :])  # the traceback, indented
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
