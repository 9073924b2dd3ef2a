"""The approval lifecycle through ApprovalService, on the memory store with a clock we move by hand."""

from __future__ import annotations

import os

import anyio
import pytest

from signoff.storage import (
    ConfigError,
    Conflict,
    DecidedBy,
    EventKind,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestQuery,
    Status,
    Verdict,
)
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.audit import verify_chain, verify_store
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.views import next_step
from tests.fakes.clock import FakeClock

QUORUM_CONFIG = """
[[rules]]
name = "big transfers"
action = "payments.*"
when = [ { path = "payload.amount", op = "gt", value = 10000 } ]
outcome = "review"
approvals_required = 2
"""


def make_service(config: str = "") -> tuple[ApprovalService, MemoryStore, FakeClock]:
    store, clock = MemoryStore(), FakeClock()
    return ApprovalService(store, Policy(parse_policy_config(config)), clock, progress_interval=0.05), store, clock


def draft(**overrides: object) -> Draft:
    fields: dict[str, object] = {
        "action": "payments.transfer",
        "summary": "pay invoice 7",
        "payload": {"amount": 50},
        "confidence": 0.4,
        "agent_id": "billing-bot",
    }
    fields.update(overrides)
    return Draft(**fields)  # type: ignore[arg-type]


async def snapshot(store: MemoryStore) -> tuple[object, ...]:
    page = await store.list_requests(RequestQuery(limit=1000))
    return page.items, [e async for e in store.events()]


async def test_high_confidence_is_approved_by_policy_and_low_waits() -> None:
    service, _, _ = make_service()
    approved = await service.request_approval(draft(confidence=0.97))
    pending = await service.request_approval(draft(confidence=0.2))
    assert (approved.status, approved.decided_by) == (Status.APPROVED, DecidedBy.POLICY)
    assert (pending.status, pending.decided_by) == (Status.PENDING, None)
    assert [t.kind for t in pending.triggers] == ["confidence"]


async def test_quorum_needs_two_distinct_approvers() -> None:
    service, _, _ = make_service(QUORUM_CONFIG)
    request = await service.request_approval(draft(payload={"amount": 25000}, confidence=0.99))
    assert request.status is Status.PENDING and request.approvals_required == 2
    one = await service.vote(request.id, "alice", Verdict.APPROVE, None)
    assert one.status is Status.PENDING and len(one.approvals) == 1
    with pytest.raises(Conflict, match="alice already voted approve"):
        await service.vote(request.id, "Alice", Verdict.APPROVE, None)
    two = await service.vote(request.id, "bob", Verdict.APPROVE, "checked")
    assert (two.status, two.decided_by) == (Status.APPROVED, DecidedBy.HUMAN)
    assert [v.reviewer for v in two.votes] == ["alice", "bob"]


async def test_one_rejection_vetoes_and_needs_a_reason() -> None:
    service, store, _ = make_service(QUORUM_CONFIG)
    request = await service.request_approval(draft(payload={"amount": 25000}))
    await service.vote(request.id, "alice", Verdict.APPROVE, None)
    before = await snapshot(store)
    with pytest.raises(InvalidInput, match="needs a reason"):
        await service.vote(request.id, "bob", Verdict.REJECT, "  ")
    assert await snapshot(store) == before
    rejected = await service.vote(request.id, "bob", Verdict.REJECT, "wrong account")
    assert rejected.status is Status.REJECTED
    assert "Rejected by bob: wrong account" in next_step(rejected)


async def test_the_requester_cannot_vote_on_its_own_request() -> None:
    service, store, _ = make_service()
    request = await service.request_approval(draft(agent_id="billing-bot"))
    before = await snapshot(store)
    with pytest.raises(Forbidden, match="cannot vote"):
        await service.vote(request.id, "Billing-Bot", Verdict.APPROVE, None)
    assert await snapshot(store) == before


FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) for c in "BILLING") + "-BOT"  # what NFKC folds to BILLING-BOT


@pytest.mark.parametrize("alias", ["billing-bot ", FULL_WIDTH, "Billing-Bot", "billing\u200b-bot", "\u202ebilling-bot"])
async def test_the_requester_is_recognised_under_normalised_names(alias: str) -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft(agent_id="billing-bot"))
    with pytest.raises(Forbidden):
        await service.vote(request.id, alias, Verdict.APPROVE, None)


