"""Block Kit rendering stays within Slack's limits and escapes what agents and reviewers wrote."""

from __future__ import annotations

import pytest

from signoff.notifiers.slack_blocks import headline, request_blocks
from signoff.storage import DecidedBy, Status, Verdict, Vote
from tests.factories import T0, make_request

WORST_CASES = {
    "markup-heavy payload": make_request(payload={"html": "<" * 1400, "more": "&" * 3000}),
    "long rejection": make_request(
        status=Status.REJECTED,
        decided_by=DecidedBy.HUMAN,
        decided_at=T0,
        votes=(Vote(reviewer="b<o>b", verdict=Verdict.REJECT, comment="R&D <prod> " * 180, at=T0),),
    ),
    "long cancel note": make_request(status=Status.CANCELLED, decided_at=T0, note="&" * 2000),
    "long summary": make_request(summary="<" * 2000),
}


@pytest.mark.parametrize("request_", WORST_CASES.values(), ids=WORST_CASES.keys())
def test_every_block_fits_slacks_limits(request_: object) -> None:
    blocks = [block.to_dict() for block in request_blocks(request_)]  # type: ignore[arg-type]  # validates limits
    assert blocks and len(headline(request_)) <= 3000  # type: ignore[arg-type]


def test_what_agents_wrote_cannot_mention_or_link_in_the_fallback_text() -> None:
    request = make_request(agent_id="<@U0ALICE>", summary="<!channel> urgent <https://evil.example|approve>")
    text = headline(request)
    assert "<" not in text and "&lt;!channel&gt;" in text
    assert "<!channel>" not in str([b.to_dict() for b in request_blocks(request)])
