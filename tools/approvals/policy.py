"""The policy engine: validates a request and decides approve, review or reject, and why.

Pure and deterministic: no I/O, no clock. The same request, config and history always give
the same decision. See "Policy reference" in README.md for the semantics this module implements.
Whether a rule applies (action globs, conditions, failing closed on shapes they cannot judge) is decided in
``conditions``; action schemas (``[[schemas]]``) are checked in ``validate``, with the other input limits.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
import re
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from referencing.exceptions import Unresolvable

from signoff.storage import ActionHistory, InvalidInput, Priority, Trigger, TriggerKind
from signoff.storage.canonical import canonical_json, is_number
from signoff.storage.payload_numbers import (
    JUDGED_FIELDS,
    JUDGED_ITEMS,
    NUMBER_DEPTH,
    NumericField,
    NumericFields,
    numeric_fields,
)
from signoff.tools.access import person_of
from signoff.tools.approvals import fairness, shape
from signoff.tools.approvals.conditions import (
    Ask,
    Match,
    Unclear,
    action_glob,
    lookup_request_key,
    match_rule,
    resolve,
    show,
)
from signoff.tools.approvals.lookups import Lookup, LookupReader
from signoff.tools.approvals.policy_config import DEFAULT_VERSION, ActionSchema, Outcome, PolicyConfig, Rule
from signoff.tools.approvals.priority import highest

__all__ = ["Outcome", "Policy", "PolicyDecision", "PolicyInput"]

ACTION_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_MAD_SCALE = 0.6745  # Iglewicz & Hoaglin: makes MAD comparable to a standard deviation
_MEAN_AD_SCALE = 1.253314  # sqrt(pi/2): the same for the mean absolute deviation


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyInput:
    action: str
    summary: str
    payload: Mapping[str, Any]  #: must be a JSON object
    confidence: float | None
    flags: tuple[str, ...]
    agent_id: str | None
    expires_in_seconds: int | None  #: what the agent asked for, if anything
    #: the payload's size as canonical JSON when the caller already knows it (replay reads it as stored); None:
    #: measured here
    payload_bytes: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyDecision:
    outcome: Outcome
    triggers: tuple[Trigger, ...]  #: strongest first; never empty
    approvals_required: int
    expires_in_seconds: int
    priority: Priority
    channel: str | None = None  #: the Slack channel to ask in (None: the server's default)
    approvers: tuple[str, ...] = ()  #: Slack user/group ids who may vote in Slack (empty: nobody there)
    escalate_after_seconds: int | None = None  #: from the first matching rule that sets it
    escalate_to: str | None = None
    rules: tuple[str, ...] = ()  #: the names of the rules that matched, in file order
    #: each rule whose lookup could not answer (it failed closed: the request goes to people), and why
    unchecked: tuple[str, ...] = ()


class Policy:
    """Decides what happens to a request under one ``PolicyConfig``.

    ``version`` is recorded with every request it decides: ``policy_version`` of the file's text; without one,
    ``defaults`` for the built-in policy and ``inline`` for a config built in code."""

    def __init__(self, config: PolicyConfig | None = None, version: str | None = None) -> None:
        self.config = config if config is not None else PolicyConfig()
        self.version = version or (DEFAULT_VERSION if config is None else "inline")
        #: per action (the last 4,096; ``evaluate`` asks only for validated ones, at most ``max_action_chars``), the
        #: rules whose action globs it matches and the ``[[fairness.groups]]`` that watch it: ``evaluate`` checks only
        #: those rules, and a policy sees the same few actions many times
        self._for_action = functools.lru_cache(maxsize=4096)(self._applicable)

    def _applicable(self, action: str) -> tuple[tuple[Rule, ...], tuple[int, ...]]:
        config = self.config
        rules = tuple(r for r in config.rules if not r.action or action_glob(action, r.action) is not None)
        groups = config.fairness.groups
        watched = tuple(i for i, g in enumerate(groups) if not g.action or action_glob(action, g.action) is not None)
        return rules, watched

    def same_person(self, requester: str, *names: str) -> bool:
        """Whether any of ``names`` is the requester, directly or through a ``[[people]]`` alias."""
        person = person_of(self.config.people, requester)
        return any(person_of(self.config.people, name) == person for name in names)

    def watched_groups(self, action: str) -> list[int]:
        """The indexes of the ``[[fairness.groups]]`` that judge ``action``: ``evaluate`` wants their counts. Not
        kept per action: the server asks before it validates the request (the action may be any length)."""
        groups = self.config.fairness.groups
        return [i for i, g in enumerate(groups) if not g.action or action_glob(action, g.action) is not None]

    @property
    def wants_profile(self) -> bool:
        """Whether ``evaluate`` uses a ``PayloadProfile`` (an out-of-distribution check is on)."""
        anomaly = self.config.anomaly
        return anomaly.enabled and (anomaly.new_values or anomaly.key_set or anomaly.text_length)

    @property
    def wants_history(self) -> bool:
        """Whether ``evaluate`` uses an ``ActionHistory`` (anomaly detection is enabled)."""
        return self.config.anomaly.enabled

    def validate(self, request: PolicyInput, explain: bool = True) -> None:
        """Raise ``InvalidInput`` saying what to change if the request breaks a rule or a limit. With ``explain``
        off, a payload a schema refuses is refused without finding which part breaks it (jsonschema's
        ``best_match`` is most of the cost of a refused payload): ``policy replay`` counts refusals and asks again,
        explained, for the few it shows. The same requests are refused either way."""
        limits, config = self.config.limits, self.config
        action = request.action
        if not isinstance(action, str) or not action:
            raise InvalidInput("action is empty; name the action to approve, e.g. payments.transfer or Bash.")
        if len(action) > limits.max_action_chars:
            raise InvalidInput(
                f"action is {len(action):,} characters; the limit is {limits.max_action_chars:,} "
                "(limits.max_action_chars). Use a short action name and put the details in the payload."
            )
        if not ACTION_PATTERN.fullmatch(action):
            raise InvalidInput(
                f"action {show(action)} has characters that are not allowed. Use letters, digits and "
                "_ . : / - and start with a letter, digit or _, e.g. payments.transfer or "
                "mcp__github__create_issue."
            )
        summary = request.summary
        if not isinstance(summary, str) or not summary.strip():
            raise InvalidInput("summary is empty; say in one sentence what will happen if this is approved.")
        if len(summary) > limits.max_summary_chars:
            raise InvalidInput(
                f"summary is {len(summary):,} characters; the limit is {limits.max_summary_chars:,} "
                "(limits.max_summary_chars). Shorten it and put the details in the payload."
            )
        self._validate_payload(request.payload, request.payload_bytes)
        if (problem := schema_violation(config.schemas, action, request.payload, explain)) is not None:
            raise InvalidInput(problem)
        confidence = request.confidence
        if confidence is not None:
            if not is_number(confidence):
                raise InvalidInput(
                    f"confidence must be a number from 0 to 1, not {show(confidence)}; send a number or omit it."
                )
            if not (math.isfinite(confidence) and 0 <= confidence <= 1):
                raise InvalidInput(f"confidence {confidence} is outside 0 to 1; send a number from 0 to 1, or omit it.")
        self._validate_flags(request.flags)
        self.validate_agent_id(request.agent_id)
        expires = request.expires_in_seconds
        if expires is not None and (
            isinstance(expires, bool)
            or not isinstance(expires, int)
            or not 1 <= expires <= config.max_expires_in_seconds
        ):
            raise InvalidInput(
                f"expires_in_seconds {show(expires)} is out of range; use a whole number from 1 to "
                f"{config.max_expires_in_seconds:,} (max_expires_in_seconds), or omit it for the default "
                f"({config.default_expires_in_seconds:,})."
            )

    def validate_agent_id(self, agent_id: Any) -> None:
        """Raise ``InvalidInput`` if the policy would refuse ``agent_id`` (None is accepted: no agent_id). Also for
        changes applied before they are recorded (a model rollback): checked first, so none is left unrecorded."""
        if agent_id is None:
            return
        limits = self.config.limits
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidInput("agent_id is empty; give a non-empty identifier or omit it.")
        if len(agent_id) > limits.max_agent_id_chars:
            raise InvalidInput(
                f"agent_id is {len(agent_id):,} characters; the limit is {limits.max_agent_id_chars:,} "
                "(limits.max_agent_id_chars). Use a shorter identifier."
            )

    def _validate_payload(self, payload: Any, known_bytes: int | None = None) -> None:
        if not isinstance(payload, Mapping):
            raise InvalidInput(
                f"payload must be a JSON object, not {type(payload).__name__}; "
                'wrap the arguments in an object, e.g. {"items": [...]}.'
            )
        size = known_bytes
        if size is None:
            try:
                size = len(canonical_json(payload).encode())
            except (TypeError, ValueError, RecursionError) as exc:
                raise InvalidInput(
                    f"payload cannot be stored as JSON ({exc}); use only objects, arrays, strings, finite "
                    "numbers, true, false and null (NaN and infinity are not allowed)."
                ) from None
        limit = self.config.limits.max_payload_bytes
        if size > limit:
            raise InvalidInput(
                f"payload is {size:,} bytes as canonical JSON; the limit is {limit:,} bytes "
                "(limits.max_payload_bytes). Send a reference to the data (an id or URL) instead of "
                "the data itself."
            )

    def _validate_flags(self, flags: Any) -> None:
        limits = self.config.limits
        if not isinstance(flags, tuple | list):
            raise InvalidInput(f"flags must be a list of strings, not {type(flags).__name__}.")
        if len(flags) > limits.max_flags:
            raise InvalidInput(
                f"flags has {len(flags):,} entries; the limit is {limits.max_flags:,} (limits.max_flags). "
                "Send only the flags that apply."
            )
        for index, flag in enumerate(flags):
            if not isinstance(flag, str) or not flag:
                raise InvalidInput(f"flags[{index}] is {show(flag)}; each flag must be a non-empty string.")
            if len(flag) > limits.max_flag_chars:
                raise InvalidInput(
                    f"flags[{index}] is {len(flag):,} characters; the limit is {limits.max_flag_chars:,} "
                    "(limits.max_flag_chars). Use a short flag such as fairness:age."
                )

    def evaluate(
        self,
        request: PolicyInput,
        history: ActionHistory | None = None,
        streams: Mapping[int, fairness.Counts] | None = None,
        profile: shape.PayloadProfile | None = None,
        lookups: LookupReader | None = None,
        validated: bool = False,
        walked: shape.Walk | None = None,
    ) -> PolicyDecision:
        """Validate the request, then decide. ``history`` is used only when ``wants_history``; ``streams`` holds the
        recent outcome counts of each of the ``watched_groups`` (by index); without them, those groups stay silent.
        ``profile`` summarises recent approved payloads of the action, for the out-of-distribution checks.
        ``lookups`` answers the rules' ``[[lookups]]`` conditions; without it, each such condition fails closed.
        ``validated``: the caller has run ``validate`` on the request already (``policy replay`` does, before it
        gathers what the request is judged against). ``walked``: ``shape.walk(request.payload)``, when the caller
        has it (replay walks each payload once for the history and every check)."""
        if not validated:
            self.validate(request)
        config = self.config
        ask = self._asker(lookups)
        candidates, watched = self._for_action(request.action)  # a rule for other actions never matches
        matched = [(rule, match) for rule in candidates if (match := match_rule(rule, request, ask)) is not None]
        guardrails: list[Trigger] = []
        reviews: list[Trigger] = []
        approvals: list[Trigger] = []
        for rule, match in matched:
            if match.failed:  # a lookup that cannot answer fails closed, whatever the rule's outcome
                reviews.append(Trigger(kind=TriggerKind.CONTRADICTION, detail=match.detail))
            elif rule.outcome is Outcome.REJECT:
                guardrails.append(Trigger(kind=TriggerKind.GUARDRAIL, detail=match.detail))
            elif rule.outcome is Outcome.REVIEW:
                kind = TriggerKind.CONTRADICTION if match.trusted else TriggerKind.RULE
                reviews.append(Trigger(kind=kind, detail=match.detail))
            else:
                approvals.append(Trigger(kind=TriggerKind.RULE, detail=match.detail))
        confidence = request.confidence
        threshold = config.confidence_threshold
        if confidence is not None and confidence < threshold:
            detail = f"confidence {_num(confidence)} is below the threshold {_num(threshold)}"
            reviews.append(Trigger(kind=TriggerKind.CONFIDENCE, detail=detail))
        if config.anomaly.enabled and history is not None:
            fields = numeric_fields(request.payload) if walked is None else walked.fields
            reviews.extend(self._anomalies(request, history, fields.leaves))
            # fail closed: numbers the check cannot judge (beyond its caps, too deep, twins) go to a person
            reviews.extend(Trigger(kind=TriggerKind.ANOMALY, detail=detail) for detail in _unjudged(fields))
        if config.anomaly.enabled and profile is not None:
            leaves = None if walked is None else walked.leaves
            for detail in shape.unusual(config.anomaly, request.action, request.payload, profile, leaves):
                reviews.append(Trigger(kind=TriggerKind.ANOMALY, detail=detail))
        if request.flags:
            reviews.extend(self._fairness(request.flags))
        if watched:
            reviews.extend(self._outcome_fairness(request, watched, streams or {}))

        if guardrails:
            outcome, triggers = Outcome.REJECT, [*guardrails, *reviews, *approvals]
        elif reviews:
            outcome, triggers = Outcome.REVIEW, [*reviews, *approvals]
        elif approvals:
            outcome, triggers = Outcome.APPROVE, approvals
        elif confidence is not None:
            outcome = Outcome.APPROVE
            detail = (
                f"confidence {_num(confidence)} meets the threshold {_num(threshold)} and no rule matched; "
                "approved by policy"
            )
            triggers = [Trigger(kind=TriggerKind.DEFAULT, detail=detail)]
        else:
            outcome = config.default_outcome
            detail = f"no rule matched and no confidence was given; the default outcome is {outcome}"
            triggers = [Trigger(kind=TriggerKind.DEFAULT, detail=detail)]

        # a failed approve rule does not apply; a failed review rule's settings (approvers, quorum) still do
        routed = [(rule, match) for rule, match in matched if not match.failed or rule.outcome is Outcome.REVIEW]
        rules = [rule for rule, _ in routed]
        approvers, conflict = self._approvers(routed)
        if conflict is not None:  # nobody the operator allowed in every case: the agent must send judgeable values
            outcome, triggers = Outcome.REJECT, [Trigger(kind=TriggerKind.GUARDRAIL, detail=conflict), *triggers]
        unchecked = tuple(match.failure for _, match in matched if match.failed)
        if not rules:  # most requests: the policy's own settings, as the general case below gives them
            routing, asked = config.slack, request.expires_in_seconds
            return PolicyDecision(
                channel=routing.channel,
                approvers=routing.approvers,
                outcome=outcome,
                triggers=tuple(triggers),
                approvals_required=1,
                expires_in_seconds=config.default_expires_in_seconds if asked is None else asked,
                priority=Priority.NORMAL,
                rules=tuple(rule.name for rule, _ in matched),
                unchecked=unchecked,
            )
        expiries = [r.expires_in_seconds for r in rules if r.expires_in_seconds is not None]
        if request.expires_in_seconds is not None:
            expiries.append(request.expires_in_seconds)
        fired = [trigger.kind for trigger in triggers]
        priorities = [r.priority for r in rules if r.priority is not None]
        for rule in rules:
            if (computing := rule.priority_from) is not None:
                value = resolve(request, computing.path) if computing.path is not None else None
                priorities += computing.computed(value, fired)
        routing = config.slack
        escalation = next((r for r in rules if r.escalate_after_seconds is not None), None)
        return PolicyDecision(
            channel=next((r.channel for r in rules if r.channel), routing.channel),
            approvers=approvers,
            escalate_after_seconds=escalation.escalate_after_seconds if escalation else None,
            escalate_to=escalation.escalate_to if escalation else None,
            outcome=outcome,
            triggers=tuple(triggers),
            approvals_required=max((r.approvals_required or 1 for r in rules), default=1),  # review rules only
            expires_in_seconds=min(expiries, default=config.default_expires_in_seconds),
            priority=highest(priorities),
            rules=tuple(rule.name for rule, _ in matched),
            unchecked=unchecked,
        )

    def _approvers(self, routed: Sequence[tuple[Rule, Match]]) -> tuple[tuple[str, ...], str | None]:
        """Who may approve, and, when nobody may, why (the request is rejected); ``routed``: the matching rules
        whose settings apply, in file order.

        The first rule that names approvers picks them, else ``[slack]``. A rule that matched only because it could
        not judge a value (or check a lookup) may not apply at all, so it must not pick approvers the rule that
        would pick them otherwise does not allow: the approvers are those every rule that may be the one to pick
        allows (each such rule up to the first that matched clearly, else up to ``[slack]``; naming nobody allows
        anyone). When they have nobody in common, nobody may approve."""
        default = self.config.slack.approvers
        if not routed:
            return default, None
        deciders: list[tuple[str, tuple[str, ...]]] = []  #: (who names them, approvers) that may pick approvers
        reasons: list[str] = []
        for rule, match in routed:
            if not rule.approvers:
                continue
            deciders.append((f"rule {rule.name!r}", rule.approvers))
            if not match.unclear:
                break
            reasons.extend(f"rule {rule.name!r}: {reason}" for reason in match.unclear)
        else:
            deciders.append(("[slack]", default))
        named = [(who, approvers) for who, approvers in deciders if approvers]
        if not named:
            return (), None
        first, others = named[0][1], [approvers for _, approvers in named[1:]]
        people = self.config.people
        allowed = tuple(
            name
            for name in first
            if all(any(person_of(people, name) == person_of(people, other) for other in each) for each in others)
        )
        if allowed or not reasons:
            return allowed, None
        names = "; ".join(f"{who}: {', '.join(approvers)}" for who, approvers in named)
        return (), (
            f"the rules that may pick this request's approvers name nobody in common ({names}), and whether they"
            f" apply cannot be judged ({'; '.join(reasons)}); nobody may approve it. Send these values in the shape"
            " the rules expect (a number as a number, one value rather than an array, no null) and ask again."
        )

    def _asker(self, lookups: LookupReader | None) -> Ask | None:
        if lookups is None:
            return None
        config = self.config
        return lambda name, key: lookups.answer(config.lookup(name), key)

    def lookup_keys(self, request: PolicyInput) -> list[tuple[Lookup, str | int]]:
        """The (lookup, key) pairs ``evaluate`` may ask about ``request``: the service fetches them beforehand."""
        wanted: list[tuple[Lookup, str | int]] = []
        for rule in self.config.rules:
            if rule.action and action_glob(request.action, rule.action) is None:
                continue
            for condition in rule.when:
                if condition.lookup is not None and (key := lookup_request_key(request, condition)) is not None:
                    pair = (self.config.lookup(condition.lookup), key)
                    if pair not in wanted:
                        wanted.append(pair)
        return wanted

    def _fairness(self, flags: tuple[str, ...]) -> Iterator[Trigger]:
        for flag in flags:
            glob = action_glob(flag, self.config.fairness.flags)  # ignoring case, as action globs do
            if glob is not None:
                detail = f"flag {flag!r} matches the fairness pattern {glob!r}"
                yield Trigger(kind=TriggerKind.FAIRNESS, detail=detail)

    def _outcome_fairness(
        self, request: PolicyInput, watched: Sequence[int], streams: Mapping[int, fairness.Counts]
    ) -> Iterator[Trigger]:
        groups = self.config.fairness.groups
        for index in watched:
            group = groups[index]
            value = resolve(request, group.attribute)
            if isinstance(value, Unclear):  # fail closed: a misspelt group must not slip past the check
                detail = f"cannot tell the group for {group.attribute}: {value.reason}"
                yield Trigger(kind=TriggerKind.FAIRNESS, detail=detail)
                continue
            key = fairness.group_key(value)
            counts = streams.get(index)
            if key is None or counts is None:
                continue
            rate = next((r for r in fairness.judge_groups(group, counts) if r.key == key), None)
            if rate is not None and rate.flagged:
                yield Trigger(kind=TriggerKind.FAIRNESS, detail=fairness.detail(group, rate))

    def _anomalies(
        self, request: PolicyInput, history: ActionHistory, fields: Sequence[NumericField]
    ) -> Iterator[Trigger]:
        anomaly = self.config.anomaly
        action = request.action
        if anomaly.novel_action and not history.seen_from_agent:
            who = f"agent {request.agent_id!r}" if request.agent_id else "an agent with no agent_id"
            yield Trigger(kind=TriggerKind.ANOMALY, detail=f"first request for action {action} from {who}")
        spreads = history.spreads
        for field in fields:
            known = spreads.get(field.history)
            if known is None:
                samples = tuple(filter(math.isfinite, history.values.get(field.history, ())))
                count = len(samples)
                if count < anomaly.min_samples:
                    continue
                median, mad, mean_ad = _spread(samples)
            else:
                count, median, mad, mean_ad = known
                if count < anomaly.min_samples:
                    continue
            # in a list, the item farthest from the median decides (z rises with x, so it is the smallest or the
            # largest), against a threshold widened to threshold * sqrt(n) for its n numbers (``list_threshold``): a
            # list of ordinary numbers is not sent to a person n times as often as one ordinary number is, and
            # padding a list with usual items raises the threshold at most tenfold (100 numbers; more fail closed)
            values = field.values
            x = max(values)
            z = _z(x, median, mad, mean_ad)
            if len(values) > 1 and abs(z_low := _z(low := min(values), median, mad, mean_ad)) > abs(z):
                x, z = low, z_low
            threshold = list_threshold(anomaly.threshold, len(values))
            if abs(z) <= threshold:
                continue
            if math.isinf(z):
                detail = (
                    f"payload.{field.path} = {_num(x)} differs from the recent history of {action}, "
                    f"where all {count:,} values were {_num(median)}"
                )
            else:
                limit = f"> {_num(threshold)}" if z > 0 else f"< -{_num(threshold)}"
                shown = f"{z:.1f}" if round(abs(z), 1) > threshold else f"{z:.3f}"  # never "3.5 > 3.5"
                n = len(values)
                widened = "" if n == 1 else f"; {n} numbers in lists: threshold {_num(anomaly.threshold)} times √{n}"
                detail = (
                    f"payload.{field.path} = {_num(x)} is far outside the recent history of {action} "
                    f"(median {_num(median)}, modified z {shown} {limit} over {count:,} values{widened})"
                )
            yield Trigger(kind=TriggerKind.ANOMALY, detail=detail)


def list_threshold(threshold: float, numbers: int) -> float:
    """The modified z each of a field's ``numbers`` in lists must exceed to be an anomaly: ``threshold`` for one
    number, ``threshold * sqrt(numbers)`` for more (a Bonferroni correction of Chebyshev's bound: a number of any
    distribution lies beyond ``t`` spreads with probability at most about ``1 / t**2``, so ``numbers`` of them, one
    at least, at most ``numbers / t**2``; at ``threshold * sqrt(numbers)`` that is the bound one number has at
    ``threshold``). A list of ordinary numbers is then sent to a person about as often as one ordinary number, or
    less, whatever the field's distribution; the price is that a number among 100 must be 10 times as far."""
    return threshold if numbers <= 1 else threshold * math.sqrt(numbers)


