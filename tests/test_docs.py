"""The docs stay true: every tool, command, setting, proving test, page and link they name exists, and back.

Runs in the ordinary test run and needs no MkDocs (``mkdocs build --strict`` in CI checks the rendering).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import re
import tomllib
from pathlib import Path

from mcp import Client

from signoff.server.app import build_server
from signoff.server.cli import build_parser
from signoff.server.config import Settings
from signoff.storage.approvals.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ("server", "tools", "storage", "notifiers")


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def without_code_blocks(text: str) -> str:
    """The text outside fenced code blocks (a link or heading inside one is an example, not a link)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The body rows of every markdown table whose first column is headed ``first_header``, split into cells."""
    rows: list[list[str]] = []
    inside = False
    for line in without_code_blocks(text).splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if not inside:
            inside = cells[0] == first_header
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        rows.append(cells)
    return rows


def section(text: str, heading: str) -> str:
    """The text under ``## heading``, up to the next heading of the same or a higher level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#{{1,2}} |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {heading}' section"
    return match.group(1)


# --- MCP tools -----------------------------------------------------------------------------------------------


def documented_tools(page: str) -> set[str]:
    """Tool names in the first cell of the page's tool tables, e.g. ``list_models()``, ``get_model(name)``."""
    return {name for row in table_rows(read(page), "tool") for name in re.findall(r"`(\w+)\(", row[0])}


async def test_every_mcp_tool_is_documented_and_every_documented_tool_exists(tmp_path: Path) -> None:
    server = build_server(Settings(db_path=tmp_path / "signoff.db"), store=MemoryStore())
    async with Client(server) as client:
        registered = {tool.name for tool in (await client.list_tools()).tools}
    agents, models = documented_tools("agents.md"), documented_tools("models.md")
    assert agents and models, "the tool tables were not found"
    undocumented, unknown = registered - (agents | models), (agents | models) - registered
    assert not undocumented, f"tools missing from the tool tables of docs/agents.md or docs/models.md: {undocumented}"
    assert not unknown, f"docs/agents.md or docs/models.md name tools the server does not register: {unknown}"


# --- the CLI -------------------------------------------------------------------------------------------------


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand, e.g. ("review",), ("review", "approve")."""
    paths: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths += command_paths(sub, (*prefix, name))
    return paths


def test_every_cli_command_is_documented() -> None:
    text = " ".join((read("reviewers.md") + read("operations.md")).split())
    paths = command_paths(build_parser())
    assert ("review", "approve") in paths
    missing = [p for p in paths if not re.search(rf"signoff {re.escape(' '.join(p))}(?![\w-])", text)]
    assert not missing, "commands not in docs/reviewers.md or docs/operations.md: " + ", ".join(map(" ".join, missing))


# --- settings ------------------------------------------------------------------------------------------------


def variables_in_source() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"SIGNOFF_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return {name for name in names if not name.endswith("_")}  # SIGNOFF_MODEL_* in prose is a prefix, not a name


def test_every_setting_is_in_the_settings_table_and_every_row_is_read() -> None:
    rows = table_rows(section(read("operations.md"), "Settings"), "variable")
    table = {name for row in rows for name in re.findall(r"`(SIGNOFF_[A-Z0-9_]+)`", row[0])}
    source = variables_in_source()
    assert "SIGNOFF_DB" in source and "SIGNOFF_MODEL_GUARD" in source
    unlisted, unread = source - table, table - source
    assert not unlisted, f"SIGNOFF_* names in the package missing from the settings table in operations.md: {unlisted}"
    assert not unread, f"the settings table in docs/operations.md lists variables the package never names: {unread}"


def test_every_opentelemetry_variable_signoff_reads_is_in_the_traces_table_and_back() -> None:
    rows = table_rows(section(read("operations.md"), "Traces"), "OpenTelemetry variable")
    table = {name for row in rows for name in re.findall(r"`(OTEL_[A-Z0-9_]+)`", row[0])}
    tree = ast.parse((ROOT / "server" / "tracing.py").read_text(encoding="utf-8"))
    read_by_code = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"OTEL_[A-Z0-9_]+", node.value)
    }
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in read_by_code
    assert table == read_by_code, (
        f"the Traces table lists {sorted(table)}, server/tracing.py reads {sorted(read_by_code)}"
    )


def test_every_span_signoff_makes_is_in_the_spans_table_and_back() -> None:
    spans = section(read("operations.md"), "Traces").split("### Spans", 1)[1].split("\n### ", 1)[0]
    table = {name for row in table_rows(spans, "span") for name in re.findall(r"`(signoff\.[a-z_.]+)`", row[0])}
    made: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            made.update(re.findall(r'tracing\.span\(\s*"(signoff\.[a-z_.]+)"', text))
            made.update(re.findall(r'^\w+_SPAN = "(signoff\.[a-z_.]+)"', text, re.MULTILINE))
    assert {"signoff.vote", "signoff.store.commit"} <= made
    assert table == made, f"the spans table lists {sorted(table)}, the code makes {sorted(made)}"


# --- guarantees ----------------------------------------------------------------------------------------------


def defines(path: Path, dotted: list[str]) -> bool:
    """Whether the module at ``path`` defines ``dotted``: a function, a class or an assigned name, then methods."""
    body: list[ast.stmt] = ast.parse(path.read_text(encoding="utf-8")).body
    for index, name in enumerate(dotted):
        found: ast.stmt | None = None
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
                found = node
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found = node  # e.g. TestLifecycleOnMemoryStore = LifecycleMachine.TestCase
        if found is None:
            return False
        if index < len(dotted) - 1:
            if not isinstance(found, ast.ClassDef):
                return False
            body = found.body
    return True


def test_every_guarantee_names_tests_that_exist() -> None:
    text = read("guarantees.md")
    rows = table_rows(text, "promise")
    assert len(rows) >= 10
    for row in rows:
        refs = re.findall(r"`(tests/[^`]*)`", row[-1])
        assert refs, f"this guarantee names no test: {row[0]}"
        for ref in refs:
            assert "::" in ref, f"name the test, not only the file: {ref}"
    named = re.findall(r"`(tests/[\w/]+\.py)::([\w:]+)`", text)
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not (ROOT / file).is_file() or not defines(ROOT / file, name.split("::"))
    ]
    assert not missing, "docs/guarantees.md names tests that do not exist: " + ", ".join(missing)


# --- pages and links -----------------------------------------------------------------------------------------


def nav_pages() -> list[str]:
    """The .md files named in mkdocs.yml's nav (read as text: the test needs no YAML library)."""
    lines = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").splitlines()
    start = lines.index("nav:")
    pages = []
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break
        pages += re.findall(r"([\w./-]+\.md)\s*$", line)
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    nav = nav_pages()
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    unlisted, absent = pages - set(nav), set(nav) - pages
    assert not unlisted, f"pages in docs/ missing from mkdocs.yml's nav: {unlisted}"
    assert not absent, f"mkdocs.yml's nav names pages that are not in docs/: {absent}"


