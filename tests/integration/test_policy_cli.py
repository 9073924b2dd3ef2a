"""`signoff policy check | test | replay`, run as an operator runs them, on real files and a real database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from signoff.storage import DecidedBy, Status, Store, Trigger, TriggerKind
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.replay import NO_RULE
from tests.factories import add
from tests.integration.support import REPO, signoff

EXAMPLE = REPO / "signoff.example.toml"


async def test_check_accepts_the_example_and_summarises_it(env: dict[str, str]) -> None:
    ran = await signoff(env, "policy", "check", str(EXAMPLE))
    assert ran.returncode == 0, ran
    assert ran.stdout.startswith(f"ok: {EXAMPLE} is a valid policy, version ")
    assert "rules: 7 (1 approve, 5 review, 1 reject)" in ran.stdout


async def test_check_prints_one_line_per_fault_and_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    text = EXAMPLE.read_text().replace('op = "gt"', 'op = "gtt"').replace("threshold = 3.5", "threshold = 0")
    policy.write_text(text)
    ran = await signoff(env, "policy", "check", str(policy))
    assert ran.returncode == 1, ran
    lines = ran.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{policy} line ") for line in lines), ran
    assert "anomaly.threshold" in lines[0] and "rules[1].when[0].op: unknown operator 'gtt'" in lines[1]


async def test_check_of_a_missing_file_is_one_error_line(env: dict[str, str], tmp_path: Path) -> None:
    ran = await signoff(env, "policy", "check", str(tmp_path / "nope.toml"))
    missing = tmp_path / "nope.toml"
    assert ran.returncode == 1 and ran.stderr == f"error: policy file {missing} does not exist; check the path\n"


async def test_the_example_policy_passes_its_shipped_cases(env: dict[str, str]) -> None:
    ran = await signoff(env, "policy", "test", str(EXAMPLE))
    assert ran.returncode == 0, ran
    assert " 0 failed" in ran.stdout.splitlines()[-1] and "FAIL" not in ran.stdout


async def test_an_edit_that_breaks_a_case_exits_1_naming_the_case(env: dict[str, str], tmp_path: Path) -> None:
    policy = tmp_path / "signoff.toml"
    policy.write_text(EXAMPLE.read_text().replace("value = 10000", "value = 50000"))  # large transfers: > 50,000
    (tmp_path / "signoff.cases.toml").write_text((REPO / "signoff.example.cases.toml").read_text())
    ran = await signoff(env, "policy", "test", str(policy))
    assert ran.returncode == 1, ran
    [failed] = [line for line in ran.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.startswith("FAIL  a large transfer waits for two people (")
    assert "expected review, got approve" in failed
    assert ran.stdout.splitlines()[-1].startswith("18 passed, 1 failed")


async def test_test_without_a_cases_file_says_where_it_looked(env: dict[str, str], tmp_path: Path) -> None:
    policy = tmp_path / "signoff.toml"
    policy.write_text("")
    ran = await signoff(env, "policy", "test", str(policy))
    assert ran.returncode == 1 and str(tmp_path / "signoff.cases.toml") in ran.stderr, ran


async def seed_history(db: Path) -> None:
    store = await SqliteStore.open(db)
    try:
        for amount in (500, 12000, 40000):
            await add(
                store,
                action="payments.transfer",
                payload={"amount": amount, "currency": "EUR", "to": "DE89"},
                confidence=0.95,
                flags=(),
                status=Status.APPROVED,
                decided_by=DecidedBy.POLICY,
                triggers=(Trigger(kind=TriggerKind.DEFAULT, detail="approved by policy"),),
            )
        for confidence in (0.8, 0.82, 0.5):
            await add(store, action="email.send", payload={"recipient_count": 3}, confidence=confidence, flags=())
    finally:
        await store.close()


async def test_replay_reports_what_a_candidate_changes_and_writes_nothing(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    await seed_history(db)
    with sqlite3.connect(db) as before:
        events = before.execute("SELECT count(*) FROM events").fetchone()
    candidate = tmp_path / "new.toml"
    candidate.write_text(
        EXAMPLE.read_text()
        .replace("confidence_threshold = 0.85", "confidence_threshold = 0.75")
        .replace("value = 10000", "value = 30000")
        .replace("[anomaly]\nenabled = true", "[anomaly]\nenabled = false")
    )
    ran = await signoff(env, "policy", "replay", str(candidate), "--json")
    assert ran.returncode == 0, ran
    report = json.loads(ran.stdout)
    assert (report["requests"], report["unchanged"], report["changed"]) == (6, 3, 3)
    assert report["recorded_versions"] == [{"version": None, "requests": 6}]  # the factories record no version
    assert report["transitions"] == [  # the 40,000 transfer now goes to people; two emails no longer do
        {"from": "approve", "to": "review", "count": 1},
        {"from": "review", "to": "approve", "count": 2},
    ]
    assert report["by_rule"] == {"large transfers": 1, NO_RULE: 2}
    [example] = [e for e in report["examples"] if e["to"] == "review"]
    assert example["action"] == "payments.transfer" and "payload.amount gt 30000" in example["triggers"][0]["detail"]
    text = await signoff(env, "policy", "replay", str(candidate))
    assert text.returncode == 0 and "review -> approve: 2 (went to people; would be approved at once)" in text.stdout
    with sqlite3.connect(db) as after:
        assert after.execute("SELECT count(*) FROM events").fetchone() == events


async def test_fairness_prints_each_groups_rate_and_flags_the_outlier(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    store = await SqliteStore.open(db)
    try:
        for band, approved in (("18-30", 45), ("31-50", 44), ("65+", 20)):
            for index in range(60):
                decision = "approve" if index < approved else "deny"
                await add(store, action="loans.decide", payload={"band": band, "decision": decision}, flags=())
    finally:
        await store.close()
    config = tmp_path / "signoff.toml"
    config.write_text(
        '[[fairness.groups]]\nattribute = "payload.band"\noutcome = "payload.decision"\npositive = "approve"\n'
    )
    ran = await signoff(env, "fairness", "--config", str(config))
    assert ran.returncode == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[0].startswith('payload.band (every action; payload.decision = "approve"; window 1,000')
    [old] = [line for line in lines if '"65+"' in line]
    assert old == '  "65+": 33% of 60 against 74% of the other 120, p = 1.3e-07  FLAGGED (below the rest)'
    as_json = json.loads((await signoff(env, "fairness", "--config", str(config), "--json")).stdout)
    assert {g["group"]: g["flagged"] for g in as_json[0]["groups"]}["65+"] is True
    bare = await signoff(env, "fairness")
    assert bare.returncode == 0 and bare.stdout.startswith("no [[fairness.groups]] in the policy")


async def test_check_reads_each_lookup_source_and_names_the_line_of_one_that_cannot_be_read(
    env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    (tmp_path / "limits.csv").write_text("id,limit\na,1\n")
    sqlite3.connect(tmp_path / "t.db").close()
    lookups = (
        '[[lookups]]\nname = "limits"\nfile = "limits.csv"\nkey = "id"\n\n'
        '[[lookups]]\nname = "bureau"\ndatabase = "t.db"\nquery = "SELECT x FROM bureau WHERE k = ?"\n\n'
        '[[lookups]]\nname = "gone"\nfile = "gone.json"\n'
    )
    policy.write_text(lookups)
    ran = await signoff(env, "policy", "check", str(policy))
    assert ran.returncode == 1, ran
    assert ran.stdout.splitlines() == [
        f"{policy} line 9: lookups[1].query: the query cannot run: no such table: bureau",
        f"{policy} line 13: lookups[2].file: {tmp_path / 'gone.json'} does not exist",
    ]
    policy.write_text(
        lookups.split('\n\n[[lookups]]\nname = "gone"')[0].replace(
            "x FROM bureau WHERE k", "name FROM sqlite_master WHERE name"
        )
    )
    ran = await signoff(env, "policy", "check", str(policy))
    assert ran.returncode == 0, ran
    assert (
        "lookups: lookup limits (file limits.csv) cached 300 s, lookup bureau (query on t.db) cached 300 s"
        in ran.stdout
    )


async def test_check_shows_the_environments_overrides_in_the_effective_policy(env: dict[str, str]) -> None:
    ran = await signoff({**env, "SIGNOFF_CONFIDENCE_THRESHOLD": "0.9"}, "policy", "check", str(EXAMPLE))
    assert ran.returncode == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[1].startswith("effective policy, with the environment's overrides (version ")
    assert lines[2] == "  SIGNOFF_CONFIDENCE_THRESHOLD=0.9 overrides confidence_threshold 0.85 from the file"
    assert "  confidence_threshold 0.9, default_outcome review" in lines
    ran = await signoff({**env, "SIGNOFF_DEFAULT_OUTCOME": "maybe"}, "policy", "check", str(EXAMPLE))
    assert ran.returncode != 0 and 'SIGNOFF_DEFAULT_OUTCOME must be "approve" or "review"' in ran.stderr, ran


async def open_either(database: str) -> Store:
    if database.startswith("postgresql"):
        from signoff.storage.approvals.postgres import PostgresStore

        return await PostgresStore.open(database)
    return await SqliteStore.open(Path(database))


async def test_replay_rebuilds_the_anomaly_history_on_either_engine(
    env: dict[str, str], database: str, tmp_path: Path
) -> None:
    """30 ordinary refunds people approved, then one 100 times larger: a candidate with anomaly detection judges
    each refund on the ones approved before it, so only the first (novel) and the outlier still go to people."""
    store = await open_either(database)
    try:
        for n in range(31):
            await add(
                store,
                action="payments.refund",
                payload={"amount": 10_000 if n == 30 else 100 + n % 7},
                confidence=0.99,
                flags=(),
                status=Status.APPROVED,
                decided_by=DecidedBy.HUMAN,
            )
    finally:
        await store.close()
    candidate = tmp_path / "candidate.toml"
    candidate.write_text("[anomaly]\nenabled = true\nnew_values = false\nkey_set = false\ntext_length = false\n")
    env = {**env, "SIGNOFF_DB": database}
    runs = [await signoff(env, "policy", "replay", str(candidate), "--json") for _ in range(2)]
    assert runs[0].returncode == 0, runs[0]
    assert runs[0].stdout == runs[1].stdout  # the same history, policy and input: the same report
    report = json.loads(runs[0].stdout)
    assert (report["requests"], report["unchanged"]) == (31, 2)
    assert report["transitions"] == [{"from": "review", "to": "approve", "count": 29}]
