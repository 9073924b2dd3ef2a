"""CSV exports open as text in a spreadsheet whatever its list separator (reviews R4, R5). A spreadsheet that
separates on ``;`` (Excel in many locales) reads a comma-separated file's line as one field, quotes and all, and
split ``Refund;=cmd|' /C calc'!A0;`` into a cell starting with ``=``, a formula; so did a line break in a summary, and
a string inside a payload or the flags (JSON cells). Read back with each separator, no export has such a cell."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import anyio
import pytest
from mcp import Client

from signoff.server.app import build_server
from signoff.server.cli import main
from signoff.server.config import Settings
from signoff.server.spreadsheet import FORMULA_STARTS
from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService
from tests.browser.support import ALICE, CONFIG, http_session, running
from tests.integration.support import base_env, free_port

SUMMARY = "Refund;=cmd|' /C calc'!A0;\n=cmd|' /C calc'!A0"  #: a ; or a line break starts a part a spreadsheet reads
EVIL = "x;=cmd|' /C calc'!A0;"  #: in the payload and the flags: JSON cells are text an agent wrote too
SEPARATORS = [",", ";", "\t", "|"]


def formula_cells(text: str, separator: str) -> list[str]:
    rows = csv.reader(io.StringIO(text), delimiter=separator)
    return [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]


async def _decided_request(db: Path) -> str:
    async with Client(build_server(Settings(db_path=db))) as client:
        asked = await client.call_tool(
            "request_approval",
            {
                "action": "refunds.issue",
                "summary": SUMMARY,
                "payload": {"amount": 5, "note": EVIL, "deltas": [3, -2]},
                "flags": [EVIL],
            },
        )
    request_id = str((asked.structured_content or {})["request_id"])
    store = await SqliteStore.open(db)
    try:
        await ApprovalService(store).vote(request_id, "dana", Verdict.APPROVE, None)
    finally:
        await store.close()
    return request_id


@pytest.mark.parametrize("command", [["history", "--format", "csv"], ["export", "training-data", "--format", "csv"]])
async def test_the_cli_exports_give_no_formula_whatever_the_separator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    db = tmp_path / "signoff.db"
    await _decided_request(db)
    capsys.readouterr()
    assert await anyio.to_thread.run_sync(main, [*command, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "Refund;'=cmd" in out  # the summary is there, as text
    for separator in SEPARATORS:
        assert formula_cells(out, separator) == [], separator


async def test_the_console_export_gives_no_formula_whatever_the_separator(tmp_path: Path) -> None:
    (tmp_path / "signoff.toml").write_text(CONFIG)
    env = base_env(tmp_path / "signoff.db", SIGNOFF_CONFIG=str(tmp_path / "signoff.toml"))
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        await _decided_request(tmp_path / "signoff.db")
        async with http_session(base, ALICE) as (http, _):
            exported = await http.get("/history/export.csv")
    assert exported.status_code == 200 and "Refund;'=cmd" in exported.text
    for separator in SEPARATORS:
        assert formula_cells(exported.text, separator) == [], separator


@pytest.mark.parametrize(
    ("command", "column"),
    [(["history", "--format", "csv"], "payload"), (["export", "training-data", "--format", "csv"], "payload")],
)
async def test_a_json_cell_reads_back_as_the_value_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], column: str
) -> None:
    """The guard changes no JSON cell's value: ``;`` and ``|`` inside its strings are JSON escapes, and a negative
    number after a comma stays a number (a spreadsheet never splits a quoted cell on a comma)."""
    db = tmp_path / "signoff.db"
    await _decided_request(db)
    capsys.readouterr()
    assert await anyio.to_thread.run_sync(main, [*command, "--db", str(db)]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert json.loads(row[column]) == {"amount": 5, "note": EVIL, "deltas": [3, -2]}