def slug(heading: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs' toc extension make it for the headings used here."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", without_code_blocks(path.read_text(encoding="utf-8")), re.M)}


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_every_relative_link_points_at_an_existing_file_and_heading() -> None:
    broken = []
    for source in markdown_files():
        raw = source.read_text(encoding="utf-8")
        text = re.sub(r"`[^`\n]*`", "", without_code_blocks(raw))  # links inside code are examples
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, fragment = target.partition("#")
            resolved = (source.parent / file).resolve() if file else source
            if not resolved.exists():
                broken.append(f"{source.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{source.relative_to(ROOT)}: {target} (no such heading)")
        for included in re.findall(r'^--8<-- "([^"]+)"', raw, re.M):
            if not (ROOT / included).is_file():
                broken.append(f"{source.relative_to(ROOT)}: includes {included} (no such file)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_shows_mcp_json_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"```json\n(.*?)```", readme, re.DOTALL)
    assert shown, "README.md shows no mcp.json"
    assert json.loads(shown.group(1)) == json.loads((ROOT / "mcp.json").read_text(encoding="utf-8"))


def test_the_address_the_readme_and_getting_started_give_is_where_serve_listens_by_default() -> None:
    serve = build_parser().parse_args(["serve"])
    for page in ("README.md", "docs/getting-started.md"):
        addresses = set(re.findall(r"http://([\w.]+):(\d+)/mcp", (ROOT / page).read_text()))
        assert addresses == {(serve.host, str(serve.port))}, (page, addresses)


def test_every_module_has_a_room_in_the_architecture_page() -> None:
    """The rooms table names every module and sub-package of the four packages (``slack_*`` may name several)."""
    rooms = read("architecture.md").split("## Rooms", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w*]+/?)`", rooms))
    missing = [
        f"{package}/{name}"
        for package in ("server", "tools", "notifiers", "storage")
        for path in (ROOT / package).iterdir()
        if (name := f"{path.name}/" if (path / "__init__.py").is_file() else path.stem) != "__init__"
        and (path.suffix == ".py" or name.endswith("/"))
        and not any(fnmatch.fnmatch(name, pattern) for pattern in named)
    ]
    assert not missing, "docs/architecture.md's rooms table does not name: " + ", ".join(sorted(missing))


def test_the_layer_picture_draws_the_layers_import_linter_enforces() -> None:
    """The picture in docs/architecture.md: each layer of pyproject's import-linter contract on its own row, top to
    bottom, and nothing else on those rows (import-linter checks the code; this checks the picture against it)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    drawn = read("architecture.md").split("## Layers", 1)[1].split("```")[1]
    rows = [set(re.findall(r"\b(server|tools|notifiers|storage)\b", line)) for line in drawn.splitlines()]
    rows = [row for row in rows if row]
    expected = [{name.strip().removeprefix("signoff.") for name in layer.split("|")} for layer in layers]
    assert rows == expected, f"the picture shows {rows}, the contract says {expected}"
