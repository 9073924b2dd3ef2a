"""`signoff export training-data`: what a data scientist loads with pandas is exactly what people decided."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService, Draft
from tests.fakes.clock import FakeClock
from tests.integration.support import base_env, signoff

HOSTILE = '=HYPERLINK("http://evil")\u202e\x1b[31m'


async def decisions(db: Path) -> dict[str, str]:
    store = await SqliteStore.open(db)
    clock = FakeClock()
    service = ApprovalService(store, clock=clock)
    made: dict[str, str] = {}

    async def ask(name: str, payload: dict[str, object], confidence: float | None = None, action: str = "pay") -> str:
        clock.advance(60)
        draft = Draft(action=action, summary=f"request {name}", payload=payload, confidence=confidence)
        made[name] = (await service.request_approval(draft)).id
        return made[name]

    try:
        approved = await ask("approved", {"amount": 120, "model": "fraud-scorer", "model_version": "2.1"}, 0.4)
        rejected = await ask(
            "rejected", {"amount": 9_000, "model": "fraud-scorer", "model_version": "2.2", "to": HOSTILE}
        )
        clock.advance(30)
        await service.vote(approved, "alice", Verdict.APPROVE, "fine")
        await service.vote(rejected, "bob", Verdict.REJECT, "wrong account " + HOSTILE)
        await ask("by-policy", {"amount": 1}, 0.99)  # approved by the policy: not a person's decision
        await ask("pending", {"amount": 2})
        await service.cancel(await ask("cancelled", {"amount": 3}), "agent changed its mind")
        other = await ask("other-action", {"amount": 4}, action="deploy")
        await service.vote(other, "alice", Verdict.APPROVE, None)
    finally:
        await store.close()
    return made


async def test_the_export_loads_in_pandas_with_one_row_per_request_people_decided(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    made = await decisions(db)
    env = base_env(db)

    ran = await signoff(env, "export", "training-data")
    assert ran.returncode == 0, ran
    assert "exported 3 request(s)" in ran.stderr
    frame = pd.read_json(io.StringIO(ran.stdout), lines=True, dtype=False)
    assert list(frame["request_id"]) == [made["approved"], made["rejected"], made["other-action"]]  # oldest first
    assert list(frame["label"]) == ["approved", "rejected", "approved"]
    assert list(frame["model"])[:2] == ["fraud-scorer", "fraud-scorer"] and frame["model"].isna().iloc[2]
    assert list(frame["model_version"])[:2] == ["2.1", "2.2"]
    rejected = frame.iloc[1]
    assert rejected["payload"]["to"] == HOSTILE  # exact, not escaped away
    assert rejected["comments"] == ["wrong account " + HOSTILE]
    assert rejected["reviewers"] == ["bob"]
    assert rejected["votes"][0]["verdict"] == "reject"
    assert rejected["trigger_kinds"] == ["default"]
    assert frame.iloc[0]["confidence"] == 0.4 and frame.iloc[0]["decision_seconds"] == 90.0
    assert "\x1b" not in ran.stdout and "\u202e" not in ran.stdout  # JSON escapes them: inert in a terminal

    again = await signoff(env, "export", "training-data")
    assert again.stdout == ran.stdout  # stable: the same window gives the same bytes

    out = tmp_path / "decisions.csv"
    ran = await signoff(env, "export", "training-data", "--format", "csv", "--output", str(out), "--action", "pay")
    assert ran.returncode == 0, ran
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["request_id"]) == [made["approved"], made["rejected"]]
    assert list(table["label"]) == ["approved", "rejected"]
    assert list(table["model_version"].astype(str)) == ["2.1", "2.2"]
    assert json.loads(table.iloc[1]["payload"])["to"] == HOSTILE  # nested values are JSON cells
    assert table.iloc[0]["summary"] == "request approved"

    only = await signoff(env, "export", "training-data", "--model", "fraud-scorer@2.2")
    assert [json.loads(line)["request_id"] for line in only.stdout.splitlines()] == [made["rejected"]]
    window = await signoff(
        env, "export", "training-data", "--since", "2026-01-01T00:02:00", "--until", "2026-01-01T00:06:00"
    )
    assert [json.loads(line)["label"] for line in window.stdout.splitlines()] == ["rejected"]
