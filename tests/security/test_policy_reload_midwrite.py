"""Review finding R3: the policy watcher reads the file whenever its size or time changes, so a poll that lands
while the file is being rewritten in place (truncated, then written: `>`, `cat >`, editors that write in place,
config-management tools) reads an empty or cut file. Both are valid TOML, so the cut policy is applied and every
guardrail and rule after the cut is gone until the next poll: fail open."""

from __future__ import annotations

from pathlib import Path

import pytest

from signoff.server.policy_reload import PolicyReloader
from signoff.storage import Status
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config, policy_version
from signoff.tools.approvals.service import ApprovalService, Draft

POLICY = """\
confidence_threshold = 0.85

[[rules]]
name = "no production database drops"
action = ["db.drop_*"]
when = [{ path = "payload.environment", op = "eq", value = "production" }]
outcome = "reject"
"""


def drop() -> Draft:
    return Draft(action="db.drop_table", summary="drop users", payload={"environment": "production"}, confidence=0.99)


@pytest.mark.parametrize("cut", [0, POLICY.index("[[rules]]")], ids=["truncated", "cut-before-rules"])
async def test_a_policy_file_caught_mid_rewrite_never_drops_its_guardrails(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(POLICY)
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(POLICY), policy_version(POLICY)))
        reloader = PolicyReloader(path, service)
        assert (await service.request_approval(drop())).status is Status.REJECTED

        # the operator rewrites the same policy in place; the watcher's poll sees the changed size meanwhile
        with path.open("w") as rewriting:
            rewriting.write(POLICY[:cut])
            rewriting.flush()
            reloader.reload()  # what PolicyReloader.watch does when the file's size or time changed
            rewriting.write(POLICY[cut:])
        during = await service.request_approval(drop())
    finally:
        await store.close()
    assert during.status is Status.REJECTED, f"the guardrail was off: the drop was {during.status.value}"
