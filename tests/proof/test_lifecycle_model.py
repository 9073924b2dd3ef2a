"""Proof: the approval lifecycle agrees with a simple model over thousands of random sequences.

A Hypothesis state machine drives ``ApprovalService`` (on a ``MemoryStore``, a ``SqliteStore`` and a
``PostgresStore``) with a ``FakeClock``: it creates requests (random quorum, expiry, agent, idempotency key; some
escalate), votes as random reviewers (the requester, aliases of one person, repeated reviewers, approve or reject,
with or without a reason), cancels, moves the clock (also exactly to a deadline), expires, escalates, reads and uses
approvals (never once they lapsed), and answers permission prompts for the calls those requests describe (a policy
approval, or any approval of a request the agent made itself, never allows; only people's approval of a prompt's own
request does, once).
Beside it runs a pure model of what every request must be. After every step: no divergence, a decided request never
changes, nothing expired, cancelled or rejected is ever approved, each person's vote counts once, and the audit
chain verifies against the rows.

Anomaly detection is on (novel actions only): a confident request with no rule is approved by policy only once a
request for the same action from the same agent was approved; until then it waits for a person. A request that
people rejected, that expired or that its agent cancelled leaves the action novel (finding 4: asking again after a
"no" must not get a yes).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from signoff.storage import (
    ApprovalRequest,
    Conflict,
    DecidedBy,
    EventKind,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestQuery,
    SignoffError,
    Status,
    Store,
    Verdict,
)
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.approvals.postgres import PostgresStore
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.audit import verify_store
from signoff.tools.approvals.permissions import RECENT, permission
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import PERMISSION_PROMPT_FLAG, ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.pg_cluster import Cluster

T = TypeVar("T")

CONFIG = """
[anomaly]
enabled = true
novel_action = true
min_samples = 100000  # novelty only: the payloads' numbers are never judged here

[[people]]
name = "carol"
aliases = ["U0CAROL", "carol-bot"]

[[rules]]
name = "quorum"
action = "quorum.*"
outcome = "review"
approvals_required = {quorum}
escalate_after_seconds = 120
escalate_to = "S0LEADS"

