"""A loan decision with a person in the loop: signoff's whole workflow, end to end.

An agent receives a loan application, scores it with a small model, and asks signoff before it acts.
The agent is a plain MCP client of a real signoff server, started over stdio; a person decides with the
`signoff review` command in another terminal. The eight steps:

  1. validate the application (bad input is refused before anything is asked)
  2. find the model's serving version (register it and have its promotion approved on first use)
  3. score the application with a logistic regression trained here, on data generated with a fixed seed
  4. report the inference (latency, confidence) for the version that served
  5. ask for approval, with the model's confidence and the exact application as payload
  6. wait for a person, if the policy asks for one
  7. verify the approval's signed receipt against exactly what is about to run
  8. act, or fall back when the answer is no

Run it:   python examples/loan_workflow.py --amount 25000        (then follow the printed command)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

MODEL, VERSION, AGENT = "loan-scorer", "v1", "loan-agent"
SEED, SAMPLES, EPOCHS = 7, 2000, 300
TERMS = (12, 24, 36, 48, 60)
POLICY = Path(__file__).resolve().with_name("loan_policy.toml")
SIGNOFF = shutil.which("signoff", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


class Stop(Exception):
    """The workflow cannot go on; the message says why."""


class Refused(Stop):
    """The application itself is wrong; nothing was asked."""


def say(step: int, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


# -- 1. the application ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Application:
    applicant: str
    amount: float  #: EUR
    annual_income: float  #: EUR
    credit_score: int  #: 300..850
    term_months: int


def validate(args: argparse.Namespace) -> Application:
    """The application, or Refused naming every field to fix."""
    problems = []
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.applicant):
        problems.append("--applicant: use 1 to 64 letters, digits, _ or -")
    if not 500 <= args.amount <= 500_000:
        problems.append(f"--amount {args.amount:g}: lend between 500 and 500,000 EUR")
    if not 1_000 <= args.income <= 10_000_000:
        problems.append(f"--income {args.income:g}: give the yearly income, 1,000 to 10,000,000 EUR")
    if not 300 <= args.credit_score <= 850:
        problems.append(f"--credit-score {args.credit_score}: scores run from 300 to 850")
    if args.term not in TERMS:
        problems.append(f"--term {args.term}: choose one of {', '.join(map(str, TERMS))} months")
    if problems:
        raise Refused("application refused: " + "; ".join(problems))
    return Application(
        applicant=args.applicant,
        amount=round(args.amount, 2),
        annual_income=round(args.income, 2),
        credit_score=args.credit_score,
        term_months=args.term,
    )


# -- 3. the model: logistic regression, in plain Python ---------------------------------------------


def features(amount: float, income: float, score: float, term: float) -> list[float]:
    return [amount / income, (score - 650) / 100, term / 60]


def p_of(weights: list[float], bias: float, x: list[float]) -> float:
    """The logistic function of a weighted sum."""
    return 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True)) - bias))


@dataclass(frozen=True)
class Scorer:
    weights: list[float]
    bias: float
    accuracy: float  #: on its training data

    def p_repay(self, app: Application) -> float:
        return p_of(self.weights, self.bias, features(app.amount, app.annual_income, app.credit_score, app.term_months))


def train() -> Scorer:
    """Past loans drawn from a fixed seed (the true rule: debt-to-income hurts, credit score helps), then
    batch gradient descent on the log-loss. The same seed always gives the same model."""
    rng, data = random.Random(SEED), []
    for _ in range(SAMPLES):
        score = min(850, max(300, round(rng.gauss(680, 70))))
        x = features(rng.uniform(1_000, 100_000), rng.uniform(20_000, 200_000), score, rng.choice(TERMS))
        data.append((x, 1.0 if rng.random() < p_of([-5.0, 2.5, -1.0], 3.0, x) else 0.0))
    weights, bias = [0.0, 0.0, 0.0], 0.0
    for _ in range(EPOCHS):
        grad, grad_bias = [0.0, 0.0, 0.0], 0.0
        for x, y in data:
            error = p_of(weights, bias, x) - y
            grad = [g + error * v for g, v in zip(grad, x, strict=True)]
            grad_bias += error
        weights = [w - g / SAMPLES for w, g in zip(weights, grad, strict=True)]
        bias -= grad_bias / SAMPLES
    right = sum((p_of(weights, bias, x) >= 0.5) == (y == 1.0) for x, y in data)
    return Scorer(weights, bias, right / SAMPLES)


# -- talking to signoff ------------------------------------------------------------------------------


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call; its structured answer, or Stop with the server's message."""
    result = await client.call_tool(tool, arguments)
    answer: dict[str, Any] | None = result.structured_content
    if result.is_error or answer is None:
        raise Stop(f"{tool}: " + " ".join(c.text for c in result.content if isinstance(c, TextContent)))
    return answer


