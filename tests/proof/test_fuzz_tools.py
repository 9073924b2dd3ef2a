"""Proof: whatever an agent sends to any tool, the answer is a clear tool error or a valid result, never a crash,
and an error changes nothing. Forged and tampered approval receipts are refused.

Hypothesis generates calls to every tool the server lists (the approval tools and the model registry's): wrong
types, missing and unknown fields, huge strings, NaN and infinities, nested junk, unknown and real ids, real and
altered receipts. A quarter of the calls are valid, half are valid calls with one or two arguments broken or dropped.
The examples share one server (clock stopped) seeded with a pending request, an approved one with its receipt and a
registered model, and each example connects its own client: first on the in-memory stores, then on the SQLite
stores, where values become SQL parameters and UTC text. "Changes nothing" compares every stored row before and
after a failed call, but the notifications the background worker delivers meanwhile.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import jsonschema  # type: ignore[import-untyped]
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult, TextContent

from signoff.server.app import build_server
from signoff.server.cli import main as cli_main
from signoff.server.config import Settings
from signoff.storage import DecidedBy, EventKind, RequestQuery
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.models.memory import MemoryModelStore
from signoff.tools.models.service import ModelSettings
from tests.fakes.clock import FakeClock
from tests.integration.support import SIGNOFF, base_env

TOOLS = [
    "request_approval",
    "get_status",
    "cancel_request",
    "list_requests",
    "verify_receipt",
    "permission_prompt",
    "register_model_version",
    "list_models",
    "get_model",
    "resolve_model",
    "record_inference",
    "record_inferences",
    "model_stats",
    "analyze_canary",
    "set_traffic",
    "promote_model",
    "rollback_model",
    "model_history",
]
#: The text the SDK puts in place of an unexpected exception's message (mcp 2.3.0, tools/base.py): a crash.
WITHHELD = re.compile(r"(Error executing tool \w+(: )?)+")

# Placeholders replaced, in each example, by what the seeding made (ids are random per server).
PENDING, APPROVED, RECEIPT = "<pending-id>", "<approved-id>", "<receipt>"
TAMPERED = "<tampered:{}>"
RECEIPT_FIELDS = ("request_id", "action", "payload_sha256", "decided_at", "decided_by", "approvers", "signature")

HUGE = st.sampled_from([("x", 5_000), ("é", 70_000), ("a.", 40_000)]).map(lambda unit: unit[0] * unit[1])
TEXT = st.text(max_size=30) | HUGE | st.sampled_from(["", " ", "\x00", "\u202e", "\uff41", "null", "-1"])
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.5, 1.0, -0.0, 1e308, -1e-308])
SCALARS = st.none() | st.booleans() | st.integers() | st.sampled_from([2**64, -(2**70), 10**30]) | FLOATS | TEXT
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.text(max_size=10), JUNK, max_size=5)
IDS = st.sampled_from([PENDING, APPROVED, "req_doesnotexist", "", "x" * 65, "req_" + "a" * 60]) | TEXT
NAMES = st.sampled_from(["fraud", "v1", "v2", "v3", "unknown-model", "bad name!", "", "x" * 129]) | TEXT
MOMENTS = st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "yesterday", "0001-01-01T00:00:00+14:00"]
)
RECEIPTS = (
    st.sampled_from([RECEIPT, *(TAMPERED.format(f) for f in RECEIPT_FIELDS)])
    | OBJECTS
    | st.fixed_dictionaries({f: JUNK for f in RECEIPT_FIELDS})
)
SHORT_WAIT = st.sampled_from([0, 0.01, -1, 301, 1e309]) | st.text(max_size=3)  #: never a long real wait
INFERENCE = st.fixed_dictionaries(
    {"name": NAMES, "version": NAMES, "latency_ms": FLOATS, "ok": st.booleans()},
    optional={"confidence": FLOATS | st.none(), "decision_id": TEXT | st.none(), "extra": JUNK},
)

#: Plausible values per argument name, so calls get past the schema into the tools; anything can also be junk.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from(["payments.transfer", "db.drop", "Bash", "bad action!", "a" * 201]) | TEXT,
    "summary": TEXT,
    "payload": OBJECTS,
    "input": OBJECTS,
    "metadata": OBJECTS,
    "lineage": OBJECTS,
    "confidence": FLOATS | st.none(),
    "flags": st.lists(TEXT, max_size=40),
    "agent_id": TEXT | st.none(),
    "idempotency_key": TEXT | st.none(),
    "wait_seconds": SHORT_WAIT,
    "expires_in_seconds": st.integers() | st.sampled_from([0, 1, 10**12]) | st.none(),
    "request_id": IDS,
    "reason": TEXT,
    "status": st.sampled_from(["pending", "approved", "maybe", "PENDING"]) | st.none(),
    "since": MOMENTS | st.none(),
    "until": MOMENTS | st.none(),
    "at": MOMENTS | st.none(),
    "limit": st.integers(),
    "cursor": TEXT | st.sampled_from(["WyIyMDI2IiwgInJlcSJd", "bnVsbA", "W10"]),
    "order": st.sampled_from(["newest", "priority", "PRIORITY", "oldest"]) | TEXT,
    "receipt": RECEIPTS,
    "tool_name": st.sampled_from(["Read", "Bash", "bad tool!"]) | TEXT,
    "tool_use_id": TEXT | st.none(),
    "name": NAMES,
    "model": NAMES | st.none(),
    "version": NAMES,
    "baseline": NAMES,
    "candidate": NAMES,
    "endpoint": st.sampled_from(["http://models.local/fraud", "javascript:alert(1)", "", " "]) | TEXT,
    "routing_key": TEXT | st.none(),
    "decision_id": TEXT | st.none(),
    "latency_ms": FLOATS,
    "ok": st.booleans(),
    "items": st.lists(INFERENCE | JUNK, max_size=5),
    "window_seconds": st.integers() | st.sampled_from([60, 3600, 2_592_001]),
    "min_samples": st.integers(),
    "weights": st.dictionaries(NAMES, FLOATS | JUNK, max_size=4),
}


#: Each tool's parameters (from its input schema; a test below checks this against what the server lists).
PARAMETERS: dict[str, set[str]] = {
    "request_approval": {"action", "summary", "payload", "confidence", "flags", "agent_id", "idempotency_key"}
    | {"wait_seconds", "expires_in_seconds", "model", "version", "decision_id"},
    "get_status": {"request_id", "wait_seconds"},
    "cancel_request": {"request_id", "reason"},
    "list_requests": {"status", "action", "agent_id", "since", "until", "limit", "cursor", "order"},
    "verify_receipt": {"receipt", "action", "payload"},
    "permission_prompt": {"tool_name", "input", "tool_use_id"},
    "register_model_version": {"name", "version", "endpoint", "metadata", "lineage", "idempotency_key", "agent_id"},
    "list_models": set(),
    "get_model": {"name"},
    "resolve_model": {"name", "routing_key"},
    "record_inference": {"name", "version", "latency_ms", "ok", "confidence", "decision_id"},
    "record_inferences": {"items"},
    "model_stats": {"name", "window_seconds"},
    "analyze_canary": {"name", "baseline", "candidate", "min_samples", "window_seconds"},
    "set_traffic": {"name", "weights", "reason", "agent_id"},
    "promote_model": {"name", "version", "reason", "agent_id"},
    "rollback_model": {"name", "reason", "agent_id"},
    "model_history": {"name", "at"},
}
REQUIRED: dict[str, set[str]] = {
    "request_approval": {"action", "summary"},
    "get_status": {"request_id"},
    "cancel_request": {"request_id", "reason"},
    "list_requests": set(),
    "verify_receipt": {"receipt", "action"},
    "permission_prompt": {"tool_name", "input"},
    "register_model_version": {"name", "version", "endpoint"},
    "list_models": set(),
    "get_model": {"name"},
    "resolve_model": {"name"},
    "record_inference": {"name", "version", "latency_ms", "ok"},
    "record_inferences": {"items"},
    "model_stats": {"name"},
    "analyze_canary": {"name", "baseline", "candidate"},
    "set_traffic": {"name", "weights", "reason"},
    "promote_model": {"name", "version", "reason"},
    "rollback_model": {"name", "reason"},
    "model_history": {"name"},
}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
VERSIONS = st.sampled_from(["v1", "v2", "v3"])
#: Valid values per argument name, so that whole calls succeed and change things; mutations then break them.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from(["payments.transfer", "db.drop", "Bash", "Read", "models.promote"]),
    "summary": st.sampled_from(["pay invoice 7", "drop staging", "ship it"]),
    "payload": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    "input": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    "metadata": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    "lineage": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    "confidence": st.floats(0, 1) | st.none(),
    "flags": st.lists(st.sampled_from(["pii", "fairness:age"]), max_size=2),
    "agent_id": st.sampled_from(["billing-bot", "deploy-bot"]) | st.none(),
    "idempotency_key": st.sampled_from(["k1", "k2"]) | st.none(),
    "wait_seconds": st.sampled_from([0, 0.01]),
    "expires_in_seconds": st.integers(1, 100_000) | st.none(),
    "request_id": st.sampled_from([PENDING, APPROVED]),
    "reason": st.sampled_from(["plan changed", "canary looks good"]),
    "status": st.sampled_from(["pending", "approved", "rejected", "expired", "cancelled"]) | st.none(),
    "since": st.sampled_from(["2025-12-31T00:00:00Z"]) | st.none(),
    "until": st.sampled_from(["2026-01-02T00:00:00+02:00"]) | st.none(),
    "at": st.sampled_from(["2026-01-01T00:00:00Z"]) | st.none(),
    "limit": st.integers(1, 200),
    "cursor": st.none(),
    "order": st.sampled_from(["newest", "priority"]),
    "receipt": st.just(RECEIPT),
    "tool_name": st.sampled_from(["Read", "Bash"]),
    "tool_use_id": st.sampled_from(["toolu_1"]) | st.none(),
    "name": st.just("fraud"),
    "model": st.none(),  # a valid request_approval names no model (test_model_link covers the link)
    "version": VERSIONS,
    "baseline": VERSIONS,
    "candidate": VERSIONS,
    "endpoint": VERSIONS.map(lambda v: f"http://m/{v}"),
    "routing_key": st.text(min_size=1, max_size=10) | st.none(),
    "decision_id": st.none(),
    "latency_ms": st.floats(0, 10_000),
    "ok": st.booleans(),
    "items": st.lists(
        st.fixed_dictionaries(
            {"name": st.just("fraud"), "version": VERSIONS, "latency_ms": st.floats(0, 1e4), "ok": st.booleans()}
        ),
        min_size=1,
        max_size=5,
    ),
    "window_seconds": st.integers(60, 2_592_000),
    "min_samples": st.integers(1, 1000),
    "weights": st.sampled_from([{"v1": 100}, {"v1": 90, "v2": 10}, {"v2": 100}, {"v1": 50, "v2": 50}]),
}


@st.composite
def tool_call(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid call, a valid call with one or two arguments broken or dropped, or a call made of junk."""
    tool = draw(st.sampled_from(TOOLS))
    names = sorted(PARAMETERS[tool])
    mode = draw(st.sampled_from(["valid", "mutated", "mutated", "junk"]))
    arguments: dict[str, Any] = {}
    for name in names:
        if mode == "junk":
            choice = draw(st.sampled_from(["plausible", "plausible", "junk", "missing"]))
            if choice != "missing":
                arguments[name] = draw(PLAUSIBLE[name] if choice == "plausible" else JUNK)
        elif name in REQUIRED[tool] or draw(st.booleans()):
            arguments[name] = draw(VALID[name])
    if mode == "mutated" and names:
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
            broken = draw(st.sampled_from(["plausible", "junk", "missing"]))
            arguments.pop(name, None)
            if broken != "missing":
                arguments[name] = draw(PLAUSIBLE[name] if broken == "plausible" else JUNK)
    if mode != "valid" and draw(st.booleans()):
        arguments.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), JUNK, max_size=2)))
    return tool, arguments


