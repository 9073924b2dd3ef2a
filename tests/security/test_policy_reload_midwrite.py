"""Review finding R3: a policy file saved in place (truncated, then written: `>`, `cat >`, editors and tools that
write in place) reads empty, or as its leading comments only, for a moment. That is valid TOML: the reload
applied it, so the built-in defaults decided, without the file's guardrails, until the next check. A reload
now refuses a file with no settings (a restart still runs with the defaults)."""

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
# the billing agents' guardrails
confidence_threshold = 0.85

[[rules]]
name = "no production database drops"
action = ["db.drop_*"]
when = [{ path = "payload.environment", op = "eq", value = "production" }]
outcome = "reject"
"""


def drop() -> Draft:
    return Draft(action="db.drop_table", summary="drop users", payload={"environment": "production"}, confidence=0.99)


@pytest.mark.parametrize("cut", [0, POLICY.index("\n") + 1], ids=["truncated", "only-its-comment-written"])
async def test_a_policy_file_caught_mid_save_never_drops_its_guardrails(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(POLICY)
    store = await SqliteStore.open(tmp_path / "signoff.db")
    try:
        service = ApprovalService(store, Policy(parse_policy_config(POLICY), policy_version(POLICY)))
        reloader = PolicyReloader(path, service)
        assert (await service.request_approval(drop())).status is Status.REJECTED

        # the operator saves the same policy in place; the watcher's check sees the changed size meanwhile
        with path.open("w") as saving:
            saving.write(POLICY[:cut])
            saving.flush()
            assert not reloader.reload()  # what PolicyReloader.watch does when the file's size or time changed
            saving.write(POLICY[cut:])
        during = await service.request_approval(drop())
    finally:
        await store.close()
    assert during.status is Status.REJECTED, f"the guardrail was off: the drop was {during.status.value}"
