"""Checking a policy file before trusting it: every fault in one pass, its version, and what it amounts to.

Pure: the caller reads the file and passes its text in.
"""

from __future__ import annotations

import tomllib
from typing import Any

from signoff.tools.approvals.policy_config import Outcome, PolicyConfig
from signoff.tools.toml_positions import KeyPath, Locator
from signoff.tools.typed_toml import Fault, build

__all__ = ["policy_faults", "policy_summary"]

_MAX_FAULTS = 100


def policy_faults(text: str, source: str) -> list[str]:
    """Every fault in a policy file, one line each (``<source> line <n>: <key path>: <problem>``), in line order;
    empty if it is valid.

    A fault's table (a rule, a schema, a section) is set aside and the rest checked again, so one bad rule does not
    hide the next; a fault that only shows once another is fixed can still appear on the next run.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"{source}: not valid TOML: {exc}"]
    locator = Locator(text)
    faults: list[tuple[int, str]] = []
    remaining: dict[KeyPath, list[int]] = {}  # per array: the original index of each element still there
    while len(faults) < _MAX_FAULTS:
        try:
            build(PolicyConfig, document, ())
            break
        except Fault as fault:
            original = _set_aside(document, fault.key, remaining)
            shown = fault.key if original is None else original
            line = locator.line(shown)
            faults.append((line, f"{source} line {line}: {Fault(shown, fault.problem)}"))
            if original is None:
                break
    else:
        faults.append((len(text), f"{source}: more than {_MAX_FAULTS} faults; fix these first"))
    return [text for _, text in sorted(faults, key=lambda fault: fault[0])]


def _set_aside(document: dict[str, Any], key: KeyPath, remaining: dict[KeyPath, list[int]]) -> KeyPath | None:
    """Remove what ``key`` (as the document now is) points into, and return ``key`` as it was in the original text.

    An array element (a rule) goes as a whole; elsewhere the deepest table or key that exists. None: nothing to
    remove (checking again would find the same fault)."""
    first_int = next((i for i, part in enumerate(key) if isinstance(part, int)), None)
    if first_int is not None:
        container_key, index = key[:first_int], key[first_int]
        container = _walk(document, container_key)
        if not isinstance(container, list) or not isinstance(index, int) or index >= len(container):
            return None
        order = remaining.setdefault(container_key, list(range(len(container))))
        original = order.pop(index)
        del container[index]
        return (*container_key, original, *key[first_int + 1 :])
    for end in range(len(key), 0, -1):
        parent = _walk(document, key[: end - 1])
        if isinstance(parent, dict) and key[end - 1] in parent:
            del parent[key[end - 1]]
            return key
    return None


def _walk(node: Any, key: KeyPath) -> Any:
    for part in key:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def policy_summary(config: PolicyConfig) -> list[str]:
    """What a valid policy does, in a few lines: the numbers an operator tunes and what is switched on."""
    by_outcome = {o: sum(1 for r in config.rules if r.outcome is o) for o in Outcome}
    rules = ", ".join(f"{n} {o}" for o, n in by_outcome.items() if n) or "none"
    anomaly = config.anomaly
    lines = [
        f"confidence_threshold {config.confidence_threshold}, default_outcome {config.default_outcome}",
        f"rules: {len(config.rules)} ({rules})",
        f"schemas: {len(config.schemas)}",
        (
            f"anomaly: on (novel_action {str(anomaly.novel_action).lower()}, min_samples {anomaly.min_samples},"
            f" threshold {anomaly.threshold})"
            if anomaly.enabled
            else "anomaly: off"
        ),
        f"fairness flags: {', '.join(config.fairness.flags) or 'none'}",
        f"fairness groups: {', '.join(g.attribute for g in config.fairness.groups) or 'none'}",
        "lookups: "
        + (", ".join(f"{lookup.where} cached {lookup.ttl_seconds:g} s" for lookup in config.lookups) or "none"),
        "alerts: " + (", ".join(a.rule.value for a in config.alerts) or "none listed (the defaults)"),
    ]
    return lines
