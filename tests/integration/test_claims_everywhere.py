"""Claims outside the console: ``signoff review claim|release`` at the terminal, the lapse setting, and Slack's
message saying who is reviewing (and until when) through the same outbox path that updates it after a vote."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from signoff.server.workers import deliver_due
from signoff.storage import EventKind, Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from tests.integration.support import signoff
from tests.integration.test_cli import seed
from tests.integration.test_slack_delivery import draft, rig


async def test_a_reviewer_claims_and_releases_at_the_terminal_and_the_claim_blocks_no_vote(
    db: Path, env: dict[str, str]
) -> None:
    await seed(db, {"id": "req_claimable01", "agent_id": "billing-bot"}, {"id": "req_claimable02"})
    env = {**env, "SIGNOFF_CLAIM_MINUTES": "5"}
    claimed = await signoff(env, "review", "claim", "req_claimable01", "--as", "alice")
    assert claimed.returncode == 0 and "alice is reviewing req_claimable01 until" in claimed.stdout, claimed
    shown = json.loads((await signoff(env, "review", "show", "req_claimable01", "--json")).stdout)
    status = shown[0] if isinstance(shown, list) else shown
    assert status["claimed_by"] == "alice"
    at = datetime.fromisoformat(status["claimed_at"])
    store = await SqliteStore.open(db)
    try:
        stored = await store.get("req_claimable01")
        assert stored is not None and stored.claim_until == at + timedelta(minutes=5)  # SIGNOFF_CLAIM_MINUTES
    finally:
        await store.close()

    taken = await signoff(env, "review", "claim", "req_claimable01", "--as", "bob")
    assert taken.returncode != 0 and "alice is reviewing request req_claimable01" in taken.stderr, taken
    not_held = await signoff(env, "review", "release", "req_claimable01", "--as", "bob")
    assert not_held.returncode != 0 and "bob holds no claim" in not_held.stderr, not_held

    released = await signoff(env, "review", "release", "req_claimable01", "--as", "alice")
    assert released.returncode == 0 and "alice released req_claimable01" in released.stdout, released
    await signoff(env, "review", "claim", "req_claimable02", "--as", "alice")
    voted = await signoff(env, "review", "approve", "req_claimable02", "--as", "bob")  # alice's claim stops nobody
    assert voted.returncode == 0 and "is now approved" in voted.stdout, voted

    store = await SqliteStore.open(db)
    try:
        kinds = [e.kind for e in await store.request_events("req_claimable01")]
    finally:
        await store.close()
    assert kinds.count(EventKind.CLAIMED) == 1 and kinds.count(EventKind.RELEASED) == 1  # audit events


async def test_out_of_range_claim_minutes_stops_with_the_range(db: Path, env: dict[str, str]) -> None:
    await seed(db, {"id": "req_claimable03"})
    ran = await signoff({**env, "SIGNOFF_CLAIM_MINUTES": "0"}, "review", "claim", "req_claimable03", "--as", "al")
    assert ran.returncode != 0 and "SIGNOFF_CLAIM_MINUTES=0 is out of range; use 1 to 1440" in ran.stderr, ran


async def test_slack_shows_who_is_reviewing_until_when_and_clears_it_on_release(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, slack, fake, _):
        request = await service.request_approval(draft())
        await deliver_due(service, slack)
        claimed = await service.claim(request.id, "U0ALICE")
        await deliver_due(service, slack)
        await service.release(request.id, "U0ALICE")
        await deliver_due(service, slack)
        await service.claim(request.id, "U0ALICE")
        await service.vote(request.id, "U0ALICE", Verdict.APPROVE, None)
        await deliver_due(service, slack)
        assert (await service.get(request.id)).status is Status.APPROVED
    assert len(fake.of("chat.postMessage")) == 2  # the request, and the vote's reply in its thread
    on_claim, on_release, on_decision = fake.of("chat.update")[:3]
    assert claimed.claim_until is not None
    shown = str(on_claim.args["blocks"])
    assert "`U0ALICE` is reviewing (until <!date^" + str(int(claimed.claim_until.timestamp())) in shown
    assert "actions" in shown  # still pending: the buttons stay, and a claim blocks nobody's click
    assert "is reviewing" not in str(on_release.args["blocks"])
    assert "is reviewing" not in str(on_decision.args["blocks"]) and "Approved" in str(on_decision.args["blocks"])


async def test_a_claimers_name_cannot_mention_or_format_in_slack(tmp_path: Path) -> None:
    async with rig(tmp_path) as (service, slack, fake, _):
        request = await service.request_approval(draft())
        await deliver_due(service, slack)
        await service.claim(request.id, "U0ALICE")
        await deliver_due(service, slack)
    [update] = fake.of("chat.update")
    fields = [f for b in update.args["blocks"] for f in (b.get("fields") or [])]
    [reviewing] = [f["text"] for f in fields if f["text"].startswith("*Reviewing*")]
    assert reviewing.startswith("*Reviewing*\n`U0ALICE`")  # in code: it can neither link nor mention
    assert all(f.get("verbatim") for f in fields)