class World:
    """A server with a stopped clock, on in-memory stores or (``sqlite``) on a database file, and what its seeding
    made."""

    def __init__(self, tmp: Path, key: str = "k" * 40, *, sqlite: bool = False) -> None:
        self.tmp = tmp
        self.store = MemoryStore()
        self.models = MemoryModelStore(seed=1)
        self.clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
        self.db: Path | None = tmp / "signoff.db" if sqlite else None
        settings = Settings(
            db_path=tmp / "signoff.db",
            receipt_key=key,
            progress_interval=0.01,
            permission_wait_seconds=0.01,
            models=ModelSettings(guard_enabled=False),
        )
        stores: dict[str, Any] = {} if sqlite else {"store": self.store, "model_store": self.models}
        self.server = build_server(settings, clock=self.clock, **stores)
        self.ids: dict[str, str] = {}
        self.receipt: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}

    async def ready(self, client: Client) -> None:
        """Seed once (the first example); later examples build on whatever earlier calls stored."""
        if not self.ids:
            await self.seed(client)
            self.schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}

    async def seed(self, client: Client) -> None:
        pending = await client.call_tool("request_approval", {"action": "db.drop", "summary": "drop staging"})
        approved = await client.call_tool(
            "request_approval",
            {"action": "payments.transfer", "summary": "pay", "payload": {"amount": 5}, "confidence": 0.99},
        )
        assert pending.structured_content is not None and approved.structured_content is not None
        self.ids = {
            PENDING: pending.structured_content["request_id"],
            APPROVED: approved.structured_content["request_id"],
        }
        self.receipt = approved.structured_content["receipt"]
        for version in ("v1", "v2"):
            registered = await client.call_tool(
                "register_model_version", {"name": "fraud", "version": version, "endpoint": f"http://m/{version}"}
            )
            assert not registered.is_error, registered

    def fill(self, value: Any) -> Any:
        """The value with placeholders replaced by real ids and receipts (genuine or altered)."""
        if isinstance(value, str):
            if value == RECEIPT:
                return dict(self.receipt)
            if value.startswith("<tampered:"):
                return tampered(self.receipt, value.removeprefix("<tampered:").removesuffix(">"))
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    async def people_decided(self) -> int:
        """Votes, and requests decided by people: what no agent tool may ever make (nothing here votes)."""
        if self.db is not None:
            with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
                votes = conn.execute("SELECT count(*) FROM votes").fetchone()[0]
                by_people = conn.execute("SELECT count(*) FROM requests WHERE decided_by = 'human'").fetchone()[0]
                return int(votes) + int(by_people)
        requests = (await self.store.list_requests(RequestQuery(limit=10_000))).items
        return sum(len(r.votes) + (r.decided_by is DecidedBy.HUMAN) for r in requests)

    async def snapshot(self) -> tuple[object, ...]:
        """Everything a call could change, but the deliveries the outbox worker records in the background."""
        if self.db is not None:
            return database_rows(self.db)
        requests = (await self.store.list_requests(RequestQuery(limit=10_000))).items
        events = [e async for e in self.store.events() if e.kind is not EventKind.NOTIFIED]
        models = await self.models.list_models()
        around = (self.clock.now() - timedelta(days=1), self.clock.now() + timedelta(days=1))  # the clock is stopped
        history = [await self.models.history(m.name) for m in models]
        telemetry = [await self.models.telemetry(m.name, *around) for m in models]
        return requests, events, models, await self.models.pending_changes(), history, telemetry


