"""Approve with changes in the domain core: the changed payload passes the policy as a new request would, only a
reviewer who could approve it may, and the decision, the audit log and the receipt all carry it."""

from __future__ import annotations

import pytest

from signoff.storage import EventKind, Forbidden, InvalidInput, Status, Verdict
from signoff.storage.audit import verify_store
from signoff.storage.canonical import payload_sha256
from signoff.tools.approvals import receipts
from signoff.tools.approvals.views import ApprovalStatus
from tests.unit.test_service import QUORUM_CONFIG, draft, make_service

KEY = b"k" * 32

POLICY = """
[[people]]
name = "carol"
aliases = ["U0CAROL"]

[[schemas]]
action = "payments.*"
schema = { type = "object", required = ["amount", "to"], properties = { amount = { type = "number" } } }

[[rules]]
name = "no transfers to the sanctioned"
action = "payments.*"
when = [ { path = "payload.to", op = "eq", value = "EVIL" } ]
outcome = "reject"

[[rules]]
name = "treasury only"
action = "payments.*"
when = [ { path = "payload.amount", op = "gt", value = 5000 } ]
outcome = "review"
approvers = ["carol"]
"""


async def test_approving_with_changes_decides_with_the_changed_payload_and_records_both() -> None:
    service, store, _ = make_service(POLICY)
    request = await service.request_approval(draft(payload={"amount": 900, "to": "ACME"}))
    approved = await service.vote(
        request.id, "alice", Verdict.APPROVE, "capped", approved_payload={"amount": 90, "to": "ACME"}
    )
    assert approved.status is Status.APPROVED and approved.payload_changed
    assert approved.payload == {"amount": 900, "to": "ACME"}  # what was asked is kept
    assert approved.effective_payload == {"amount": 90, "to": "ACME"}
    assert await store.get(request.id) == approved
    decided = [e for e in await store.request_events(request.id) if e.kind is EventKind.DECIDED]
    created = [e for e in await store.request_events(request.id) if e.kind is EventKind.CREATED]
    assert created[0].data["payload"] == {"amount": 900, "to": "ACME"}
    assert decided[0].data["approved_payload"] == {"amount": 90, "to": "ACME"}
    assert decided[0].data["approved_payload_sha256"] == payload_sha256(request.action, {"amount": 90, "to": "ACME"})
    assert (await verify_store(store)).ok
    status = ApprovalStatus.of(approved)
    assert status.payload_changed and status.approved_payload == {"amount": 90, "to": "ACME"}


async def test_the_receipt_binds_the_changed_payload_not_the_asked_one() -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft(payload={"amount": 900, "to": "ACME"}))
    approved = await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 1, "to": "x"})
    receipt = receipts.issue(KEY, approved)
    assert receipt is not None
    assert await service.verify_receipt(KEY, receipt, request.action, {"amount": 1, "to": "x"}) is None
    refused = await service.verify_receipt(KEY, receipt, request.action, {"amount": 900, "to": "ACME"})
    assert refused is not None and "approved_payload" in refused
    other = await service.verify_receipt(KEY, receipt, request.action, {"amount": 2, "to": "x"})
    assert other is not None and "differs" in other


@pytest.mark.parametrize(
    ("changed", "error", "words"),
    [
        ({"amount": "lots", "to": "ACME"}, InvalidInput, "schema"),
        ({"amount": 5}, InvalidInput, "required"),
        ({"amount": 5, "to": "EVIL"}, Forbidden, "no transfers to the sanctioned"),
        ({"amount": 9000, "to": "ACME"}, Forbidden, "routes it to carol"),
        ({"amount": 5, "to": "x" * 2_000_000}, InvalidInput, "payload"),
        ([1, 2], InvalidInput, "JSON object"),
        ({"amount": float("nan"), "to": "ACME"}, InvalidInput, "plain JSON"),
    ],
)
async def test_a_changed_payload_the_policy_would_refuse_changes_nothing(
    changed: object, error: type[Exception], words: str
) -> None:
    service, store, _ = make_service(POLICY)
    request = await service.request_approval(draft(payload={"amount": 900, "to": "ACME"}))
    before = [e async for e in store.events()]
    with pytest.raises(error, match=words):
        await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload=changed)  # type: ignore[arg-type]
    assert await store.get(request.id) == request
    assert [e async for e in store.events()] == before


async def test_the_policys_approver_may_approve_a_change_it_routes_to_them() -> None:
    service, _, _ = make_service(POLICY)
    request = await service.request_approval(draft(payload={"amount": 900, "to": "ACME"}))
    approved = await service.vote(
        request.id, "carol", Verdict.APPROVE, None, approved_payload={"amount": 9000, "to": "A"}
    )
    assert approved.status is Status.APPROVED and approved.effective_payload == {"amount": 9000, "to": "A"}


async def test_a_request_needing_several_approvals_cannot_be_changed() -> None:
    service, store, _ = make_service(QUORUM_CONFIG)
    request = await service.request_approval(draft(payload={"amount": 25000}, confidence=0.99))
    with pytest.raises(InvalidInput, match="needs 2 approvals"):
        await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 20000})
    assert await store.get(request.id) == request


async def test_a_change_that_needs_more_approvals_than_asked_is_refused() -> None:
    service, store, _ = make_service(QUORUM_CONFIG)
    request = await service.request_approval(draft(payload={"amount": 50}))
    with pytest.raises(Forbidden, match="needs 2 approvals under the policy"):
        await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 25000})
    assert await store.get(request.id) == request


async def test_the_same_payload_is_a_plain_approval_and_a_rejection_cannot_change_it() -> None:
    service, _, _ = make_service()
    request = await service.request_approval(draft(payload={"amount": 50}))
    with pytest.raises(InvalidInput, match="only an approval"):
        await service.vote(request.id, "alice", Verdict.REJECT, "no", approved_payload={"amount": 5})
    approved = await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 50})
    assert approved.status is Status.APPROVED and not approved.payload_changed


async def test_the_requester_and_strangers_cannot_approve_with_changes_either() -> None:
    service, store, _ = make_service()
    request = await service.request_approval(draft(payload={"amount": 50}, agent_id="alice"))
    with pytest.raises(Forbidden, match="cannot vote"):
        await service.vote(request.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 5})
    assert await store.get(request.id) == request


async def test_a_model_plane_request_is_not_approved_with_changes() -> None:
    service, store, _ = make_service()
    request = await service.request_approval(draft(action="models.promote", payload={"version": "2"}))
    with pytest.raises(Forbidden, match="model plane"):
        await service.vote(request.id, "bob", Verdict.APPROVE, None, approved_payload={"version": "3"})
    assert await store.get(request.id) == request
