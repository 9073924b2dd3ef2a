"""``signoff policy``: check a policy file, run its test cases, and replay it over the recorded history."""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from signoff.server.policy_env import PolicyOverrides
from signoff.storage import ConfigError
from signoff.storage.text import visible
from signoff.tools.approvals.fairness import judge_groups, outcome_words
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_cases import Expect, parse_cases, run_cases
from signoff.tools.approvals.policy_check import policy_faults, policy_summary
from signoff.tools.approvals.policy_config import PolicyConfig, parse_policy_config, policy_version
from signoff.tools.approvals.replay import Replayer, ReplayReport
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.streams import outcome_counts
from signoff.tools.approvals.trusted import TrustedData
from signoff.tools.toml_positions import Locator
from signoff.tools.typed_toml import format_key

_BEFORE = {Expect.APPROVE: "approved by policy", Expect.REVIEW: "went to people", Expect.REJECT: "rejected by policy"}
_AFTER = {
    Expect.APPROVE: "would be approved at once",
    Expect.REVIEW: "would go to people",
    Expect.REJECT: "would be rejected by a guardrail",
    Expect.INVALID: "would be refused as invalid input",
}
REPLAY_BATCH = 2000  #: requests read per query by `policy replay`
_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def read_text(path: Path, what: str = "policy file") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; name the TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {exc.reason}") from None


def load(path: Path) -> tuple[Policy, str]:
    """The policy in ``path`` and its version; a file with faults is one error line pointing at ``policy check``."""
    text = read_text(path)
    faults = policy_faults(text, os.fspath(path))
    if faults:
        more = f" (and {len(faults) - 1} more: run `signoff policy check {path}`)" if len(faults) > 1 else ""
        raise ConfigError(f"{faults[0]}{more}")
    overrides = PolicyOverrides.from_env(os.environ)  # what the server would apply, so what is tested and replayed
    return Policy(overrides.apply(parse_policy_config(text, os.fspath(path)))), overrides.version(text)


def check(args: argparse.Namespace) -> int:
    text = read_text(args.file)
    faults = policy_faults(text, os.fspath(args.file))
    for fault in faults:
        print(visible(fault))
    if faults:
        return 1
    overrides = PolicyOverrides.from_env(os.environ)
    config = parse_policy_config(text, os.fspath(args.file))
    problems = lookup_faults(config, text, args.file)
    for problem in problems:
        print(visible(problem))
    if problems:
        return 1
    print(f"ok: {args.file} is a valid policy, version {policy_version(text)}")
    if overrides:
        print(f"effective policy, with the environment's overrides (version {overrides.version(text)}):")
        for line in overrides.summary(config):
            print(f"  {line}")
    for line in policy_summary(overrides.apply(config)):
        print(f"  {visible(line)}")
    return 0


def lookup_faults(config: PolicyConfig, text: str, path: Path) -> list[str]:
    """Each ``[[lookups]]`` source that cannot be read as configured: the file loads, the database opens read-only
    and the query compiles. One line each, with the line of the lookup's file or query in the policy file."""
    trusted = TrustedData(path.parent)
    locator = Locator(text)
    faults = []
    try:
        for index, lookup in enumerate(config.lookups):
            problem = trusted.check(lookup)
            if problem is not None:
                key = ("lookups", index, "file" if lookup.file is not None else "database")
                if lookup.database is not None and problem.startswith("the query"):
                    key = ("lookups", index, "query")
                faults.append(f"{path} line {locator.line(key)}: {format_key(key)}: {problem}")
    finally:
        trusted.close()
    return faults


def default_cases(policy_file: Path) -> Path:
    """``signoff.toml`` -> ``signoff.cases.toml``, beside it."""
    return policy_file.with_name(f"{policy_file.stem}.cases.toml")


def test(args: argparse.Namespace) -> int:
    policy, version = load(args.file)
    cases_path: Path = args.cases or default_cases(args.file)
    if args.cases is None and not cases_path.exists():
        raise ConfigError(
            f"no cases file beside the policy: {cases_path} does not exist; write one, or name it: "
            f"signoff policy test {args.file} CASES.toml"
        )
    trusted = TrustedData(args.file.parent)
    try:
        results = run_cases(policy, parse_cases(read_text(cases_path, "cases file"), os.fspath(cases_path)), trusted)
    finally:
        trusted.close()
    failed = [r for r in results if not r.ok]
    for result in results:
        if result.ok:
            print(f"ok    {visible(result.case.name)}")
        else:
            print(
                f"FAIL  {visible(result.case.name)} ({cases_path} line {result.line}): {visible(result.problem or '')}"
            )
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed (policy {args.file}, version {version})")
    return 1 if failed else 0


def since(text: str) -> datetime:
    """``30d``, ``12h``, ``90m`` (before now), or an ISO date or time (UTC if no zone)."""
    if match := _DURATION.fullmatch(text):
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (30d, 12h, 90m) or an ISO date or time") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


async def replay_command(service: ApprovalService, args: argparse.Namespace) -> int:
    policy, version = load(args.file)
    trusted = TrustedData(args.file.parent)
    try:
        replayer = Replayer(policy, trusted, args.since)
        # oldest first; with a history to rebuild, from the first request, so the windows are full at ``since``
        start = args.since if replayer.history is None else None
        async for batch in service.store.recorded_requests(start, batch=REPLAY_BATCH):
            replayer.feed(batch)
    finally:
        trusted.close()
    report = replayer.report
    if args.json:
        print(json.dumps(as_json(report, args.file, version, args.since), indent=2))
    else:
        print(as_text(report, args.file, version, args.since))
    return 0