#: What the background workers change on their own: notification deliveries and the messages they posted.
#: written by background workers, not by the call: deliveries, alerts, and the counters their events keep
#: (``metric_counts`` counts ``notified`` events; the rows it counts are checked themselves)
WORKER_TABLES = {"outbox", "outbox_deliveries", "message_refs", "alert_state", "alert_episodes", "alert_outbox"}


def database_rows(db: Path) -> tuple[object, ...]:
    """Every row of every table (read-only), but the workers' tables and ``notified`` events."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows: list[tuple[str, list[str]]] = []
        for table in sorted(set(tables) - WORKER_TABLES):
            where = {"events": " WHERE kind != 'notified'", "metric_counts": " WHERE metric != 'notifications'"}.get(
                table, ""
            )
            rows.append((table, sorted(map(repr, conn.execute(f'SELECT * FROM "{table}"{where}')))))
    return tuple(rows)


def tampered(receipt: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The genuine receipt with one field changed as a forger would."""
    changed = dict(receipt)
    value = changed[name]
    if name == "approvers":
        changed[name] = [*value, "mallory"]
    elif name == "decided_by":
        changed[name] = "human" if value == "policy" else "policy"
    elif name == "signature":
        changed[name] = value[:-1] + ("0" if value[-1] != "0" else "1")
    else:
        changed[name] = value[:-1] + ("0" if value[-1] != "0" else "1")
    return changed


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def check_result(tool: str, result: CallToolResult, schemas: Mapping[str, Any]) -> None:
    if result.is_error:
        message = text_of(result).strip()
        assert message, f"{tool}: an error with no message"
        assert not WITHHELD.fullmatch(message), f"{tool} crashed: the SDK withheld the exception ({message!r})"
        return
    if tool == "permission_prompt":  # plain text JSON, as Claude Code expects
        answer = json.loads(text_of(result))
        assert answer["behavior"] in ("allow", "deny"), answer
        return
    assert result.structured_content is not None, f"{tool}: a result without structured content"
    jsonschema.validate(result.structured_content, schemas[tool])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One server for all the examples (building it is the slow part); each example connects a new client."""
    return World(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The same server on the SQLite stores (one file), as `signoff serve` runs it."""
    return World(tmp_path_factory.mktemp("fuzz-sqlite"), sqlite=True)


