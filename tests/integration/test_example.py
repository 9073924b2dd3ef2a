"""examples/loan_workflow.py, run as a person would: the example in one process, a reviewer typing the
commands it prints in others, on one SQLite file."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from tests.integration.support import REPO, signoff

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "loan_workflow.py"
COMMAND = re.compile(r"^ {6}(approve|reject): +(.+)$")


@dataclass(frozen=True, slots=True)
class Finished:
    lines: list[str]  #: the example's stdout
    stderr: str
    returncode: int
    decided: dict[str, str]  #: request id -> the verdict the reviewer gave

    def step(self, number: int) -> list[str]:
        return [line for line in self.lines if line.startswith(f"[{number}] ")]


async def run_example(
    env: dict[str, str], tmp_path: Path, verdicts: dict[int, tuple[str, ...]], *args: str
) -> Finished:
    """Run the example; whenever it prints the reviewer's commands during step N, run the one chosen by
    ``verdicts[N]`` (``("approve",)`` or ``("reject", reason)``) as alice, exactly as printed; nobody decides
    in a step that ``verdicts`` leaves out."""
    stderr_log = tmp_path / "example.stderr"
    lines: list[str] = []
    decided: dict[str, str] = {}
    commands: dict[str, list[str]] = {}
    with stderr_log.open("wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, str(EXAMPLE), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=stderr,
            cwd=str(tmp_path),  # the example finds its policy and the signoff command from anywhere
        )
        async with process:
            assert process.stdout is not None
            pending = ""
            async for chunk in TextReceiveStream(process.stdout):
                *complete, pending = (pending + chunk).split("\n")
                for line in complete:
                    lines.append(line)
                    if not (match := COMMAND.match(line)):
                        continue
                    commands[match[1]] = shlex.split(match[2])
                    step = int(next(s for s in reversed(lines) if s.startswith("["))[1])
                    if match[1] == "reject" and step in verdicts:  # printed last: both commands are known
                        verdict, *reason = verdicts[step]
                        argv = [a.replace("YOUR_NAME", "alice") for a in commands[verdict]]
                        argv = [reason[0] if a == "REASON" else a for a in argv]
                        assert Path(argv[0]).name == "signoff", argv
                        ran = await signoff(env, *argv[1:])
                        assert ran.returncode == 0, ran
                        decided[argv[3]] = verdict
            await process.wait()
    assert process.returncode is not None
    return Finished(lines, stderr_log.read_text(), process.returncode, decided)


async def audit_verifies(env: dict[str, str], db: Path) -> None:
    verified = await signoff(env, "audit", "verify", "--db", str(db))
    assert verified.returncode == 0, verified
    assert verified.stdout.startswith("ok:")


async def test_a_person_approves_the_model_and_the_loan_and_the_loan_is_disbursed(
    env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    with anyio.fail_after(120):
        run = await run_example(env, tmp_path, {2: ("approve",), 6: ("approve",)}, "--db", str(db))
        assert run.returncode == 0, run
        await audit_verifies(env, db)

    promotion, loan = run.decided
    assert run.decided == {promotion: "approve", loan: "approve"}
    assert [line[1] for line in run.lines if line.startswith("[")] == sorted(
        line[1] for line in run.lines if line.startswith("[")
    ), "the steps are printed in order"
    assert {int(line[1]) for line in run.lines if line.startswith("[")} == set(range(1, 9))
    assert any("resolve_model: loan-scorer v1 serves this application" in line for line in run.step(2))
    assert run.step(4) == ["[4] record_inferences: 1 inference recorded for loan-scorer v1"]
    assert "rule 'large loans'" in run.step(5)[0]
    assert run.step(6)[-1].startswith("[6] approved (decided by human): Approved by alice")
    assert run.step(7) == [f"[7] verify_receipt: valid; request {loan} approved by alice"]
    assert run.step(8) == ["[8] execute: transfer 25,000.00 EUR to applicant-1042 over 36 months"]


async def test_a_person_rejects_the_loan_and_the_example_falls_back(
    env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    verdicts = {2: ("approve",), 6: ("reject", "income not verified")}
    with anyio.fail_after(120):
        run = await run_example(env, tmp_path, verdicts, "--db", str(db), "--amount", "30000")
        assert run.returncode == 0, run
        await audit_verifies(env, db)
        history = (await signoff(env, "history", "--json", "--db", str(db))).json()

    assert sorted(run.decided.values()) == ["approve", "reject"]
    assert run.step(6)[-1] == (
        "[6] rejected (decided by human): Rejected by alice: income not verified. "
        "Do not perform this action; tell the user or change the plan."
    )
    assert run.step(7) == [], "nothing is verified, let alone executed, after a rejection"
    assert run.step(8) == [
        "[8] fallback: loans.disburse is not executed; applicant-1042's application goes to an underwriter"
    ]
    loan = next(r for r in history if r["action"] == "loans.disburse")
    assert (loan["status"], loan["summary"]) == ("rejected", "Disburse 30,000.00 EUR over 36 months to applicant-1042")


async def test_nobody_decides_the_request_expires_and_the_example_falls_back(
    env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    with anyio.fail_after(120):
        run = await run_example(env, tmp_path, {2: ("approve",)}, "--db", str(db), "--expires-in", "1")
        assert run.returncode == 0, run
        await audit_verifies(env, db)

    assert len(run.decided) == 1, "only the model's promotion was decided"
    assert run.step(6)[-1].startswith("[6] expired (decided by nobody): Expired without a decision")
    assert run.step(7) == []
    assert run.step(8)[0].startswith("[8] fallback: loans.disburse is not executed")


async def test_a_bad_application_is_refused_before_anything_is_asked(
    env: dict[str, str], db: Path, tmp_path: Path
) -> None:
    with anyio.fail_after(60):
        run = await run_example(env, tmp_path, {}, "--db", str(db), "--amount", "50", "--credit-score", "900")
    assert run.returncode == 2, run
    assert "--amount 50: lend between 500 and 500,000 EUR" in run.stderr
    assert "--credit-score 900: scores run from 300 to 850" in run.stderr
    assert run.lines == []
    assert not db.exists(), "nothing was asked, so no database was made"


async def test_the_example_type_checks_strictly() -> None:
    with anyio.fail_after(300):
        done = await anyio.run_process(
            [sys.executable, "-m", "mypy", "--strict", str(EXAMPLE)], cwd=str(REPO), check=False
        )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
