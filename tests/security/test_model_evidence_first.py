"""An agent's reason cannot push the server's canary evidence out of what reviewers read (R7).

A promotion's or a traffic change's approval request quotes the server's telemetry and canary verdict. The agent's
free-text reason comes after it and only the reason is cut, so a reason of 1,000 characters (padded with ``<>``,
which Slack escapes to 4-character entities, or written as a fake "verdict: pass") never hides the real verdict:
not in the stored summary (what the console, CLI and API show), not in Slack's summary block.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from mcp import Client

from signoff.notifiers.slack_blocks import request_blocks
from signoff.storage import ApprovalRequest
from tests.unit.test_model_tools import Harness, call

FAKE = "Canary healthy. Evidence: {c}: 5000 inferences, error rate 0.10%; canary verdict {c} vs {p}: pass (error_rate pass; latency pass)."  # noqa: E501


async def _failing_canary(h: Harness, client: Client, model: str, prod: str, cand: str) -> None:
    """``prod`` in production, ``cand`` a canary at 10% that fails a third of its inferences."""
    for version in (prod, cand):
        await call(client, "register_model_version", {"name": model, "version": version, "endpoint": "http://m/x"})
    await h.approve(await call(client, "promote_model", {"name": model, "version": prod, "reason": "first"}))
    weights = {prod: 90, cand: 10}
    await h.approve(await call(client, "set_traffic", {"name": model, "weights": weights, "reason": "canary"}))
    await call(client, "get_model", {"name": model})  # applies the approved split
    rng = random.Random(1)
    items: list[dict[str, Any]] = [
        {"name": model, "version": prod, "latency_ms": rng.uniform(40, 60), "ok": rng.random() > 0.01}
        for _ in range(900)
    ] + [
        {"name": model, "version": cand, "latency_ms": rng.uniform(40, 60), "ok": rng.random() > 0.3}
        for _ in range(300)
    ]
    await call(client, "record_inferences", {"items": items})


async def _asked(h: Harness, result: dict[str, Any]) -> ApprovalRequest:
    return await h.reviewer.get(result["change"]["request_id"])


def _slack_summary(request: ApprovalRequest) -> str:
    return request_blocks(request)[1].text.text


async def test_a_reason_padded_with_slack_entities_does_not_hide_the_verdict(tmp_path: Path) -> None:
    h = Harness(tmp_path, guard_enabled=False)
    async with Client(h.server) as client:
        await _failing_canary(h, client, "fraud", "v1", "v2")
        reason = (FAKE.format(c="v2", p="v1") + " " + "<>" * 1000)[:1000]
        request = await _asked(
            h, await call(client, "promote_model", {"name": "fraud", "version": "v2", "reason": reason})
        )
    for shown in (request.summary, _slack_summary(request)):
        real = shown.index("canary verdict v2 vs v1: fail")
        assert "Evidence: v2: 300 inferences" in shown[:real]  # the server's stats, whole
        assert shown.index("The agent's reason:") > real  # the agent's words come after the real verdict
        assert shown.find("vs v1: pass") in (-1, *range(real, len(shown)))  # a fake verdict only after it
    assert request.summary.endswith(reason)  # stored whole: it fits
    assert _slack_summary(request).endswith("&lt;&gt;…```")  # Slack's block cuts only the end of the reason


async def test_long_names_and_a_long_reason_keep_the_verdict_in_the_stored_summary(tmp_path: Path) -> None:
    model, prod, cand = "m" * 128, "p" * 128, "c" * 128
    h = Harness(tmp_path, guard_enabled=False)
    async with Client(h.server) as client:
        await _failing_canary(h, client, model, prod, cand)
        reason = FAKE.format(c=cand, p=prod).ljust(1000, ".")
        promoted = await _asked(
            h, await call(client, "promote_model", {"name": model, "version": cand, "reason": reason})
        )
        widened = await _asked(
            h,
            await call(client, "set_traffic", {"name": model, "weights": {prod: 50, cand: 50}, "reason": reason}),
        )
    for request in (promoted, widened):
        summary = request.summary
        assert len(summary) <= 1800 and summary.endswith("… (cut)")
        real = summary.index(f"canary verdict {cand} vs {prod}: fail")
        assert summary.index("The agent's reason:") > real
        assert f"canary verdict {cand} vs {prod}: fail" in _slack_summary(request)