async def test_the_requester_is_recognised_through_people_aliases() -> None:
    service, _, _ = make_service('[[people]]\nname = "carol"\naliases = ["U0CAROL", "billing-bot"]\n')
    request = await service.request_approval(draft(agent_id="billing-bot"))
    with pytest.raises(Forbidden):
        await service.vote(request.id, "carol", Verdict.APPROVE, None)
    with pytest.raises(Forbidden):
        await service.vote(request.id, "carol.s", Verdict.APPROVE, None, reviewer_ids=("U0CAROL",))
    approved = await service.vote(request.id, "dave", Verdict.APPROVE, None, reviewer_ids=("U0DAVE",))
    assert approved.status is Status.APPROVED


async def test_a_second_decision_is_refused_naming_the_first() -> None:
    service, store, _ = make_service()
    request = await service.request_approval(draft())
    await service.vote(request.id, "alice", Verdict.APPROVE, None)
    before = await snapshot(store)
    with pytest.raises(Conflict, match="already approved by alice"):
        await service.vote(request.id, "bob", Verdict.REJECT, "too late")
    with pytest.raises(Conflict, match="already approved by alice"):
        await service.cancel(request.id, "changed my mind")
    assert await snapshot(store) == before


async def test_expiry_fails_closed_on_read_vote_and_sweep() -> None:
    service, _, clock = make_service()
    a = await service.request_approval(draft(expires_in_seconds=60))
    b = await service.request_approval(draft(expires_in_seconds=60))
    c = await service.request_approval(draft(expires_in_seconds=60))
    clock.advance(60)
    assert (await service.get(a.id)).status is Status.EXPIRED
    with pytest.raises(Conflict, match="expired"):
        await service.vote(b.id, "alice", Verdict.APPROVE, None)
    assert (await service.get(b.id)).status is Status.EXPIRED
    assert await service.expire_due() == 1
    expired = await service.get(c.id)
    assert expired.status is Status.EXPIRED and expired.decided_by is None and not expired.votes


async def test_cancel_closes_a_pending_request() -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft())
    cancelled = await service.cancel(request.id, "plan changed")
    assert (cancelled.status, cancelled.note) == (Status.CANCELLED, "plan changed")
    with pytest.raises(Conflict, match="cancelled"):
        await service.vote(request.id, "alice", Verdict.APPROVE, None)


async def test_idempotency_key_returns_the_first_request() -> None:
    service, store, _ = make_service()
    first = await service.request_approval(draft(idempotency_key="inv-7"))
    again = await service.request_approval(draft(idempotency_key="inv-7"))
    assert again.id == first.id
    before = await snapshot(store)
    with pytest.raises(Conflict, match="different action or payload"):
        await service.request_approval(draft(idempotency_key="inv-7", payload={"amount": 51}))
    assert await snapshot(store) == before


async def test_invalid_requests_store_nothing() -> None:
    service, store, _ = make_service()
    for bad in (
        draft(action=""),
        draft(summary=" "),
        draft(payload={"blob": "x" * 2_000_000}),
        draft(confidence=1.5),
        draft(idempotency_key=" "),
    ):
        with pytest.raises(InvalidInput):
            await service.request_approval(bad)
    assert await snapshot(store) == ((), [])


async def test_unknown_request_is_not_found() -> None:
    service, _, _ = make_service()
    with pytest.raises(NotFound, match="req_nope"):
        await service.get("req_nope")
    with pytest.raises(NotFound):
        await service.vote("req_nope", "alice", Verdict.APPROVE, None)


async def test_wait_returns_when_decided_and_reports_progress() -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft())
    progress: list[str] = []
    first_progress = anyio.Event()

    async def on_progress(done: float, total: float, message: str) -> None:
        progress.append(message)
        first_progress.set()

    result = None

    async def wait() -> None:
        nonlocal result
        result = await service.wait(request.id, 60, on_progress)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await first_progress.wait()
            await service.vote(request.id, "alice", Verdict.APPROVE, None)
    assert result is not None and result.status is Status.APPROVED
    assert progress[0] == "waiting for reviewers: 0 of 1 approvals"


async def test_a_wait_ends_when_the_request_expires() -> None:
    service = ApprovalService(MemoryStore(), progress_interval=60)  # the system clock: expiry comes in real time
    request = await service.request_approval(draft(expires_in_seconds=1))
    with anyio.fail_after(30):  # far less than the wait: only the expiry can end it in time
        result = await service.wait(request.id, 300)
    assert result.status is Status.EXPIRED


