"""Rules that check a request against trusted data: lookup tables in CSV and JSON files and queries on a read-only
SQLite database, on real files; failing lookups fail closed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from signoff.storage import ConfigError, Forbidden, Status, TriggerKind, Verdict
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Outcome, Policy, PolicyDecision, PolicyInput
from signoff.tools.approvals.policy_check import policy_faults
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService, Draft
from signoff.tools.approvals.trusted import TrustedData
from tests.fakes.clock import FakeClock

POLICY = """
[[lookups]]
name = "credit_limits"
file = "limits.csv"
key = "customer_id"
ttl_seconds = 60

[[lookups]]
name = "sanctioned"
file = "sanctioned.json"

[[lookups]]
name = "bureau"
database = "trusted.db"
query = "SELECT decision, score FROM bureau WHERE applicant = ?"
timeout_seconds = 0.2

[[rules]]
name = "over the credit limit"
action = "payments.*"
when = [
{ path = "payload.amount", op = "gt", lookup = "credit_limits", key = "payload.customer_id", column = "credit_limit" },
]
outcome = "review"

[[rules]]
name = "sanctioned account"
action = "payments.*"
when = [{ path = "payload.to_account", op = "exists", lookup = "sanctioned", value = true }]
outcome = "review"

[[rules]]
name = "disagrees with the bureau"
action = "loans.*"
when = [
  { path = "payload.recommendation", op = "ne", lookup = "bureau", key = "payload.applicant", column = "decision" },
]
outcome = "review"
"""


class Counting(TrustedData):
    """The real reader, counting how often it reads a source (to see the cache work)."""

    def __init__(self, base: Path, clock: FakeClock) -> None:
        super().__init__(base, clock=lambda: clock.now().timestamp())
        self.reads = 0

    def _read_file(self, lookup: Any) -> Any:
        self.reads += 1
        return super()._read_file(lookup)


@pytest.fixture
def trusted_dir(tmp_path: Path) -> Path:
    (tmp_path / "limits.csv").write_text("customer_id,credit_limit,name\nc-1,1200,Ada\nc-2,50000.5,Grace\n42,10,Num\n")
    (tmp_path / "sanctioned.json").write_text(json.dumps({"ACC-666": {"since": "2024-01-01"}, "ACC-777": True}))
    with sqlite3.connect(tmp_path / "trusted.db") as db:
        db.execute("CREATE TABLE bureau (applicant TEXT PRIMARY KEY, decision TEXT, score INTEGER)")
        db.executemany("INSERT INTO bureau VALUES (?, ?, ?)", [("a-1", "decline", 410), ("a-2", "approve", 780)])
    db.close()
    return tmp_path


def decide(trusted: TrustedData, action: str, policy: str = POLICY, **payload: Any) -> PolicyDecision:
    if action.startswith("payments."):
        payload.setdefault("to_account", "ACC-1")  # the sanctioned-list rule needs the field (missing fails closed)
    request = PolicyInput(
        action=action, summary="s", payload=payload, confidence=0.99, flags=(), agent_id="bot", expires_in_seconds=None
    )
    return Policy(parse_policy_config(policy)).evaluate(request, lookups=trusted)


def contradictions(decision: PolicyDecision) -> list[str]:
    return [t.detail for t in decision.triggers if t.kind is TriggerKind.CONTRADICTION]


def test_an_amount_over_the_trusted_credit_limit_goes_to_people_showing_both_values_and_the_file(
    trusted_dir: Path,
) -> None:
    trusted = TrustedData(trusted_dir)
    decision = decide(trusted, "payments.transfer", amount=5000, customer_id="c-1")
    assert decision.outcome is Outcome.REVIEW
    [detail] = contradictions(decision)
    assert "payload.amount gt credit_limits.credit_limit (was 5000 against 1200 from lookup credit_limits" in detail
    assert f"(file {trusted_dir / 'limits.csv'})" in detail and 'payload.customer_id = "c-1"' in detail
    assert decide(trusted, "payments.transfer", amount=500, customer_id="c-1").outcome is Outcome.APPROVE
    assert decide(trusted, "payments.transfer", amount=50000, customer_id="c-2").outcome is Outcome.APPROVE
    # a whole-number key finds the CSV row whose key cell reads the same
    assert decide(trusted, "payments.transfer", amount=11, customer_id=42).outcome is Outcome.REVIEW


def test_an_account_on_the_sanctioned_list_goes_to_people_and_others_pass(trusted_dir: Path) -> None:
    trusted = TrustedData(trusted_dir)
    decision = decide(trusted, "payments.transfer", amount=5, customer_id="c-1", to_account="ACC-666")
    [detail] = contradictions(decision)
    assert decision.outcome is Outcome.REVIEW
    assert (
        f'payload.to_account = "ACC-666" is listed in lookup sanctioned (file {trusted_dir / "sanctioned.json"})'
        in (detail)
    )
    assert decide(trusted, "payments.transfer", amount=5, customer_id="c-1", to_account="ACC-1").outcome is (
        Outcome.APPROVE
    )


def test_a_recommendation_that_contradicts_the_bureau_database_goes_to_people(trusted_dir: Path) -> None:
    trusted = TrustedData(trusted_dir)
    decision = decide(trusted, "loans.decide", recommendation="approve", applicant="a-1")
    [detail] = contradictions(decision)
    assert '(was "approve" against "decline" from lookup bureau (query on' in detail
    assert decide(trusted, "loans.decide", recommendation="approve", applicant="a-2").outcome is Outcome.APPROVE
    trusted.close()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"amount": 5, "customer_id": "nobody"}, 'payload.customer_id = "nobody" is not in lookup'),
        ({"amount": 5}, "payload.customer_id is missing, so lookup credit_limits has no key"),
        ({"amount": 5, "customer_id": {"id": 1}}, "is an object"),
    ],
)
def test_a_key_the_lookup_cannot_answer_fails_closed_with_the_reason(
    trusted_dir: Path, payload: dict[str, Any], reason: str
) -> None:
    decision = decide(TrustedData(trusted_dir), "payments.transfer", **payload)
    assert decision.outcome is Outcome.REVIEW
    [detail] = contradictions(decision)
    assert "cannot check payload.amount gt credit_limits.credit_limit" in detail and reason in detail
    assert detail.endswith("failing closed, a person must check")


def test_a_missing_file_a_bad_query_and_a_slow_query_each_fail_closed(trusted_dir: Path) -> None:
    (trusted_dir / "limits.csv").unlink()
    slow = POLICY.replace(
        "SELECT decision, score FROM bureau WHERE applicant = ?",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
        " SELECT count(*) AS decision FROM n WHERE i < 0 AND length(?) > 0",
    )
    trusted = TrustedData(trusted_dir)
    [missing] = contradictions(decide(trusted, "payments.transfer", amount=5, customer_id="c-1", to_account="A"))
    assert f"{trusted_dir / 'limits.csv'} does not exist" in missing
    bad = POLICY.replace("FROM bureau", "FROM no_such_table")
    [failed] = contradictions(decide(trusted, "loans.decide", bad, recommendation="approve", applicant="a-1"))
    assert "the query failed: no such table: no_such_table" in failed
    [late] = contradictions(decide(trusted, "loans.decide", slow, recommendation="approve", applicant="a-1"))
    assert "the query took longer than 0.2 s" in late
    trusted.close()


def test_an_approve_rule_whose_lookup_fails_does_not_approve(trusted_dir: Path) -> None:
    policy = """