async def decided(client: Client, step: int, request_id: str, db: Path) -> dict[str, Any]:
    """Wait (get_status with wait_seconds, again and again) until a person decides or the request expires."""
    exe = "signoff" if shutil.which("signoff") == SIGNOFF else str(SIGNOFF)
    say(step, f"waiting for a person to decide request {request_id}; in another terminal, one of:")
    for verdict, reason in (("approve", []), ("reject", ["--comment", "REASON"])):
        command = [exe, "review", verdict, request_id, "--as", "YOUR_NAME", *reason, "--db", str(db)]
        print(f"      {verdict + ':':8} {shlex.join(command)}", flush=True)
    while (status := await call(client, "get_status", {"request_id": request_id, "wait_seconds": 60}))[
        "status"
    ] == "pending":
        say(step, f"still pending; waiting again (it expires at {status['expires_at']})")
    return status


async def serving_version(client: Client, scorer: Scorer, db: Path, routing_key: str) -> dict[str, Any] | None:
    """Step 2: resolve_model, registering and promoting the model first if it serves nothing yet."""
    model = next((m for m in (await call(client, "list_models", {}))["models"] if m["name"] == MODEL), None)
    if model is None:
        facts = {"metadata": {"kind": "logistic regression", "training_accuracy": round(scorer.accuracy, 4)}}
        facts["lineage"] = {"data": "synthetic", "seed": SEED, "samples": SAMPLES}
        where = {"name": MODEL, "version": VERSION, "endpoint": f"local://{Path(__file__).name}", "agent_id": AGENT}
        registered = await call(client, "register_model_version", where | facts)
        say(2, f"register_model_version: {registered['message']}")
        model = await call(client, "get_model", {"name": MODEL})
    if model["production"] is None:
        asked = [c for c in model["pending"] if c["kind"] == "promote"]
        if not asked:
            reason = f"first production version; training accuracy {scorer.accuracy:.1%}"
            promoted = {"name": MODEL, "version": VERSION, "reason": reason, "agent_id": AGENT}
            asked = [(await call(client, "promote_model", promoted))["change"]]
        say(2, f"{MODEL} serves nothing yet: putting {VERSION} in production needs a person's approval")
        status = await decided(client, 2, asked[0]["request_id"], db)
        if status["status"] != "approved":
            return None
        await call(client, "get_model", {"name": MODEL})  # reading the model applies the approved promotion
    routed = await call(client, "resolve_model", {"name": MODEL, "routing_key": routing_key})
    say(2, f"resolve_model: {MODEL} {routed['version']} serves this application ({routed['arm']})")
    return routed


# -- the workflow ------------------------------------------------------------------------------------