def schema_violation(
    schemas: tuple[ActionSchema, ...], action: str, payload: Mapping[str, Any], explain: bool = True
) -> str | None:
    """What is wrong with ``payload`` under the first schema for ``action`` it breaks, or None if none. Without
    ``explain``, only which schema it breaks (the same schema: a payload breaks it or not, whatever is said)."""
    for index, entry in enumerate(schemas):
        glob = action_glob(action, entry.action)
        if glob is None:
            continue
        try:
            if not explain:
                required = entry.required_keys  # a missing required key refuses it: no need to run the validator
                lacking = isinstance(payload, dict) and any(name not in payload for name in required)
                if not lacking and entry.validator.is_valid(payload):
                    continue
                return f"payload does not match the policy's schema for {glob!r} (schemas[{index}])"
            error = best_match(entry.validator.iter_errors(payload))
        except Unresolvable as exc:
            return (
                f"the policy's schema for {glob!r} (schemas[{index}]) has a reference that leads nowhere ({exc}); "
                "nothing can be checked against it, so the request is refused. Ask the operator to fix the policy."
            )
        if error is None:
            continue
        where = "payload" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        rule = "/".join(str(p) for p in error.absolute_schema_path)
        return (
            f"{where}: {_schema_message(error)}. Payloads for {action} must match the policy's schema for "
            f"{glob!r} (schemas[{index}], rule {rule}); correct the payload and send the request again."
        )
    return None


