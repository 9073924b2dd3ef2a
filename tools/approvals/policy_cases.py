"""Policy test cases: requests with the outcome a policy must give them, like OPA's policy tests.

A cases file is TOML with one ``[[cases]]`` table per request; ``run_cases`` evaluates each against a policy and
says which do not get what they expect. ``[[histories]]`` name lists of recorded requests, oldest first; a case with
``after = "NAME"`` is judged against the history they build (``history.History``, as ``policy replay`` rebuilds it),
so anomaly, out-of-distribution and fairness cases can be written. Pure: the caller reads the files.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from signoff.storage import ActionHistory, ConfigError, DecidedBy, InvalidInput, Status, TriggerKind
from signoff.storage.canonical import is_finite_number
from signoff.storage.folding import fold_path
from signoff.storage.payload_numbers import history_names, numeric_leaves
from signoff.tools.approvals.history import History
from signoff.tools.approvals.lookups import LookupReader
from signoff.tools.approvals.policy import Policy, PolicyInput
from signoff.tools.toml_positions import Locator
from signoff.tools.typed_toml import Fault, build, non_empty_strings

__all__ = ["Case", "CaseResult", "Expect", "parse_cases", "run_cases"]


class Expect(enum.StrEnum):
    APPROVE = "approve"  #: approved by policy at once
    REVIEW = "review"  #: sent to people
    REJECT = "reject"  #: refused by a guardrail
    INVALID = "invalid"  #: refused as invalid input (a limit, a schema); nothing would be stored


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseHistory:
    """What the anomaly checks know before the request: as the server would fetch it from the database."""

    seen_from_agent: bool = True  #: this agent had this action approved before (false: a novel action)
    values: Any = None  #: recent numbers per payload field, e.g. { amount = [120, 80, 95] }

    def __post_init__(self) -> None:
        values = {} if self.values is None else self.values
        if not isinstance(values, dict):
            raise Fault(("values",), "must be a table of arrays of numbers, e.g. { amount = [120, 80, 95] }")
        for name, numbers in values.items():
            if not (isinstance(numbers, list | tuple) and all(map(is_finite_number, numbers))):
                raise Fault(("values", name), "must be an array of finite numbers")

    def history(self, fields: Iterable[str]) -> ActionHistory:
        """The history of the request's numeric ``fields`` (their ``history`` names: ``items.qty`` for
        ``items[].qty``), each with the numbers given for it under any case (as the stores keep them:
        ``storage.folding``)."""
        given: dict[str, list[float]] = {}
        for name, numbers in (self.values or {}).items():
            given.setdefault(fold_path(name), []).extend(map(float, numbers))
        values = {name: tuple(given.get(fold_path(name), ())) for name in fields}
        return ActionHistory(seen_from_agent=self.seen_from_agent, values=values)


@dataclass(frozen=True, kw_only=True, slots=True)
class Recorded:
    """``[[histories.requests]]``: a request as it was recorded, with the outcome it got."""

    action: str
    summary: str = "a recorded request"
    payload: Any = None  #: a table; none: {}
    confidence: float | None = None
    flags: tuple[str, ...] = ()
    agent_id: str | None = None
    status: Status = Status.APPROVED  #: what became of it
    decided_by: DecidedBy = DecidedBy.HUMAN  #: who decided it (``policy``: at once, with no person asked)
    repeat: int = 1  #: this request, this many times in a row

    def __post_init__(self) -> None:
        if self.payload is not None and not isinstance(self.payload, dict):
            raise Fault(("payload",), "must be a table, e.g. { amount = 120, currency = 'EUR' }")
        if not 1 <= self.repeat <= 100_000:
            raise Fault(("repeat",), f"must be from 1 to 100,000, not {self.repeat:,}")
        non_empty_strings(self.flags, "flags")


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedHistory:
    """``[[histories]]``: a named list of recorded requests, oldest first."""

    name: str
    requests: tuple[Recorded, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise Fault(("name",), "must not be empty; cases name the history with after = NAME")


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    name: str
    action: str
    expect: Expect
    summary: str = "a policy test case"
    payload: Any = None  #: a table; none: {}
    confidence: float | None = None
    flags: tuple[str, ...] = ()
    agent_id: str | None = None
    expires_in_seconds: int | None = None
    triggers: tuple[TriggerKind, ...] = ()  #: kinds that must be among the triggers that fire
    message: str | None = None  #: for expect = "invalid": words the refusal must contain
    history: CaseHistory | None = None  #: the numbers and novelty the anomaly check sees (overrides ``after``'s)
    after: str | None = None  #: the ``[[histories]]`` this case is judged after; none: no history at all
    recorded: tuple[Recorded, ...] = ()  #: that history's requests (filled in by ``parse_cases``)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise Fault(("name",), "must not be empty; the name is what a failure reports")
        if self.payload is not None and not isinstance(self.payload, dict):
            raise Fault(("payload",), "must be a table, e.g. { amount = 120, currency = 'EUR' }")
        non_empty_strings(self.flags, "flags")
        if self.message is not None and self.expect is not Expect.INVALID:
            raise Fault(("message",), 'applies only to cases with expect = "invalid"')


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseFile:
    cases: tuple[Case, ...] = ()
    histories: tuple[RecordedHistory, ...] = ()

    def __post_init__(self) -> None:
        if not self.cases:
            raise Fault(("cases",), "is empty; add at least one [[cases]] table")
        known = [h.name for h in self.histories]
        for index, name in enumerate(known):
            if name in known[:index]:
                raise Fault(("histories", index, "name"), f"duplicate history name {name!r}; use unique names")
        for index, case in enumerate(self.cases):
            if case.after is not None and case.after not in known:
                shown = ", ".join(repr(n) for n in known) or "none: add a [[histories]] table"
                raise Fault(("cases", index, "after"), f"no [[histories]] named {case.after!r} (there are {shown})")
        names = [c.name for c in self.cases]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise Fault(("cases", index, "name"), f"duplicate case name {name!r}; use unique names")


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseResult:
    case: Case
    line: int  #: where the case starts in its file
    got: Expect
    problem: str | None  #: None: the case passed

    @property
    def ok(self) -> bool:
        return self.problem is None


def parse_cases(text: str, source: str) -> list[tuple[Case, int]]:
    """The cases in a file, each with the line it starts on; a ConfigError names the line and key at fault.
    A case with ``after`` comes with the requests of that history (``histories_of``)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    locator = Locator(text)
    try:
        found = build(CaseFile, document, ())
    except Fault as fault:
        raise ConfigError(f"{source} line {locator.line(fault.key)}: {fault}") from None
    histories = {h.name: h for h in found.histories}
    cases = [
        dataclasses.replace(case, recorded=histories[case.after].requests) if case.after is not None else case
        for case in found.cases
    ]
    return [(case, locator.line(("cases", index))) for index, case in enumerate(cases)]


