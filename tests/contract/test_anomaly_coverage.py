"""The numeric anomaly check fails closed on every engine (review R3-A): a far amount hidden behind 32 numeric
decoy keys, or put in a list, goes to a person, and ``policy replay`` over what the store recorded agrees."""

from __future__ import annotations

from signoff.storage import RequestQuery, Status, Store
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.replay import replay
from signoff.tools.approvals.service import ApprovalService, Draft

ANOMALY = "[anomaly]\nenabled = true\nnovel_action = false\nmin_samples = 5\n"
POLICY = Policy(parse_policy_config('default_outcome = "approve"\n' + ANOMALY))


async def test_every_store_sends_a_payload_with_unjudged_numbers_to_a_person_and_replay_agrees(store: Store) -> None:
    service = ApprovalService(store, POLICY)

    async def ask(payload: dict[str, object]) -> Status:
        draft = Draft(action="refunds.issue", summary="refund", payload=payload, agent_id="bot")
        return (await service.request_approval(draft)).status

    for usual in (120, 80, 95, 130, 110, 100):
        assert await ask({"amount": usual}) is Status.APPROVED
    assert await ask({"amount": 10**9, **{f"_{i:02d}": 0 for i in range(32)}}) is Status.PENDING
    assert await ask({"amount": [10**9]}) is Status.PENDING
    assert await ask({"amount": 105, **{f"_{i:02d}": 0 for i in range(31)}}) is Status.APPROVED  # 32: all judged
    recorded = (await store.list_requests(RequestQuery(limit=100))).items
    report = replay(POLICY, sorted(recorded, key=lambda r: r.created_at))
    assert report.transitions == {} and report.unchanged == 9