def _schema_message(error: ValidationError) -> str:
    """jsonschema's message, with a long value in it (a 1 MB string that is "too long") cut short."""
    shown = repr(error.instance)
    return error.message if len(shown) <= 60 else error.message.replace(shown, show(error.instance))


@functools.lru_cache(maxsize=1024)
def _spread(samples: tuple[float, ...]) -> tuple[float, float, float]:
    """``(median, MAD, mean absolute deviation)`` of ``samples``; kept for the last 1,024 histories, since the same
    history judges many requests in a row (each request's own numbers do not change it)."""
    if not samples:
        raise statistics.StatisticsError("no median for empty data")
    ordered = sorted(samples)
    median = _middle(ordered)  # as statistics.median, without sorting again
    deviations = sorted(map(abs, map(operator.sub, ordered, itertools.repeat(median))))
    return median, _middle(deviations), math.fsum(deviations) / len(deviations)  # fsum / n: statistics.fmean


def _middle(ordered: Sequence[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def modified_z_score(x: float, samples: Sequence[float]) -> tuple[float, float]:
    """``(z, median)``: ``0.6745 * (x - median) / MAD`` (Iglewicz & Hoaglin).

    When more than half the samples equal the median, MAD is 0; then the mean absolute deviation
    scaled by sqrt(pi/2) stands in. When that is 0 too (all samples equal), any other x is
    infinitely far (z = +-inf) and x equal to them scores 0.
    """
    median, mad, mean_ad = _spread(tuple(samples))
    return _z(x, median, mad, mean_ad), median


def _z(x: float, median: float, mad: float, mean_ad: float) -> float:
    """``modified_z_score``'s z from the samples' ``_spread`` (``mean_ad`` is read only when ``mad`` is 0)."""
    if mad > 0:
        return _MAD_SCALE * (x - median) / mad
    if mean_ad > 0:
        return (x - median) / (_MEAN_AD_SCALE * mean_ad)
    return 0.0 if x == median else math.copysign(math.inf, x - median)


def sorted_spread(ordered: Sequence[float]) -> tuple[float, float, float]:
    """``_spread`` of finite numbers already sorted, the same floats, without sorting: the median in O(1), the MAD in
    O(log n) (a selection over the deviations below and above the median, each side already in order), and the
    mean absolute deviation, which costs a pass over the numbers, only when the MAD is 0 (the only case that
    reads it; else nan). ``policy replay``'s history keeps its numbers sorted and calls this after each change."""
    if not ordered:
        raise statistics.StatisticsError("no median for empty data")
    n = len(ordered)
    median = _middle(ordered)
    split = bisect.bisect_left(ordered, median)  # below: median - v; from split on: v - median (abs(v - median))
    mid = n // 2
    mad = _deviation(ordered, median, split, mid)
    if not n % 2:
        mad = (_deviation(ordered, median, split, mid - 1) + mad) / 2
    if mad > 0:
        return median, mad, math.nan
    return median, mad, math.fsum(abs(v - median) for v in ordered) / n


def _deviation(ordered: Sequence[float], median: float, split: int, k: int) -> float:
    """The ``k``-th smallest (from 0) of ``abs(v - median)`` over ``ordered``, given ``split``: the deviations
    below it, ``median - ordered[split - 1 - i]``, and from it on, ``ordered[split + j] - median``, both rise.
    A binary search for how many of the ``k + 1`` smallest come from below."""
    below, above = split, len(ordered) - split
    lo, hi = max(0, k + 1 - above), min(k + 1, below)
    while lo < hi:  # the first i whose next one below is not smaller than the last one taken above
        i = (lo + hi) // 2
        j = k + 1 - i
        if median - ordered[split - 1 - i] < ordered[split + j - 1] - median:
            lo = i + 1
        else:
            hi = i
    i, j = lo, k + 1 - lo
    taken_below = median - ordered[split - i] if i else -math.inf
    taken_above = ordered[split + j - 1] - median if j else -math.inf
    return max(taken_below, taken_above)


def _num(value: float) -> str:
    """``25000.0`` -> ``25000``, ``0.62`` -> ``0.62``: numbers as a reviewer would write them."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _unjudged(
    fields: NumericFields, limit: int = JUDGED_FIELDS, max_depth: int = NUMBER_DEPTH, items: int = JUDGED_ITEMS
) -> list[str]:
    """Why the anomaly check cannot judge every number of a payload (trigger details), or empty if it can."""
    why = []
    if fields.total > limit:
        why.append(
            f"the payload has {fields.total:,} numeric fields; the anomaly check judges at most {limit}: a person"
            " reviews it"
        )
    if fields.twice is not None:
        why.append(
            f"payload.{fields.twice} names two numeric fields (a dotted key and a nested one, or a key ending in []"
            " and a list); the anomaly check cannot tell them apart: a person reviews it"
        )
    if fields.crowded is not None:
        path, count = fields.crowded
        why.append(
            f"payload.{path} has {count:,} numbers in lists; the anomaly check judges at most {items} numbers of a"
            " field: a person reviews it"
        )
    if fields.too_deep is not None:
        why.append(
            f"payload.{fields.too_deep} is a number nested more than {max_depth} objects or {max_depth} lists deep;"
            " the anomaly check does not judge it: a person reviews it"
        )
    return why