[[rules]]
name = "guardrail"
action = "deny.*"
outcome = "reject"
"""

DEFAULT_EXPIRY = 3600
ESCALATE_AFTER = 120

#: What each kind of request is: (action, confidence); the policy above decides them as the model says.
KINDS: dict[str, tuple[str, float | None]] = {
    "plain": ("plain.act", None),  # no confidence, no rule: the default outcome, review by 1
    "low": ("low.act", 0.2),  # below the threshold: review by 1
    "quorum": ("quorum.act", 0.99),  # the quorum rule: review by N whatever the confidence, escalated after 120 s
    "auto": ("auto.act", 0.99),  # confident, no rule: approved by policy once known for the agent, else review by 1
    "deny": ("deny.act", 0.99),  # the guardrail: rejected by policy
}

FULL_WIDTH_ALICE = "\uff41\uff4c\uff49\uff43\uff45"  #: NFKC makes it "alice"

#: The person behind each name (after stripping): case and width fold, and [[people]] aliases are one person.
PERSON: dict[str, str] = {
    "alice": "alice",
    "Alice": "alice",
    FULL_WIDTH_ALICE: "alice",
    "bob": "bob",
    "BOB": "bob",
    "carol": "carol",
    "U0CAROL": "carol",
    "carol-bot": "carol",
    "dave": "dave",
    "agent-a": "agent-a",
}
REVIEWERS = ["alice", " alice", "Alice", FULL_WIDTH_ALICE, "bob", "BOB ", "carol", "U0CAROL", "carol-bot", "dave"]
AGENTS: list[str | None] = [None, "agent-a", "carol-bot", "alice"]
UNKNOWN_ID = "req_doesnotexist"


def person(name: str) -> str:
    return PERSON[name.strip()]


@dataclass(slots=True)
class ModelVote:
    person: str
    name: str
    verdict: Verdict
    comment: str | None


@dataclass(slots=True)
class ModelRequest:
    """What the model says a request must be."""

    agent: str | None
    action: str
    n: int  #: the payload is {"n": n}
    prompt: bool  #: made by a permission prompt
    required: int
    expires_at: datetime
    status: Status
    decided_by: DecidedBy | None
    decided_at: datetime | None
    escalate_at: datetime | None
    note: str | None = None
    votes: list[ModelVote] = field(default_factory=list)
    consumed: bool = False
    escalated_at: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        return self.status is Status.PENDING and now >= self.expires_at

    def expire(self, now: datetime) -> None:
        self.status, self.decided_at = Status.EXPIRED, now
        self.note = f"no decision before {self.expires_at.isoformat()}"

    def lapsed(self, now: datetime) -> bool:
        """An approval lapses with its request (the policy sets no receipt_ttl_seconds): nothing may use it."""
        return self.status is Status.APPROVED and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Frozen:
    """What a decided request looks like; it must never change again (except being used, once)."""

    status: Status
    decided_by: DecidedBy | None
    decided_at: datetime | None
    note: str | None
    votes: frozenset[tuple[str, str, str | None]]


def frozen(request: ApprovalRequest) -> Frozen:
    votes = frozenset((v.reviewer, v.verdict.value, v.comment) for v in request.votes)
    return Frozen(request.status, request.decided_by, request.decided_at, request.note, votes)


class LifecycleMachine(RuleBasedStateMachine):
    backend: ClassVar[str] = "memory"
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.tmp: Path | None = None
        self._store: Store | None = None
        self._service: ApprovalService | None = None
        self.clock = FakeClock()
        self.quorum = 1  #: approvals the quorum rule needs; drawn by open_store
        self.model: dict[str, ModelRequest] = {}
        self.keys: dict[tuple[str, str], tuple[str, str, int]] = {}  #: (agent, key) -> (id, action, n)
        self.frozen: dict[str, Frozen] = {}
        self.seen: dict[str, list[Status]] = {}
        self.known: set[tuple[str, str]] = set()  #: (agent or "", action) with an approved request: not novel

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def service(self) -> ApprovalService:
        assert self._service is not None
        return self._service

    @property
    def store(self) -> Store:
        assert self._store is not None
        return self._store

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(work)

    def attempt(self, work: Coroutine[Any, Any, ApprovalRequest]) -> ApprovalRequest | SignoffError:
        try:
            return self.run(work)
        except SignoffError as exc:
            return exc

    def check(self, outcome: ApprovalRequest | SignoffError | int, expected: type[SignoffError] | None) -> None:
        if expected is None:
            assert not isinstance(outcome, SignoffError), f"the model expected success, got {outcome!r}"
        else:
            assert isinstance(outcome, expected), f"the model expected {expected.__name__}, got {outcome!r}"
            assert str(outcome), "a domain error must say what to change"

    async def _open(self) -> Store:
        if self.backend == "memory":
            return MemoryStore()
        if self.backend == "postgresql":
            cluster = PostgresLifecycleMachine.cluster
            assert cluster is not None, "the postgres_cluster_for_the_machine fixture did not run"
            return await PostgresStore.open(cluster.new_database())
        self.tmp = Path(tempfile.mkdtemp(prefix="signoff-proof-"))
        return await SqliteStore.open(self.tmp / "signoff.db")

    def teardown(self) -> None:
        try:
            if self._store is not None:
                self.run(self._store.close())
        finally:
            self.runner.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    # -- rules ---------------------------------------------------------------------------------------

    @initialize(quorum=st.integers(min_value=1, max_value=4))
    def open_store(self, quorum: int) -> None:
        self.quorum = quorum
        self._store = self.run(self._open())
        policy = Policy(parse_policy_config(CONFIG.format(quorum=quorum)))
        self._service = ApprovalService(self.store, policy, self.clock)

    @rule(
        target=requests,
        kind=st.sampled_from(["plain", "low", "quorum", "quorum", "quorum", "auto", "auto", "deny"]),
        agent=st.sampled_from(AGENTS),
        expires=st.none() | st.integers(min_value=1, max_value=900),
        key=st.none() | st.sampled_from(["k1", "k2"]),
        n=st.integers(min_value=0, max_value=2),
        forged=st.booleans(),
    )
    def create(self, kind: str, agent: str | None, expires: int | None, key: str | None, n: int, forged: bool) -> Any:
        action, confidence = KINDS[kind]
        draft = Draft(
            action=action,
            summary=f"{kind} request {n}",
            payload={"n": n},
            confidence=confidence,
            flags=(PERMISSION_PROMPT_FLAG,) if forged else (),
            agent_id=agent,
            idempotency_key=key,
            expires_in_seconds=expires,
        )
        outcome = self.attempt(self.service.request_approval(draft))
        if forged:  # an agent may not pass its request off as a permission prompt's
            self.check(outcome, InvalidInput)
            return multiple()
        earlier = self.keys.get((agent or "", key)) if key is not None else None
        if earlier is not None:  # a retry with the same key: the first request, or an error if it differs
            first_id, first_action, first_n = earlier
            if (first_action, first_n) != (action, n):
                self.check(outcome, Conflict)
                return multiple()
            self.check(outcome, None)
            assert isinstance(outcome, ApprovalRequest) and outcome.id == first_id
            return first_id
        self.check(outcome, None)
        assert isinstance(outcome, ApprovalRequest)
        status = {"auto": Status.APPROVED, "deny": Status.REJECTED}.get(kind, Status.PENDING)
        if status is Status.APPROVED and (agent or "", action) not in self.known:
            status = Status.PENDING  # a novel action for this agent: a person decides
            assert any(t.detail.startswith("first request for action auto.act") for t in outcome.triggers)
        expected = ModelRequest(
            agent=agent,
            action=action,
            n=n,
            prompt=False,
            required=self.quorum if kind == "quorum" else 1,
            expires_at=self.now + timedelta(seconds=expires or DEFAULT_EXPIRY),
            status=status,
            decided_by=None if status is Status.PENDING else DecidedBy.POLICY,
            decided_at=None if status is Status.PENDING else self.now,
            escalate_at=self.now + timedelta(seconds=ESCALATE_AFTER) if kind == "quorum" else None,
        )
        assert outcome.id not in self.model, "a new request reused an id"
        self.model[outcome.id] = expected
        if status is Status.APPROVED:
            self.known.add((agent or "", action))
        if key is not None:
            self.keys[(agent or "", key)] = (outcome.id, action, n)
        return outcome.id

    @rule(
        request_id=requests | st.just(UNKNOWN_ID),
        reviewer=st.sampled_from(REVIEWERS),
        verdict=st.sampled_from(list(Verdict)),
        comment=st.sampled_from([None, "", "  ", "checked the invoice"]),
    )
    def vote(self, request_id: str, reviewer: str, verdict: Verdict, comment: str | None) -> None:
        outcome = self.attempt(self.service.vote(request_id, reviewer, verdict, comment))
        self.check(outcome, self.model_vote(request_id, reviewer, verdict, comment))

    @rule(request_id=requests, reviewer=st.sampled_from(REVIEWERS), comment=st.sampled_from([None, "ok"]))
    def approve(self, request_id: str, reviewer: str, comment: str | None) -> None:
        """Approvals are most of the traffic, and quorums need several: a second vote rule makes them likelier."""
        self.vote(request_id, reviewer, Verdict.APPROVE, comment)

    def model_vote(
        self, request_id: str, reviewer: str, verdict: Verdict, comment: str | None
    ) -> type[SignoffError] | None:
        reason = comment.strip() if comment else None
        if verdict is Verdict.REJECT and not reason:
            return InvalidInput
        request = self.model.get(request_id)
        if request is None:
            return NotFound
        if request.overdue(self.now):
            request.expire(self.now)
            return Conflict
        if request.status is not Status.PENDING:
            return Conflict
        who = person(reviewer)
        if request.agent is not None and person(request.agent) == who:
            return Forbidden
        if any(v.person == who for v in request.votes):
            return Conflict
        request.votes.append(ModelVote(who, reviewer.strip(), verdict, reason))
        approvals = sum(v.verdict is Verdict.APPROVE for v in request.votes)
        if verdict is Verdict.REJECT or approvals >= request.required:
            request.status = Status.REJECTED if verdict is Verdict.REJECT else Status.APPROVED
            request.decided_by, request.decided_at = DecidedBy.HUMAN, self.now
            if request.status is Status.APPROVED:
                self.known.add((request.agent or "", request.action))
        return None

    @rule(request_id=requests | st.just(UNKNOWN_ID), reason=st.sampled_from(["", "  ", "plan changed"]))
    def cancel(self, request_id: str, reason: str) -> None:
        outcome = self.attempt(self.service.cancel(request_id, reason))
        self.check(outcome, self.model_cancel(request_id, reason))

    def model_cancel(self, request_id: str, reason: str) -> type[SignoffError] | None:
        if not reason.strip():
            return InvalidInput
        request = self.model.get(request_id)
        if request is None:
            return NotFound
        if request.overdue(self.now):
            request.expire(self.now)
            return Conflict
        if request.status is not Status.PENDING:
            return Conflict
        request.status, request.decided_at, request.note = Status.CANCELLED, self.now, reason.strip()
        return None

    @rule(request_id=requests | st.just(UNKNOWN_ID))
    def read(self, request_id: str) -> None:
        outcome = self.attempt(self.service.get(request_id))
        request = self.model.get(request_id)
        if request is None:
            self.check(outcome, NotFound)
            return
        if request.overdue(self.now):
            request.expire(self.now)
        self.check(outcome, None)
        assert isinstance(outcome, ApprovalRequest) and outcome.status is request.status

    @rule(request_id=requests | st.just(UNKNOWN_ID))
    def consume(self, request_id: str) -> None:
        outcome = self.attempt(self.service.consume(request_id))
        request = self.model.get(request_id)
        if request is None:
            self.check(outcome, NotFound)
        elif request.status is not Status.APPROVED or request.consumed or request.lapsed(self.now):
            self.check(outcome, Conflict)
        else:
            self.check(outcome, None)
            request.consumed = True

    @rule(target=requests, request_id=requests, agent=st.sampled_from(["agent-a", "carol-bot", "alice"]))
    def permission_prompt(self, request_id: str, agent: str) -> Any:
        """A permission prompt for the call a request describes: allowed only by people's unused approval of a
        request an earlier prompt made for the same call; otherwise it waits on such a pending one, or asks anew."""
        source = self.model[request_id]
        same = [
            (rid, r) for rid, r in self.model.items() if r.agent == agent and r.action == source.action
        ]  # what the prompt searches: the newest RECENT requests for this tool and agent (the model keeps under)
        if len(same) >= RECENT:
            return multiple()
        payload = {"n": source.n}
        before = set(self.model)
        answer = self.run(permission(self.service, source.action, payload, agent_id=agent, wait_seconds=0))
        mine = [(rid, r) for rid, r in same if r.n == source.n and r.prompt]
        for _, r in mine:  # the prompt reads each of them, which expires an overdue one
            if r.overdue(self.now):
                r.expire(self.now)
        usable = [
            rid
            for rid, r in mine
            if r.status is Status.APPROVED and r.decided_by is DecidedBy.HUMAN and not r.consumed
            and not r.lapsed(self.now)
        ]  # fmt: skip
        event(f"permission prompt: {'allowed' if usable else 'denied'}")
        if usable:
            assert answer == {"behavior": "allow", "updatedInput": payload}, answer
            used = [rid for rid in usable if self.run(self.store.get(rid)).consumed_at is not None]  # type: ignore[union-attr]
            assert len(used) == 1, f"one allowed prompt must use exactly one approval, used {used}"
            self.model[used[0]].consumed = True
            return multiple()
        assert answer["behavior"] == "deny", f"nobody approved this prompt's call, yet it was allowed: {answer}"
        if any(r.status is Status.PENDING for _, r in mine):
            return multiple()  # it waited (0 s) on the pending one
        page = self.run(self.service.list_requests(RequestQuery(action=source.action, agent_id=agent, limit=50)))
        new = [r for r in page.items if r.id not in before]
        assert len(new) == 1 and PERMISSION_PROMPT_FLAG in new[0].flags, new
        kind = next(k for k, (a, _) in KINDS.items() if a == source.action)
        status = Status.REJECTED if kind == "deny" else Status.PENDING  # no confidence: people decide, but guardrails
        self.model[new[0].id] = ModelRequest(
            agent=agent,
            action=source.action,
            n=source.n,
            prompt=True,
            required=self.quorum if kind == "quorum" else 1,
            expires_at=self.now + timedelta(seconds=DEFAULT_EXPIRY),
            status=status,
            decided_by=DecidedBy.POLICY if status is Status.REJECTED else None,
            decided_at=self.now if status is Status.REJECTED else None,
            escalate_at=self.now + timedelta(seconds=ESCALATE_AFTER) if kind == "quorum" else None,
        )
        return new[0].id

    @rule(seconds=st.integers(min_value=0, max_value=400))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(request_id=requests)
    def advance_to_expiry(self, request_id: str) -> None:
        """Exactly to a request's deadline: at ``expires_at`` it is overdue (fail closed at the boundary)."""
        gap = (self.model[request_id].expires_at - self.now).total_seconds()
        if gap > 0:
            self.clock.advance(gap)

    @rule(request_id=requests)
    def advance_to_escalation(self, request_id: str) -> None:
        escalate_at = self.model[request_id].escalate_at
        if escalate_at is not None and escalate_at > self.now:
            self.clock.advance((escalate_at - self.now).total_seconds())

    @rule()
    def escalate_due(self) -> None:
        """Still pending at escalate_at: shown to escalate_to once; one already past its expiry expires instead."""
        count = self.run(self.service.escalate_due())
        escalated = 0
        for request in self.model.values():
            due = request.escalate_at is not None and request.escalate_at <= self.now
            if request.status is Status.PENDING and due and request.escalated_at is None:
                if request.overdue(self.now):
                    request.expire(self.now)
                else:
                    request.escalated_at = self.now
                    escalated += 1
        assert count == escalated, f"escalate_due escalated {count} requests; the model says {escalated}"

    @rule()
    def expire_due(self) -> None:
        due = [r for r in self.model.values() if r.overdue(self.now)]
        count = self.run(self.service.expire_due())
        for request in due:
            request.expire(self.now)
        assert count == len(due), f"expire_due closed {count} requests; {len(due)} were overdue"

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_model(self) -> None:
        if self._store is None:
            return
        for request_id, expected in self.model.items():
            stored = self.run(self.store.get(request_id))
            assert stored is not None, f"request {request_id} was lost"
            where = f"request {request_id}"
            assert stored.status is expected.status, f"{where}: store {stored.status}, model {expected.status}"
            assert stored.decided_by is expected.decided_by, where
            assert stored.decided_at == expected.decided_at, where
            assert stored.approvals_required == expected.required, where
            assert stored.expires_at == expected.expires_at, where
            assert stored.escalate_at == expected.escalate_at, where
            assert stored.escalated_at == expected.escalated_at, where
            assert (stored.consumed_at is not None) == expected.consumed, where
            if stored.status is Status.CANCELLED or stored.status is Status.EXPIRED:
                assert stored.note == expected.note, where
            votes = sorted((person(v.reviewer), v.reviewer, v.verdict.value, v.comment or None) for v in stored.votes)
            wanted = sorted((v.person, v.name, v.verdict.value, v.comment or None) for v in expected.votes)
            assert votes == wanted, f"{where}: votes {votes}, model {wanted}"
            self.check_one(request_id, stored)

    def check_one(self, request_id: str, stored: ApprovalRequest) -> None:
        persons = [person(v.reviewer) for v in stored.votes]
        assert len(persons) == len(set(persons)), f"request {request_id}: one person voted twice: {stored.votes}"
        history = self.seen.setdefault(request_id, [])
        if not history or history[-1] is not stored.status:
            history.append(stored.status)
        assert len(history) == 1 or history == [Status.PENDING, stored.status], f"{request_id} went {history}"
        if stored.status.is_terminal:
            snapshot = self.frozen.setdefault(request_id, frozen(stored))
            assert frozen(stored) == snapshot, f"decided request {request_id} changed: {snapshot} -> {stored}"
        if stored.status is Status.APPROVED and stored.decided_by is DecidedBy.HUMAN:
            assert len(stored.approvals) >= stored.approvals_required
            assert all(v.verdict is Verdict.APPROVE for v in stored.votes), "an approved request has a veto"
        events = self.run(self.store.request_events(request_id))
        kinds = [e.kind for e in events]
        closing = [e for e in events if e.kind in (EventKind.DECIDED, EventKind.EXPIRED, EventKind.CANCELLED)]
        assert len(closing) == (1 if stored.status.is_terminal else 0), f"request {request_id}: events {kinds}"
        if closing and closing[0].kind is EventKind.DECIDED:
            assert closing[0].data["status"] == stored.status.value
        assert kinds.count(EventKind.VOTED) == len(stored.votes)
        assert kinds.count(EventKind.CONSUMED) == (stored.consumed_at is not None)
        assert kinds.count(EventKind.ESCALATED) == (stored.escalated_at is not None)

    @invariant()
    def audit_chain_verifies(self) -> None:
        if self._store is None:
            return
        report = self.run(verify_store(self.store))
        assert report.ok, report


LifecycleMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycleOnMemoryStore = LifecycleMachine.TestCase


class SqliteLifecycleMachine(LifecycleMachine):
    backend: ClassVar[str] = "sqlite"


SqliteLifecycleMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycleOnSqliteStore = SqliteLifecycleMachine.TestCase


class PostgresLifecycleMachine(LifecycleMachine):
    backend: ClassVar[str] = "postgresql"
    cluster: ClassVar[Cluster | None] = None  #: set by the fixture below: each example gets a fresh database


@pytest.fixture
def postgres_cluster_for_the_machine(pg_cluster: Cluster) -> None:
    PostgresLifecycleMachine.cluster = pg_cluster


PostgresLifecycleMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycleOnPostgresStore = pytest.mark.usefixtures("postgres_cluster_for_the_machine")(
    PostgresLifecycleMachine.TestCase
)


async def test_one_person_under_two_names_is_one_approver() -> None:
    """The state machine's shortest counterexample, kept as a plain test: [[people]] makes carol and U0CAROL one
    person, so her second vote under another name must not complete a quorum of two."""
    policy = Policy(parse_policy_config(CONFIG.format(quorum=2)))
    service = ApprovalService(MemoryStore(), policy, FakeClock())
    request = await service.request_approval(Draft(action="quorum.act", summary="pay", payload={}, agent_id="agent-a"))
    await service.vote(request.id, "carol", Verdict.APPROVE, None)
    with pytest.raises(Conflict):
        await service.vote(request.id, "U0CAROL", Verdict.APPROVE, None)
    assert (await service.get(request.id)).status is Status.PENDING


@pytest.mark.parametrize("close", ["reject", "cancel", "expire"])
async def test_asking_again_after_a_request_closed_without_approval_is_still_novel(close: str) -> None:
    """The state machine's finding-4 counterexamples, kept as plain tests: a confident request for a novel action
    waits for a person; when that request is rejected, cancelled or expires, the identical request waits again."""
    clock = FakeClock()
    service = ApprovalService(MemoryStore(), Policy(parse_policy_config(CONFIG.format(quorum=1))), clock)
    draft = Draft(action="auto.act", summary="export", payload={"n": 1}, confidence=0.99, agent_id="agent-a")
    first = await service.request_approval(draft)
    assert first.status is Status.PENDING
    if close == "reject":
        await service.vote(first.id, "alice", Verdict.REJECT, "no")
    elif close == "cancel":
        await service.cancel(first.id, "plan changed")
    else:
        clock.advance(DEFAULT_EXPIRY)
        assert await service.expire_due() == 1
    again = await service.request_approval(draft)
    assert again.status is Status.PENDING
    await service.vote(again.id, "alice", Verdict.APPROVE, None)
    assert (await service.request_approval(draft)).status is Status.APPROVED