def run_cases(policy: Policy, cases: list[tuple[Case, int]], lookups: LookupReader | None = None) -> list[CaseResult]:
    """Evaluate each case; a result's ``problem`` says what the policy did instead of what was expected.
    ``lookups`` answers the policy's ``[[lookups]]`` (the real files and databases, read by the caller)."""
    return [_run(policy, case, line, lookups) for case, line in cases]


def _run(policy: Policy, case: Case, line: int, lookups: LookupReader | None) -> CaseResult:
    request = PolicyInput(
        action=case.action,
        summary=case.summary,
        payload=case.payload or {},
        confidence=case.confidence,
        flags=case.flags,
        agent_id=case.agent_id,
        expires_in_seconds=case.expires_in_seconds,
    )
    history, streams, profile = None, None, None
    if case.after is not None:
        history, streams, profile = built(policy, case.recorded).judged(request)
    if case.history is not None:
        history = case.history.history(history_names(numeric_leaves(request.payload)))
    try:
        decision = policy.evaluate(request, history, streams, profile, lookups)
    except InvalidInput as exc:
        if case.expect is not Expect.INVALID:
            return CaseResult(case=case, line=line, got=Expect.INVALID, problem=f"refused as invalid: {exc.message}")
        if case.message is not None and case.message.lower() not in exc.message.lower():
            problem = f"refused as invalid, but the message does not say {case.message!r}: {exc.message}"
            return CaseResult(case=case, line=line, got=Expect.INVALID, problem=problem)
        return CaseResult(case=case, line=line, got=Expect.INVALID, problem=None)
    got = Expect(decision.outcome.value)
    why = "; ".join(f"{t.kind}: {t.detail}" for t in decision.triggers)
    if got is not case.expect:
        return CaseResult(case=case, line=line, got=got, problem=f"expected {case.expect}, got {got} ({why})")
    fired = {t.kind for t in decision.triggers}
    missing = [kind.value for kind in case.triggers if kind not in fired]
    if missing:
        problem = f"{got} as expected, but no {', '.join(missing)} trigger fired ({why})"
        return CaseResult(case=case, line=line, got=got, problem=problem)
    return CaseResult(case=case, line=line, got=got, problem=None)


def built(policy: Policy, requests: tuple[Recorded, ...]) -> History:
    """The history ``requests`` build under ``policy``'s settings, each with the outcome it is recorded with."""
    history = History(policy)
    for entry in requests:
        recorded = PolicyInput(
            action=entry.action,
            summary=entry.summary,
            payload=entry.payload or {},
            confidence=entry.confidence,
            flags=entry.flags,
            agent_id=entry.agent_id,
            expires_in_seconds=None,
        )
        for _ in range(entry.repeat):
            history.add(recorded, entry.status, entry.decided_by)
    return history