async def one_call(world: World, tool: str, raw: dict[str, Any]) -> None:
    """Call ``tool``; the checks run after the client has closed, so a failure reads plainly."""
    with anyio.fail_after(20):
        async with Client(world.server) as client:
            await world.ready(client)
            arguments = world.fill(raw)
            before = await world.snapshot()
            result = await client.call_tool(tool, arguments)
            after = await world.snapshot() if result.is_error else before
            decided = await world.people_decided()
    event(f"{tool}: {'error' if result.is_error else 'result'}")
    check_result(tool, result, world.schemas)
    assert after == before, f"{tool} failed but changed the database: {arguments!r}"
    assert decided == 0, f"{tool} recorded a person's vote or decision: no agent tool may decide ({arguments!r})"


FUZZ_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]


@settings(max_examples=600, deadline=None, suppress_health_check=FUZZ_CHECKS)
@given(call=tool_call())
async def test_any_arguments_give_a_clear_error_or_a_valid_result(world: World, call: tuple[str, Any]) -> None:
    await one_call(world, *call)


@settings(max_examples=150, deadline=None, suppress_health_check=FUZZ_CHECKS)
@given(call=tool_call())
async def test_any_arguments_give_a_clear_error_or_a_valid_result_on_sqlite(
    sqlite_world: World, call: tuple[str, Any]
) -> None:
    """The same on the SQLite stores, where values become SQL parameters and UTC text."""
    await one_call(sqlite_world, *call)


