"""A policy edit nested deeper than the TOML parser (or the ``[[schemas]]`` check) can follow is refused like any
other bad edit: the policy in force stays and the server keeps running. RecursionError used to escape the
reloader, then its watcher and the server's worker task group: the running server stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from signoff.server.policy_reload import PolicyReloader
from signoff.storage import ConfigError
from signoff.storage.approvals.memory import MemoryStore
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import parse_policy_config
from signoff.tools.approvals.service import ApprovalService

GOOD = '[[rules]]\nname = "no drops"\naction = "db.drop*"\noutcome = "reject"\n'
DEEP = {
    "deep-array": GOOD + "x = " + "[" * 3000 + "]" * 3000 + "\n",
    "deep-schema": GOOD + '[[schemas]]\naction = "a"\nschema = ' + "{not=" * 400 + "{}" + "}" * 400 + "\n",
}


@pytest.mark.parametrize("bad", DEEP.values(), ids=DEEP.keys())
def test_a_deeply_nested_edit_is_refused_and_the_policy_in_force_stays(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(GOOD)
    service = ApprovalService(MemoryStore(), Policy(parse_policy_config(GOOD), "v1"))
    told: list[bool] = []
    reloader = PolicyReloader(path, service, on_reload=told.append)
    path.write_text(bad)
    assert reloader.reload() is False
    assert service.policy.version == "v1" and told == [False]


@pytest.mark.parametrize("bad", DEEP.values(), ids=DEEP.keys())
def test_a_deeply_nested_file_is_a_config_error_that_says_what_to_change(bad: str) -> None:
    with pytest.raises(ConfigError, match="nested too deep"):
        parse_policy_config(bad, "signoff.toml")