async def test_huge_integers_are_stored_and_judged_as_the_largest_float() -> None:
    service, _, _ = make_service("[anomaly]\nenabled = true\n")
    request = await service.request_approval(draft(payload={"amount": 10**400}))
    assert request.status is Status.PENDING and request.payload["amount"] == 10**400


async def test_wait_that_runs_out_returns_pending() -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft())
    with anyio.fail_after(30):
        result = await service.wait(request.id, 0.05)
    assert result.status is Status.PENDING


async def test_every_step_is_in_the_verified_audit_log() -> None:
    service, store, _ = make_service()
    request = await service.request_approval(draft())
    await service.vote(request.id, "alice", Verdict.REJECT, "no")
    kinds = [e.kind.value for e in await store.request_events(request.id)]
    assert kinds == ["created", "triggered", "voted", "decided"]
    assert (await verify_chain(store.events())).ok


ESCALATION_CONFIG = """
[[rules]]
name = "deploys"
action = "deploy.*"
outcome = "review"
escalate_after_seconds = 600
escalate_to = "S0ONCALL"
"""


async def test_a_request_nobody_decides_is_escalated_once_and_still_expires() -> None:
    service, store, clock = make_service(ESCALATION_CONFIG)
    request = await service.request_approval(draft(action="deploy.prod", expires_in_seconds=3600))
    decided = await service.request_approval(draft(action="deploy.staging"))
    await service.vote(decided.id, "alice", Verdict.APPROVE, None)
    other = await service.request_approval(draft(action="payments.transfer"))
    assert request.escalate_to == "S0ONCALL" and other.escalate_at is None
    clock.advance(599)
    assert await service.escalate_due() == 0
    clock.advance(1)
    assert await service.escalate_due() == 1
    assert await service.escalate_due() == 0  # once
    escalated = await service.get(request.id)
    assert escalated.status is Status.PENDING and escalated.escalated_at == clock.now()
    kinds = [e.kind for e in await store.request_events(request.id)]
    assert kinds.count(EventKind.ESCALATED) == 1
    assert EventKind.ESCALATED not in [e.kind for e in await store.request_events(decided.id)]
    clock.advance(3000)
    assert (await service.get(request.id)).status is Status.EXPIRED  # escalation never extends the deadline
    assert (await verify_store(store)).ok


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("escalate_after_seconds = 60\n", "needs both"),
        ('escalate_to = "S0ONCALL"\n', "needs both"),
        ('escalate_after_seconds = 0\nescalate_to = "S0ONCALL"\n', "at least 1"),
    ],
)
def test_escalation_settings_are_checked(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy_config(f'[[rules]]\nname = "r"\noutcome = "review"\n{rule}')


async def test_one_person_cannot_fill_two_seats_of_a_quorum_under_two_names() -> None:
    config = QUORUM_CONFIG + '\n[[people]]\nname = "dave"\naliases = ["U0DAVE", "dave-cli"]\n'
    service, _, _ = make_service(config)
    request = await service.request_approval(draft(payload={"amount": 25000}))
    await service.vote(request.id, "dave.smith", Verdict.APPROVE, None, reviewer_ids=("U0DAVE",))
    with pytest.raises(Conflict, match="already voted"):
        await service.vote(request.id, "dave-cli", Verdict.APPROVE, None)
    assert (await service.get(request.id)).status is Status.PENDING


async def test_a_human_only_request_is_never_approved_by_policy_alone() -> None:
    service, _, _ = make_service('default_outcome = "approve"\n[[rules]]\nname = "all"\noutcome = "approve"\n')
    plain = await service.request_approval(draft(confidence=1.0))
    gated = await service.request_approval(draft(action="models.promote", confidence=1.0, human_only=True))
    assert plain.status is Status.APPROVED
    assert gated.status is Status.PENDING and gated.decided_by is None
    assert gated.triggers[0].detail == "models.promote always needs a person's approval"


def test_request_ids_are_unique_across_random_blocks_and_a_fork() -> None:
    from signoff.tools.approvals.service import new_request_id

    ids = [new_request_id() for _ in range(2_000)]  # several 4 KiB blocks of randomness
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 and i.startswith("req_") and i[4:].isalnum() and i.islower() for i in ids)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the ids it would hand out next, if it kept the parent's block
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_request_id() for _ in range(10)]
    assert len(child) == 10
    assert not set(child) & set(parent), "a forked child handed out the ids its parent hands out next"