async def test_the_fuzzed_parameters_are_every_tools_parameters(tmp_path: Path) -> None:
    """If a tool or a parameter is added, the fuzzer must learn about it."""
    world = World(tmp_path)
    async with Client(world.server) as client:
        tools = (await client.list_tools()).tools
    assert {t.name: set(t.input_schema.get("properties", {})) for t in tools} == PARAMETERS
    assert {t.name: set(t.input_schema.get("required", [])) for t in tools} == REQUIRED
    assert set(TOOLS) == set(PARAMETERS)
    assert set().union(*PARAMETERS.values()) <= set(PLAUSIBLE) & set(VALID)


async def test_forged_and_tampered_receipts_are_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with Client(world.server) as client:
        await world.seed(client)

        async def verify(receipt: object, action: str = "payments.transfer", payload: object = None) -> Any:
            arguments = {"receipt": receipt, "action": action, "payload": {"amount": 5} if payload is None else payload}
            result = await client.call_tool("verify_receipt", arguments)
            assert not result.is_error, text_of(result)
            assert result.structured_content is not None
            return result.structured_content

        genuine = world.receipt
        assert await verify(genuine) == {"valid": True, "reason": None}
        for name in RECEIPT_FIELDS:
            answer = await verify(tampered(genuine, name))
            assert answer["valid"] is False and answer["reason"], (name, answer)
        assert (await verify(genuine, payload={"amount": 50_000}))["valid"] is False
        assert (await verify(genuine, payload={"amount": 5, "to": "mallory"}))["valid"] is False
        assert (await verify(genuine, action="payments.refund"))["valid"] is False
        pending = await client.call_tool("get_status", {"request_id": world.ids[PENDING]})
        assert pending.structured_content is not None and pending.structured_content.get("receipt") is None
        forged = {**genuine, "request_id": world.ids[PENDING], "payload_sha256": "0" * 64}
        assert (await verify(forged))["valid"] is False
        other_key = World(tmp_path, key="q" * 40)
        async with Client(other_key.server) as other:
            await other_key.seed(other)
        assert (await verify(other_key.receipt))["valid"] is False, "a receipt signed by another server passed"


OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
MOMENT = st.datetimes(timezones=OFFSETS) | st.sampled_from([datetime.min, datetime.max]).flatmap(
    lambda edge: OFFSETS.map(lambda zone: edge.replace(tzinfo=zone))
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moment=MOMENT, where=st.sampled_from([("list_requests", "since"), ("list_requests", "until")]))
async def test_any_moment_gives_a_clear_error_or_a_valid_result_on_sqlite(
    sqlite_world: World, moment: datetime, where: tuple[str, str]
) -> None:
    """Dates reach SQL as UTC text on the SQLite store: the first and last days of the calendar must not crash it."""
    tool, name = where
    with anyio.fail_after(20):
        async with Client(sqlite_world.server) as client:
            if not sqlite_world.schemas:
                sqlite_world.schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
            result = await client.call_tool(tool, {name: moment.isoformat()})
    check_result(tool, result, sqlite_world.schemas)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_the_same_moments_through_the_cli_are_a_clear_error_or_an_answer(
    tmp_path: Path, moment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`signoff history --since` takes the same dates from a person: a one-line error or a listing, no traceback."""
    code: int | str | None
    try:
        code = cli_main(["history", "--db", str(tmp_path / "signoff.db"), "--since", moment])
    except SystemExit as exit_:  # argparse refusing the value is a clear error too
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 0 or "since" in err, (code, err)


class RawClient:
    """JSON-RPC over the stdio of a `signoff serve` process, written with Python's ``json`` module as many clients
    are: NaN and Infinity go on the wire as literals (the SDK's own client would send them as null)."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.last_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.stdin.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.last_id += 1
        await self.send({"id": self.last_id, "method": method, "params": params})
        while True:
            answer: dict[str, Any] = json.loads(await self.stdout.receive_until(b"\n", 10_000_000))
            if answer.get("id") == self.last_id:
                return answer

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = await self.request("tools/call", {"name": tool, "arguments": arguments})
        assert "result" in answer, f"{tool}: a protocol error instead of a tool result: {answer}"
        result: dict[str, Any] = answer["result"]
        return result


def non_finite_calls(receipt: dict[str, Any], request_id: str) -> list[tuple[str, dict[str, Any]]]:
    nan, inf = float("nan"), float("inf")
    return [
        ("verify_receipt", {"receipt": receipt, "action": "payments.transfer", "payload": {"amount": nan}}),
        ("permission_prompt", {"tool_name": "Bash", "input": {"command": "ls", "timeout": nan}}),
        ("request_approval", {"action": "payments.transfer", "summary": "pay", "payload": {"amount": inf}}),
        ("request_approval", {"action": "payments.transfer", "summary": "pay", "confidence": nan}),
        ("request_approval", {"action": "payments.transfer", "summary": "pay", "wait_seconds": inf}),
        ("get_status", {"request_id": request_id, "wait_seconds": nan}),
        ("list_requests", {"limit": nan}),
        ("register_model_version", {"name": "fraud", "version": "v2", "endpoint": "e", "metadata": {"a": -inf}}),
        ("register_model_version", {"name": "fraud", "version": "v2", "endpoint": "e", "lineage": {"a": [nan]}}),
        ("set_traffic", {"name": "fraud", "weights": {"v1": nan}, "reason": "canary"}),
        ("set_traffic", {"name": "fraud", "weights": {"v1": inf}, "reason": "canary"}),
        ("record_inference", {"name": "fraud", "version": "v1", "latency_ms": nan, "ok": True}),
        ("record_inference", {"name": "fraud", "version": "v1", "latency_ms": 5, "ok": True, "confidence": nan}),
        ("record_inferences", {"items": [{"name": "fraud", "version": "v1", "latency_ms": inf, "ok": True}]}),
        ("model_stats", {"name": "fraud"}),
        ("analyze_canary", {"name": "fraud", "baseline": "v1", "candidate": "v1", "min_samples": inf}),
    ]


@pytest.mark.slow
async def test_nan_and_infinity_from_a_plain_json_client_are_a_clear_error_or_a_valid_result(tmp_path: Path) -> None:
    db = tmp_path / "signoff.db"
    with (tmp_path / "server.log").open("wb") as log:
        process = await anyio.open_process(
            [str(SIGNOFF), "serve"], env=base_env(db), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    problems: list[str] = []
    with anyio.fail_after(60):
        async with process:
            client = RawClient(process)
            hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
            assert "result" in await client.request("initialize", hello)
            await client.send({"method": "notifications/initialized"})
            listed = (await client.request("tools/list", {}))["result"]["tools"]
            schemas = {tool["name"]: tool.get("outputSchema") for tool in listed}
            approved = await client.call(
                "request_approval",
                {"action": "payments.transfer", "summary": "pay", "payload": {"amount": 5}, "confidence": 0.99},
            )
            receipt, request_id = approved["structuredContent"]["receipt"], approved["structuredContent"]["request_id"]
            registered = await client.call(
                "register_model_version", {"name": "fraud", "version": "v1", "endpoint": "e"}
            )
            assert not registered.get("isError"), registered
            for tool, arguments in non_finite_calls(receipt, request_id):
                before = database_rows(db)
                result = await client.call(tool, arguments)
                text = " ".join(block.get("text", "") for block in result.get("content", []))
                if result.get("isError"):
                    if not text.strip() or WITHHELD.fullmatch(text.strip()):
                        problems.append(f"{tool} {arguments}: crashed ({text!r})")
                    elif database_rows(db) != before:
                        problems.append(f"{tool} {arguments}: failed but changed the database")
                elif schemas[tool] is not None:
                    try:
                        jsonschema.validate(result.get("structuredContent"), schemas[tool])
                    except jsonschema.ValidationError as exc:
                        problems.append(f"{tool} {arguments}: the result breaks the output schema: {exc.message}")
            await client.stdin.aclose()
            await process.wait()
    assert problems == [], "\n".join(problems)