def as_text(report: ReplayReport, path: Path, version: str, start: datetime | None) -> str:
    window = f" since {start.isoformat(timespec='seconds')}" if start else ""
    lines = [f"replayed {report.requests:,} recorded requests{window} under {path} (version {version})"]
    versions = sorted(report.recorded_versions.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{v or 'before versions were kept'} {n:,}" for v, n in versions)
    lines.append(f"decided then by policy version: {shown or 'none'}")
    lines.append(f"unchanged: {report.unchanged:,}")
    lines.append(f"changed: {report.changed:,}")
    for (before, after), count in sorted(report.transitions.items()):
        lines.append(f"  {before} -> {after}: {count:,} ({_BEFORE[before]}; {_AFTER[after]})")
    if report.learnt:
        lines.append(
            f"history: {report.learnt:,} earlier requests rebuilt what the anomaly, out-of-distribution and fairness"
            " checks judge against (not counted above)"
        )
    if not report.changed:
        return "\n".join(lines)
    lines.append("by action:")
    for action, steps in sorted(report.by_action.items()):
        shown = ", ".join(f"{b} -> {a} {n:,}" for (b, a), n in sorted(steps.items()))
        lines.append(f"  {visible(action)}: {shown}")
    lines.append("by rule (the candidate's rules that match the changed requests):")
    for name, count in sorted(report.by_rule.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {visible(name)}: {count:,}")
    lines.append("examples:")
    for (before, after), changes in sorted(report.examples.items()):
        for change in changes:
            request = change.request
            why = change.reason or "; ".join(f"{t.kind}: {t.detail}" for t in change.triggers)
            lines.append(
                f"  {before} -> {after}  {request.id}  {visible(request.action)}  {visible(_short(request.summary))}"
            )
            lines.append(f"      why: {visible(_short(why, 200))}")
    return "\n".join(lines)


def as_json(report: ReplayReport, path: Path, version: str, start: datetime | None) -> dict[str, Any]:
    def steps(counts: Any) -> list[dict[str, Any]]:
        return [{"from": b.value, "to": a.value, "count": n} for (b, a), n in sorted(counts.items())]

    return {
        "policy": os.fspath(path),
        "version": version,
        "since": start.isoformat() if start else None,
        "requests": report.requests,
        "unchanged": report.unchanged,
        "changed": report.changed,
        "transitions": steps(report.transitions),
        "by_action": {action: steps(counts) for action, counts in sorted(report.by_action.items())},
        "by_rule": dict(sorted(report.by_rule.items())),
        "history_requests": report.learnt,
        "recorded_versions": [
            {"version": v or None, "requests": n} for v, n in sorted(report.recorded_versions.items())
        ],
        "examples": [
            {
                "from": change.before.value,
                "to": change.after.value,
                "request_id": change.request.id,
                "action": change.request.action,
                "summary": change.request.summary,
                "triggers": [{"kind": t.kind.value, "detail": t.detail} for t in change.triggers],
                "reason": change.reason,
            }
            for _, changes in sorted(report.examples.items())
            for change in changes
        ],
    }


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def fairness_command(service: ApprovalService, args: argparse.Namespace) -> int:
    """``signoff fairness``: every ``[[fairness.groups]]`` stream's rates per group, as the server judges them now."""
    groups = service.policy.config.fairness.groups
    report = []
    for group in groups:
        rates = judge_groups(group, await outcome_counts(service.store, group))
        report.append((group, rates))
    if args.json:
        print(json.dumps([_group_json(group, rates) for group, rates in report], indent=2))
        return 0
    if not groups:
        print("no [[fairness.groups]] in the policy: nothing is watched (see docs/policy.md, outcome fairness)")
        return 0
    for group, rates in report:
        actions = ", ".join(group.action) or "every action"
        print(
            f"{group.attribute} ({actions}; {outcome_words(group)}; window {group.window:,}, margin"
            f" {group.margin * 100:g} points, alpha {group.alpha:g}, min_samples {group.min_samples})"
        )
        if not rates:
            print("  no requests with a group and an outcome yet")
        for rate in rates:
            p_value = f"p = {rate.p_value:.2g}" if rate.p_value is not None else "too few to test"
            mark = f"  FLAGGED ({'below' if rate.rate < rate.rest_rate else 'above'} the rest)" if rate.flagged else ""
            print(
                f"  {visible(_short(rate.key, 40))}: {rate.rate:.0%} of {rate.total:,} against {rate.rest_rate:.0%}"
                f" of the other {rate.rest_total:,}, {p_value}{mark}"
            )
    return 0


def _group_json(group: Any, rates: list[Any]) -> dict[str, Any]:
    return {
        "attribute": group.attribute,
        "action": list(group.action),
        "outcome": group.outcome,
        "positive": group.positive,
        "window": group.window,
        "margin": group.margin,
        "alpha": group.alpha,
        "min_samples": group.min_samples,
        "groups": [
            {
                "group": json.loads(rate.key),
                "positive": rate.positive,
                "total": rate.total,
                "rate": rate.rate,
                "rest_positive": rate.rest_positive,
                "rest_total": rate.rest_total,
                "rest_rate": rate.rest_rate,
                "p_value": rate.p_value,
                "tested": rate.tested,
                "flagged": rate.flagged,
            }
            for rate in rates
        ],
    }