[[lookups]]
name = "limits"
file = "gone.csv"
key = "id"
[[rules]]
name = "within the limit"
when = [{ path = "payload.amount", op = "lte", lookup = "limits", key = "payload.id", column = "limit" }]
outcome = "approve"
"""
    decision = decide(TrustedData(trusted_dir), "x.y", policy, amount=1, id="a")
    assert decision.outcome is Outcome.REVIEW and "gone.csv does not exist" in contradictions(decision)[0]


def test_without_a_reader_every_lookup_fails_closed() -> None:
    request = PolicyInput(
        action="payments.transfer",
        summary="s",
        payload={"amount": 1, "customer_id": "c-1", "to_account": "A"},
        confidence=0.99,
        flags=(),
        agent_id=None,
        expires_in_seconds=None,
    )
    decision = Policy(parse_policy_config(POLICY)).evaluate(request)
    assert decision.outcome is Outcome.REVIEW
    assert all("no trusted data source is available" in d for d in contradictions(decision))


def test_a_file_is_read_once_per_ttl_and_an_edit_shows_after_it(trusted_dir: Path) -> None:
    clock = FakeClock()
    trusted = Counting(trusted_dir, clock)
    assert decide(trusted, "payments.transfer", amount=1000, customer_id="c-1").outcome is Outcome.APPROVE
    (trusted_dir / "limits.csv").write_text("customer_id,credit_limit\nc-1,100\n")
    for _ in range(3):
        assert decide(trusted, "payments.transfer", amount=1000, customer_id="c-1").outcome is Outcome.APPROVE
    assert trusted.reads == 2  # the limits and the sanctioned list, once each
    clock.advance(61)  # past the limits' ttl_seconds (60), not the list's (300, the default)
    assert decide(trusted, "payments.transfer", amount=1000, customer_id="c-1").outcome is Outcome.REVIEW
    assert trusted.reads == 3


def test_a_database_is_opened_read_only(trusted_dir: Path) -> None:
    policy = POLICY.replace(
        "SELECT decision, score FROM bureau WHERE applicant = ?",
        "WITH x AS (SELECT ? AS k) SELECT decision FROM bureau, x WHERE applicant = k",
    )
    trusted = TrustedData(trusted_dir)
    assert decide(trusted, "loans.decide", policy, recommendation="decline", applicant="a-1").outcome is Outcome.APPROVE
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        trusted._connect(parse_policy_config(policy).lookup("bureau")).execute("DELETE FROM bureau")
    trusted.close()


@pytest.mark.parametrize(
    ("table", "fault"),
    [
        ('name = "a"\nfile = "x.csv"', "line 1: lookups[0]: a CSV file needs key"),
        ('name = "a"\nfile = "x.txt"', "line 3: lookups[0].file: 'x.txt' must end in .csv or .json"),
        ('name = "a"\ndatabase = "x.db"\nquery = "SELECT 1 WHERE ? AND ?"', "line 4: lookups[0].query: must have"),
        ('name = "a"\ndatabase = "x.db"\nquery = "DELETE FROM t WHERE k = ?"', "lookups[0].query: must be one SELECT"),
        ('name = "a"\nfile = "x.json"\nttl_seconds = 0', "line 4: lookups[0].ttl_seconds: must be from 1 to 86,400"),
        ('name = "a"\nfile = "x.json"\ndatabase = "x.db"', "give either file"),
    ],
)
def test_check_names_the_line_of_a_bad_lookup(table: str, fault: str) -> None:
    [found] = policy_faults(f"[[lookups]]\n{table}\n", "p.toml")
    assert fault in found, found


def test_a_rule_naming_an_unknown_lookup_is_refused_with_its_line() -> None:
    text = (
        '[[rules]]\nname = "r"\noutcome = "review"\n'
        'when = [{ path = "payload.a", op = "exists", lookup = "nope", value = true }]\n'
    )
    with pytest.raises(
        ConfigError, match=r"p.toml line 4: rules\[0\].when\[0\].lookup: no \[\[lookups\]\] named 'nope'"
    ):
        parse_policy_config(text, "p.toml")


async def test_the_service_stores_the_contradiction_and_caches_between_requests(trusted_dir: Path) -> None:
    clock = FakeClock()
    trusted = Counting(trusted_dir, clock)
    service = ApprovalService(MemoryStore(), Policy(parse_policy_config(POLICY)), clock, trusted=trusted)

    def draft(amount: int) -> Draft:
        return Draft(
            action="payments.transfer",
            summary="pay",
            payload={"amount": amount, "customer_id": "c-1", "to_account": "A"},
            confidence=0.99,
            agent_id="bot",
        )

    held = await service.request_approval(draft(5000))
    assert held.status is Status.PENDING
    assert [t.kind for t in held.triggers] == [TriggerKind.CONTRADICTION]
    assert (await service.request_approval(draft(100))).status is Status.APPROVED
    assert trusted.reads == 2  # each file once


def test_with_required_false_a_key_missing_from_the_table_simply_does_not_match(trusted_dir: Path) -> None:
    policy = POLICY.replace('column = "credit_limit" }', 'column = "credit_limit", required = false }')
    decision = decide(TrustedData(trusted_dir), "payments.transfer", policy, amount=5, customer_id="nobody")
    assert decision.outcome is Outcome.APPROVE


async def test_an_approval_with_changes_is_refused_while_a_lookup_cannot_answer_for_it(trusted_dir: Path) -> None:
    """A rule that could not be checked might have rejected the changed payload: the approval is refused (review F6),
    saying which rule and why without quoting a masked value, and nothing changes; a change every lookup answers for
    is approved."""
    policy = POLICY + '\n[redact]\npaths = ["payload.customer_id"]\n'
    decided = decide(TrustedData(trusted_dir), "payments.transfer", policy, amount=5, customer_id="c-9")
    assert decided.unchecked == (
        "rule 'over the credit limit' (review): cannot check payload.amount gt credit_limits.credit_limit:"
        f' payload.customer_id = "c-9" is not in lookup credit_limits (file {trusted_dir / "limits.csv"})',
    )
    store = MemoryStore()
    service = ApprovalService(store, Policy(parse_policy_config(policy)), trusted=TrustedData(trusted_dir))
    asked = {"amount": 5000, "customer_id": "c-1", "to_account": "A"}
    first, second = [
        await service.request_approval(Draft(action="payments.transfer", summary="pay", payload=asked, agent_id="bot"))
        for _ in range(2)
    ]
    assert first.status is Status.PENDING
    before = [e async for e in store.events()]
    with pytest.raises(Forbidden) as refused:
        await service.vote(first.id, "alice", Verdict.APPROVE, None, approved_payload={**asked, "customer_id": "c-9"})
    assert "cannot be checked" in refused.value.message and "over the credit limit" in refused.value.message
    assert "approve without changes" in refused.value.message and "c-9" not in refused.value.message
    assert await store.get(first.id) == first and [e async for e in store.events()] == before
    with pytest.raises(Forbidden, match="cannot be checked"):  # no key at all: the rule cannot be checked either
        await service.vote(first.id, "alice", Verdict.APPROVE, None, approved_payload={"amount": 5, "to_account": "A"})
    approved = await service.vote(second.id, "alice", Verdict.APPROVE, None, approved_payload={**asked, "amount": 100})
    assert approved.status is Status.APPROVED and approved.effective_payload == {**asked, "amount": 100}