async def run(app: Application, db: Path, expires_in: int) -> None:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env |= {"SIGNOFF_DB": str(db), "SIGNOFF_CONFIG": str(POLICY), "SIGNOFF_LOG_LEVEL": "WARNING"}
    if SIGNOFF is None:
        raise Stop("the signoff command is not installed: pip install -e . in the repository")
    scorer = train()
    async with Client(StdioServerParameters(command=SIGNOFF, args=["serve"], env=env)) as client:
        routed = await serving_version(client, scorer, db, app.applicant)
        if routed is None:
            say(8, "fallback: the model was not approved for production; the application goes to an underwriter")
            return

        started = time.perf_counter()
        p_repay = scorer.p_repay(app)
        latency_ms = (time.perf_counter() - started) * 1000
        decision = "disburse" if p_repay >= 0.5 else "decline"
        confidence = round(max(p_repay, 1 - p_repay), 4)
        model = f"{MODEL} {routed['version']} (trained here, accuracy {scorer.accuracy:.1%})"
        say(3, f"{model}: repays with p={p_repay:.3f}, so {decision} with confidence {confidence}")

        item = {"name": MODEL, "version": routed["version"], "latency_ms": latency_ms, "ok": True}
        item |= {"confidence": confidence, "decision_id": routed["decision_id"]}
        recorded = await call(client, "record_inferences", {"items": [item]})
        say(4, f"record_inferences: {recorded['recorded']} inference recorded for {MODEL} {routed['version']}")

        action, payload = f"loans.{decision}", {**asdict(app), "currency": "EUR", "model_version": routed["version"]}
        summary = f"{decision.capitalize()} {app.amount:,.2f} EUR over {app.term_months} months to {app.applicant}"
        ask = {"action": action, "summary": summary, "payload": payload, "confidence": confidence}
        status = await call(client, "request_approval", ask | {"agent_id": AGENT, "expires_in_seconds": expires_in})
        why = "; ".join(t["detail"] for t in status["triggers"]) or "no trigger"
        say(5, f"request_approval {action}: {status['status']} ({why})")

        if status["status"] == "pending":
            status = await decided(client, 6, status["request_id"], db)
        say(6, f"{status['status']} (decided by {status['decided_by'] or 'nobody'}): {status['message']}")

        if status["status"] != "approved" or not status["actionable"]:  # actionable: not lapsed since
            say(8, f"fallback: {action} is not executed; {app.applicant}'s application goes to an underwriter")
            return
        check = await call(
            client, "verify_receipt", {"receipt": status["receipt"], "action": action, "payload": payload}
        )
        if not check["valid"]:
            raise Stop(f"the receipt does not approve this action: {check['reason']}; nothing is executed")
        approvers = ", ".join(status["receipt"]["approvers"]) or status["receipt"]["decided_by"]
        say(7, f"verify_receipt: valid; request {status['request_id']} approved by {approvers}")
        if decision == "disburse":
            say(8, f"execute: transfer {app.amount:,.2f} EUR to {app.applicant} over {app.term_months} months")
        else:
            say(8, f"execute: send {app.applicant} the decline letter")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="signoff's SQLite file (default: a new temporary one)")
    parser.add_argument("--applicant", default="applicant-1042")
    parser.add_argument("--amount", type=float, default=25_000.0, help="EUR; over 20,000 always needs a person")
    parser.add_argument("--income", type=float, default=60_000.0, help="yearly, EUR")
    parser.add_argument("--credit-score", type=int, default=700)
    parser.add_argument("--term", type=int, default=36, help="months")
    parser.add_argument("--expires-in", type=int, default=900, help="seconds a person has to decide")
    args = parser.parse_args(argv)
    try:
        app = validate(args)
        say(1, f"application valid: {app}")
        db = args.db or Path(tempfile.mkdtemp(prefix="signoff-loan-")) / "signoff.db"
        print(f"    signoff database: {db}", flush=True)
        anyio.run(run, app, db.resolve(), args.expires_in)
    except Stop as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, Refused) else 1
    except KeyboardInterrupt:
        print("interrupted: nothing was executed; a pending request expires on its own", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
