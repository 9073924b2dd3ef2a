"""The `signoff` command: run the server, review requests, read the history, verify the audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signoff.server import alerts_cli, audit_cli, outbox_cli, policy_cli, render, tracing
from signoff.server.config import Settings, package_version, receipt_key
from signoff.server.policy_source import load_policy, trusted_data
from signoff.server.stores import database_name, open_alert_store, open_model_store, open_store
from signoff.storage import (
    ApprovalRequest,
    ConfigError,
    InvalidInput,
    ModelStore,
    NotFound,
    Order,
    RequestQuery,
    SignoffError,
    Status,
    Store,
    Verdict,
)
from signoff.storage.alerts import Alerts
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.pg_url import is_postgres_url
from signoff.storage.sqlite_db import open_read_only
from signoff.storage.text import InertFormatter, visible
from signoff.tools.access import Role
from signoff.tools.approvals import lifecycle
from signoff.tools.approvals.policy_config import PolicyConfig, load_policy_config
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.approvals.views import ApprovalStatus, decode_cursor, encode_cursor

logger = logging.getLogger("signoff")

EXAMPLES = {
    "serve": "examples:\n  signoff serve                      # stdio, what mcp.json runs\n"
    "  signoff serve --transport http --port 8765\n"
    "  signoff serve --transport http --stateless   # one of several replicas behind a proxy",
    "init": "example:\n  signoff init --db ~/signoff/approvals.db",
    "db upgrade": "examples:\n  signoff db upgrade --db /var/lib/signoff/signoff.db\n"
    "  SIGNOFF_DB=postgresql://signoff@db.internal/signoff signoff db upgrade",
    "db copy": "example:\n  signoff db copy --from /var/lib/signoff/signoff.db"
    " --to postgresql://signoff@db.internal/signoff",
    "console": "examples:\n  signoff console                    # on loopback: prints a one-time sign-in link\n"
    "  signoff console --port 8800 --as alice",
    "review list": "example:\n  signoff review list",
    "review show": "example:\n  signoff review show req_abc123   # the whole id, or a unique start of it",
    "review approve": "example:\n  signoff review approve req_abc123 --as alice --comment 'checked the invoice'",
    "review reject": "example:\n  signoff review reject req_abc123 --as alice --comment 'wrong account'",
    "review claim": "example:\n  signoff review claim req_abc123 --as alice   # everyone sees: alice is reviewing",
    "review release": "example:\n  signoff review release req_abc123 --as alice",
    "history": "examples:\n  signoff history --status approved --since 2026-01-01\n"
    "  signoff history --agent billing-bot --format csv > decisions.csv\n"
    "  signoff history --action payments.transfer --json",
    "audit verify": "example:\n  signoff audit verify",
    "stats": "examples:\n  signoff stats\n  signoff stats --json --db /var/lib/signoff/signoff.db",
    "alerts": "examples:\n  signoff alerts\n  signoff alerts --json --limit 200",
    "export training-data": "examples:\n  signoff export training-data --since 2026-11-01 > decisions.jsonl\n"
    "  signoff export training-data --model fraud-scorer@2.1 --format csv --output fraud.csv",
    "report": "examples:\n  signoff report --since 2026-10-01 --until 2027-01-01 --output q4.html\n"
    "  signoff report --format json",
    "token new": "example:\n  signoff token new --identity billing-bot --role agent",
    "outbox list": "example:\n  signoff outbox list",
    "outbox retry": "examples:\n  signoff outbox retry 42\n  signoff outbox retry --all-dead",
    "fairness": "examples:\n  signoff fairness --config signoff.toml\n  signoff fairness --json",
    "policy check": "example:\n  signoff policy check signoff.toml",
    "policy test": "examples:\n  signoff policy test signoff.toml               # cases in signoff.cases.toml\n"
    "  signoff policy test signoff.toml more-cases.toml",
    "policy replay": "examples:\n  signoff policy replay new.toml --since 30d\n  signoff policy replay new.toml --json",
    "slack check": "example:\n  SIGNOFF_SLACK_BOT_TOKEN=xoxb-… SIGNOFF_SLACK_APP_TOKEN=xapp-… signoff slack check",
    "slack manifest": "examples:\n  signoff slack manifest                 # Socket Mode: no public URL needed\n"
    "  signoff slack manifest --request-url https://signoff.example.com/slack/interactions",
}


#: The options each command reads; a command is given only these (``signoff token new`` has no ``--db``).
DB, CONFIG = "db", "config"

DB_HELP = "SQLite database file, or a postgresql:// URL (default: SIGNOFF_DB, else signoff.db in the user data dir)"
CONFIG_HELP = "policy TOML file (default: SIGNOFF_CONFIG; none = defaults)"
ID_HELP = "the request id, or a unique start of it (req_ and at least 6 more characters)"
FORMATS = ("table", "csv", "jsonl", "json")

#: The commands that read the database and never write it: they open it read-only (``mode=ro``), so a reviewer or
#: an auditor without write access can run them, beside a running server.
READ_ONLY = {
    ("review", "list"),
    ("review", "show"),
    ("history",),
    ("stats",),
    ("audit", "verify"),
    ("outbox", "list"),
    ("alerts",),
    ("export", "training-data"),
    ("report",),
    ("policy", "replay"),
    ("fairness",),
}
MIN_PREFIX = 6  #: characters after ``req_`` that a prefix of a request id needs


def build_parser() -> argparse.ArgumentParser:
    def options(*names: str) -> list[argparse.ArgumentParser]:
        """Parent parsers for ``--db`` and ``--config``. Their default is SUPPRESS, so a value given before the
        command (``signoff --db X review list``) is not overwritten by the subcommand's default."""
        parent = argparse.ArgumentParser(add_help=False)
        if DB in names:
            parent.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)
        if CONFIG in names:
            parent.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
        return [parent]

    def sub(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        key: str,
        text: str,
        *uses: str,
    ) -> argparse.ArgumentParser:
        command = group.add_parser(
            name,
            parents=options(*uses),
            help=text,
            description=text,
            epilog=EXAMPLES[key],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(command_path=tuple(key.split()), uses=frozenset(uses))
        return command

    def group(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str, example: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        """A command with actions (``signoff review …``): its help, an example, and its subcommands."""
        command = parent.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return command.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    parser = argparse.ArgumentParser(
        prog="signoff",
        description="Human approval for AI agents, as an MCP server. "
        "--db and --config go before or after the command, for the commands that use them.",
        epilog="example:\n  signoff serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=options(DB, CONFIG),
    )
    parser.add_argument("--version", action="version", version=f"signoff {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub(commands, "serve", "serve", "run the MCP server (stdio by default)", DB, CONFIG)
    serve.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio: one MCP client starts this process (what mcp.json runs); http: streamable HTTP at /mcp for any"
        " number of clients (default stdio)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="one more Host header to accept (repeat it); always accepted: the loopback names, and beyond loopback"
        " the bind address and this machine's host name, with the port",
    )
    serve.add_argument(
        "--stateless",
        action="store_true",
        default=None,
        help="HTTP: keep no MCP session in this process, so any replica behind a round-robin proxy answers any call"
        " (default: SIGNOFF_HTTP_STATELESS, else off)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve HTTP beyond loopback without [[auth.tokens]]: anyone who reaches the port can call the tools",
    )
    sub(commands, "init", "init", "create the database (or bring its schema up to date) and print where it is", DB)

    databases = group(commands, "db", "apply the database's migrations (SQLite or PostgreSQL)", "signoff db upgrade")
    sub(databases, "upgrade", "db upgrade", "apply the migrations this signoff knows, and print the versions", DB)
    copying = sub(
        databases,
        "copy",
        "db copy",
        "move a SQLite installation into an empty PostgreSQL database, in one transaction, then verify its audit log",
    )
    copying.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite database file")
    copying.add_argument(
        "--to", dest="target", type=_postgres_url, required=True, help="the PostgreSQL database's postgresql:// URL"
    )

    console = sub(
        commands, "console", "console", "serve the reviewers' web console alone, over the same database", DB, CONFIG
    )
    console.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    console.add_argument("--port", type=int, default=8766, help="port (default 8766)")
    console.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="one more Host header to accept (repeat it), e.g. the name a proxy gives the console; always accepted:"
        " the loopback names, and beyond loopback the bind address and this machine's host name, with the port",
    )
    console.add_argument(
        "--as", dest="reviewer", metavar="NAME", help="without reviewer tokens: your name on votes (default: OS user)"
    )

    actions = group(commands, "review", "list and decide pending requests", "signoff review list")
    listing = sub(
        actions, "list", "review list", "list pending requests: most urgent first, then nearest deadline", DB, CONFIG
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = sub(actions, "show", "review show", "show one request: payload, why it was asked, votes, events", DB, CONFIG)
    show.add_argument("request_id", help=ID_HELP)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--reveal", action="store_true", help="show the payload fields the policy's [redact] masks")
    for verdict in Verdict:
        decide = sub(
            actions, verdict.value, f"review {verdict.value}", f"{verdict.value} a pending request", DB, CONFIG
        )
        decide.add_argument("request_id", help=ID_HELP)
        decide.add_argument("--as", dest="reviewer", required=True, help="your name, as recorded in the audit log")
        decide.add_argument(
            "--comment",
            required=verdict is Verdict.REJECT,
            help="the reason (required to reject; the agent sees it)",
        )
    for name, text in (
        ("claim", "say you are reviewing a pending request (it lapses after SIGNOFF_CLAIM_MINUTES); blocks no vote"),
        ("release", "let go of your claim on a pending request"),
    ):
        claiming = sub(actions, name, f"review {name}", text, DB, CONFIG)
        claiming.add_argument("request_id", help=ID_HELP)
        claiming.add_argument("--as", dest="reviewer", required=True, help="your name, as recorded in the audit log")

    history = sub(commands, "history", "history", "print the approval history, newest first", DB, CONFIG)
    history.add_argument("--status", choices=[s.value for s in Status])
    history.add_argument("--action", help="exact action name")
    history.add_argument("--agent", help="exact agent_id")
    history.add_argument("--since", type=_parse_time, help="created at or after: ISO date or time (UTC if no zone)")
    history.add_argument("--until", type=_parse_time, help="created before: ISO date or time (UTC if no zone)")
    history.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    history.add_argument(
        "--cursor", help="continue after the previous page: the cursor it printed (repeat the same filters)"
    )
    history.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default); csv, jsonl or json: one record per request with payload, votes and receipt",
    )
    history.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")

    stats = sub(commands, "stats", "stats", "print the numbers GET /metrics serves, read from the database", DB, CONFIG)
    stats.add_argument("--json", action="store_true", help="print JSON: every sample's name, labels and value")

    alerts = sub(commands, "alerts", "alerts", "list the alerts firing now and the recent ones", DB, CONFIG)
    alerts.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    alerts.add_argument("--json", action="store_true", help="print JSON")

    export_actions = group(
        commands, "export", "export people's decisions", "signoff export training-data > decisions.jsonl"
    )
    training = sub(
        export_actions,
        "training-data",
        "export training-data",
        "one record per request people decided: payload, model, confidence, triggers, verdict, reviewers, comments",
        DB,
        CONFIG,
    )
    training.add_argument("--since", type=_parse_time, help="made at or after: ISO date or time (UTC if no zone)")
    training.add_argument("--until", type=_parse_time, help="made before: ISO date or time (UTC if no zone)")
    training.add_argument("--action", help="only this action")
    training.add_argument("--model", help="only requests naming this model (NAME or NAME@VERSION)")
    training.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="jsonl (default) or csv")
    training.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    training.add_argument("--model-path", default="model", help="the payload field naming the model (default model)")
    training.add_argument(
        "--version-path", default="model_version", help="the payload field naming its version (default model_version)"
    )

    report = sub(
        commands, "report", "report", "an audit report for a period: outcomes, times, reviewers, alerts", DB, CONFIG
    )
    report.add_argument(
        "--since", type=_parse_time, help="requests made at or after: ISO date or time (UTC if no zone)"
    )
    report.add_argument("--until", type=_parse_time, help="requests made before: ISO date or time (UTC if no zone)")
    report.add_argument("--format", choices=("html", "md", "json"), default="html", help="html (default), md or json")
    report.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    report.add_argument("--sla-minutes", type=float, default=60.0, help="people's decisions slower than this breach")

    audit_actions = group(commands, "audit", "check the tamper-evident audit log", "signoff audit verify")
    verify = sub(
        audit_actions,
        "verify",
        "audit verify",
        "verify the audit log and the rows it explains; exit 1 at the first bad one",
        DB,
    )
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=_anchor,
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify and kept elsewhere: catches a log rewritten since",
    )
    token_actions = group(
        commands,
        "token",
        "make bearer tokens for the HTTP transport",
        "signoff token new --identity billing-bot --role agent",
    )
    new = sub(token_actions, "new", "token new", "print a new token and the lines to add to the config file")
    new.add_argument("--identity", required=True, help="who the token acts as: an agent_id, or a reviewer's name")
    new.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="agent, reviewer, models or metrics"
    )
    outbox_actions = group(
        commands, "outbox", "see and re-queue notifications that wait or failed for good", "signoff outbox list"
    )
    sub(outbox_actions, "list", "outbox list", "list notifications still waiting for a notifier, and dead ones", DB)
    retry = sub(outbox_actions, "retry", "outbox retry", "queue dead notifications again, after fixing the cause", DB)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=_positive, help="the outbox row's ID, as `signoff outbox list` shows")
    which.add_argument("--all-dead", action="store_true", help="every dead notification")
    fairness = sub(
        commands,
        "fairness",
        "fairness",
        "print each watched group's outcome rate against the rest, and flags",
        DB,
        CONFIG,
    )
    fairness.add_argument("--json", action="store_true", help="print JSON")
    policy_actions = group(
        commands,
        "policy",
        "check, test and replay a policy file before trusting it",
        "signoff policy check signoff.toml",
    )
    policy_check = sub(policy_actions, "check", "policy check", "validate a policy file: one line per fault, exit 1")
    policy_check.add_argument("file", type=Path, help="the policy TOML file")
    policy_test = sub(
        policy_actions, "test", "policy test", "run a policy's test cases; exit 1 naming each case that fails"
    )
    policy_test.add_argument("file", type=Path, help="the policy TOML file")
    policy_test.add_argument("cases", type=Path, nargs="?", help="the cases file (default: FILE's name + .cases.toml)")
    policy_replay = sub(
        policy_actions, "replay", "policy replay", "what a policy would have decided differently on the history", DB
    )
    policy_replay.add_argument("file", type=Path, help="the candidate policy TOML file")
    policy_replay.add_argument(
        "--since", type=policy_cli.since, help="only requests created since: 30d, 12h, 90m or an ISO date or time"
    )
    policy_replay.add_argument("--json", action="store_true", help="print JSON")
    slack_actions = group(commands, "slack", "set up Slack reviewers", "signoff slack manifest")
    sub(
        slack_actions,
        "check",
        "slack check",
        "check the Slack tokens, channels and approvers; say what is missing",
        CONFIG,
    )
    manifest = sub(
        slack_actions, "manifest", "slack manifest", "print the Slack app manifest to paste at api.slack.com"
    )
    manifest.add_argument("--request-url", help="use HTTP interactivity at this URL instead of Socket Mode")
    return parser


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # "²".isdigit() too
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _postgres_url(text: str) -> str:
    if not is_postgres_url(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a postgresql:// URL (the database to copy into)")
    return text


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not (seq.isascii() and seq.isdigit() and len(digest) == 64):
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH as `signoff audit verify` prints it")
    return int(seq), digest


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time, e.g. 2026-01-31T09:00") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range in UTC; give a time between years 1 and 9999"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in (DB, CONFIG):  # given before the command, to a command that does not read it
        if getattr(args, option, None) is not None and option not in args.uses:
            parser.error(f"signoff {' '.join(args.command_path)} does not use --{option}")
    try:
        try:
            code = _run(args)
            sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
            return code
        except BrokenPipeError:  # `signoff audit verify | head -1`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # as a shell reports a command that SIGPIPE ended
    except SignoffError as exc:
        print(f"error: {visible(exc.message)}", file=sys.stderr)  # a message may quote what an agent wrote
        return 1
    except (OSError, sqlite3.Error) as exc:  # what storage did not turn into a SignoffError: still one line
        print(f"error: {visible(_describe(exc, args))}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(db=getattr(args, DB, None), config_path=getattr(args, CONFIG, None))
    configure_logging(settings.log_level)
    tracing.configure(os.environ)  # OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set (signoff[otel])
    if args.command == "db":
        from signoff.server import db_cli

        if args.db_command == "copy":
            return asyncio.run(db_cli.copy(args.source, args.target, settings))
        return asyncio.run(db_cli.upgrade(settings))
    if args.command == "serve":
        return serve(settings, args)
    if args.command == "console":
        from signoff.server.console.standalone import run

        if settings.db_url is None:  # on PostgreSQL the database's own grants decide
            database = _database(settings, args)  # the console decides: a database that exists, and write access
            database.must_exist()
            database.must_be_writable()
        asyncio.run(_open_database(settings))  # damaged, or a newer schema: one line here, not inside uvicorn
        return run(settings, host=args.host, port=args.port, as_name=args.reviewer, extra_hosts=args.allowed_host)
    if args.command == "token":
        return _new_token(args.identity, args.role)
    if args.command == "slack":
        return asyncio.run(_slack(settings, args))
    if args.command == "policy" and args.policy_command in ("check", "test"):
        return policy_cli.check(args) if args.policy_command == "check" else policy_cli.test(args)
    if args.command == "init":
        return asyncio.run(_init(settings, _database(settings, args)))
    return asyncio.run(_offline(settings, args))


def _describe(exc: OSError | sqlite3.Error, args: argparse.Namespace) -> str:
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    database = Settings.from_env(db=getattr(args, DB, None)).db_path if DB in args.uses else None
    text = str(exc) or type(exc).__name__
    if "readonly" in text or "read-only" in text:
        return (
            f"cannot write to the database {database}: {text}; this command needs write access to the file and its"
            " folder (review list, review show, history, stats, audit verify, outbox list and alerts only read it)"
        )
    return f"the database {database} could not be used: {text}" if database else text


@dataclass(frozen=True, slots=True)
class Database:
    """The database file a command uses, and how it was chosen (named in every error about it)."""

    path: Path
    source: str

    def __str__(self) -> str:
        return str(self.path)

    def must_exist(self) -> None:
        """Only ``serve`` and ``init`` create a database: elsewhere a mistyped path is an error, not a new file."""
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(
                f"no database at {self.path} ({self.source}); check the path, or create it with"
                f" `signoff init --db {self.path}`"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot reach the database {self.path} ({self.source}): {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise ConfigError(
                f"{self.path} ({self.source}) is a directory; give the database file in it, e.g."
                f" {self.path / 'signoff.db'}"
            )
        if not os.access(self.path, os.R_OK):
            raise ConfigError(f"cannot read the database {self.path} ({self.source}): permission denied")

    def must_be_writable(self) -> None:
        if not os.access(self.path, os.W_OK):
            raise ConfigError(
                f"cannot write to the database {self.path} ({self.source}): permission denied; deciding"
                " needs write access to it (review list, review show, history, stats, audit verify, outbox list and"
                " alerts only read it)"
            )


def _database(settings: Settings, args: argparse.Namespace) -> Database:
    if getattr(args, DB, None) is not None:
        return Database(settings.db_path, "from --db")
    if os.environ.get("SIGNOFF_DB"):
        return Database(settings.db_path, "from SIGNOFF_DB")
    return Database(settings.db_path, "the default in the user data dir; choose one with --db or SIGNOFF_DB")


def configure_logging(level: str | int) -> None:
    """Log to stderr, one record per line: the message and its arguments show control characters as escapes, so a
    summary with a newline or an escape sequence cannot forge a log line or rewrite the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def serve(settings: Settings, args: argparse.Namespace) -> int:
    # imported here: the other commands start faster without mcp
    import anyio

    from signoff.server.app import build_server, serve_http
    from signoff.server.auth import LOOPBACK_HOSTS
    from signoff.server.http_guard import allowed_hosts
    from signoff.server.stopping import Stopper, serve_stdio

    stopper = Stopper()  # SIGINT and SIGTERM: answer every waiting call, stop within seconds, exit 0

    if args.transport == "stdio":
        if args.stateless:
            raise ConfigError("--stateless is for --transport http (stdio has one client per process anyway)")
        server = build_server(settings, stopper=stopper)
        asyncio.run(_open_database(settings))  # a bad path stops here with one line, not inside the transport
        logger.info("signoff %s serving on stdio, database %s", package_version(), database_name(settings))
        anyio.run(serve_stdio, server, stopper)  # server.run(), stoppable, each line checked for repeated keys
        return 0
    host, port = args.host, args.port
    authenticated = bool(load_policy(settings).config.auth.tokens)
    loopback = host in LOOPBACK_HOSTS
    if not (loopback or authenticated or args.allow_unauthenticated):
        raise ConfigError(
            f"refusing to serve on {host} without authentication: add [[auth.tokens]] to the config file "
            "(signoff token new), bind to 127.0.0.1, or pass --allow-unauthenticated"
        )
    if not (loopback or authenticated):
        logger.warning(
            "SERVING ON %s WITHOUT AUTHENTICATION: anyone who reaches port %d can call the tools", host, port
        )
    if args.stateless:
        settings = replace(settings, http_stateless=True)
    url_host = f"[{host}]" if ":" in host else host
    server = build_server(settings, http_url=f"http://{url_host}:{port}", stopper=stopper)
    asyncio.run(_open_database(settings))
    security = allowed_hosts(host, port, args.allowed_host or ())  # checked on every route, /mcp included
    logger.info(
        "signoff %s serving on http://%s:%d/mcp%s, database %s",
        package_version(),
        url_host,
        port,
        " (stateless)" if settings.http_stateless else "",
        database_name(settings),
    )
    serve_http(server, settings, host=host, port=port, security=security, stopper=stopper)
    return 0


def _new_token(identity: str, role: str) -> int:
    from signoff.server.auth import new_token

    token, digest = new_token()
    print(f"token (give it to {identity}; it is shown once): {token}")
    print("add to the config file:")
    print(f'[[auth.tokens]]\nidentity = "{identity}"\nrole = "{role}"\nsha256 = "{digest}"')
    return 0


async def _open_database(settings: Settings) -> None:
    store = await open_store(settings)
    await store.close()


async def _init(settings: Settings, database: Database) -> int:
    from signoff.server.db_cli import schema_version
    from signoff.storage.migrations import available

    if settings.db_url is not None:  # PostgreSQL: the database exists already; create (or migrate) the schema in it
        before = await schema_version(settings)
        await _open_database(settings)
        done = "up to date" if before else "created"
        version = max(m.version for m in available())
        print(f"database {done}: {database_name(settings)} ({database.source}), schema version {version}")
        return 0
    existed = os.path.exists(database.path)  # False also where the folder cannot be read: open says why
    store = await SqliteStore.open(database.path)
    await store.close()
    version = max(m.version for m in available())
    done = "up to date" if existed else "created"
    print(f"database {done}: {database.path} ({database.source}), schema version {version}")
    return 0


async def _offline(settings: Settings, args: argparse.Namespace) -> int:
    """Commands that work on the database directly, alongside any running server."""
    # the server's policy: its [[people]] and approvers decide who may vote here as everywhere
    policy = load_policy(settings)
    database = _database(settings, args)
    if settings.db_url is not None:  # PostgreSQL: the database's own grants decide who may read or write
        store: Store = await open_store(settings)
    elif args.command_path in READ_ONLY:
        database.must_exist()
        store = await SqliteStore.open_read_only(database.path)
    else:
        database.must_exist()
        database.must_be_writable()
        store = await SqliteStore.open(database.path)
    try:
        service = ApprovalService(
            store, policy, claim_seconds=settings.claim_minutes * 60, trusted=trusted_data(settings)
        )
        return await _HANDLERS[args.command_path](service, _Context(args, settings, database))
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class _Context:
    args: argparse.Namespace
    settings: Settings
    database: Database


async def resolve_id(store: Store, text: str) -> str:
    """The request id ``text`` names: the whole id, or a unique start of it (``req_`` and at least
    ``MIN_PREFIX`` more characters). The errors name CLI commands, not the MCP tools agents use."""
    if await store.get(text) is not None:
        return text
    if not text.startswith("req_") or len(text) < len("req_") + MIN_PREFIX:
        raise NotFound(
            f"no request with id {text!r}; give the whole id or its start (req_ and at least {MIN_PREFIX} more"
            " characters), as `signoff review list` or `signoff history` show it"
        )
    found = await store.ids_with_prefix(text, limit=11)
    if not found:
        raise NotFound(
            f"no request with an id starting {text!r}; `signoff review list` shows the pending requests,"
            " `signoff history` every request"
        )
    if len(found) > 1:
        more = " and more" if len(found) > 10 else ""
        raise InvalidInput(
            f"{text!r} is the start of {len(found) if not more else 'over 10'} request ids: "
            f"{', '.join(found[:10])}{more}; give more characters"
        )
    return found[0]


async def _review_list(service: ApprovalService, context: _Context) -> int:
    pending: list[ApprovalRequest] = []
    cursor = None
    while True:  # every pending request, most urgent first, then the nearest deadline
        query = RequestQuery(status=Status.PENDING, order=Order.PRIORITY, limit=500, before=cursor)
        page = await service.list_requests(query)
        pending += page.items
        if (cursor := page.next_cursor) is None:
            break
    now, ttl = service.clock.now(), service.receipt_ttl_seconds
    shown = [service.policy.config.redact.redaction.request(r) for r in pending] if context.args.json else pending
    print(render.as_json(shown, now=now, receipt_ttl_seconds=ttl) if context.args.json else render.queue(pending))
    return 0


async def _review_show(service: ApprovalService, context: _Context) -> int:
    # the store, not service.get: that expires an overdue request, a write this read-only command cannot make
    found = await service.store.get(await resolve_id(service.store, context.args.request_id))
    assert found is not None
    request = found if context.args.reveal else service.policy.config.redact.redaction.request(found)
    now, ttl = service.clock.now(), service.receipt_ttl_seconds
    if context.args.json:
        print(render.as_json([request], now=now, receipt_ttl_seconds=ttl))
    else:
        overdue = lifecycle.is_overdue(request, now)
        events = await service.store.request_events(request.id)
        print(render.detail(request, events, overdue=overdue, now=now, receipt_ttl_seconds=ttl))
    return 0


def _decide(verdict: Verdict) -> Callable[[ApprovalService, _Context], Awaitable[int]]:
    async def run(service: ApprovalService, context: _Context) -> int:
        args = context.args
        request_id = await resolve_id(service.store, args.request_id)
        request = await service.vote(request_id, args.reviewer, verdict, args.comment)
        if request.status is Status.PENDING:
            print(
                f"{visible(args.reviewer)} voted {verdict.value} on {request.id}: "
                f"{len(request.approvals)} of {request.approvals_required} approvals, still pending"
            )
        else:
            print(f"{request.id} is now {request.status.value} ({visible(args.reviewer)} voted {verdict.value})")
        return 0

    return run


async def _claim(service: ApprovalService, context: _Context) -> int:
    args = context.args
    request_id = await resolve_id(service.store, args.request_id)
    request = await service.claim(request_id, args.reviewer)
    until = request.claim_until.isoformat() if request.claim_until else "?"
    print(f"{visible(args.reviewer)} is reviewing {request.id} until {until}; anyone who may vote still can")
    return 0


async def _release(service: ApprovalService, context: _Context) -> int:
    args = context.args
    request = await service.release(await resolve_id(service.store, args.request_id), args.reviewer)
    print(f"{visible(args.reviewer)} released {request.id}: nobody is reviewing it now")
    return 0


async def _history(service: ApprovalService, context: _Context) -> int:
    args = context.args
    query = RequestQuery(
        status=Status(args.status) if args.status else None,
        action=args.action,
        agent_id=args.agent,
        since=args.since,
        until=args.until,
        limit=args.limit,
        before=decode_cursor(args.cursor) if args.cursor else None,
    )
    page = await service.list_requests(query)
    if args.format == "table":
        print(render.table(page.items))
    else:
        records = await _history_records(service, context, page.items)
        if args.format == "json":
            print(json.dumps(records, indent=2))
        else:
            sys.stdout.write(render.as_csv(records) if args.format == "csv" else render.as_jsonl(records))
    if page.next_cursor is not None:
        print(
            f"more requests: repeat the command with --cursor {encode_cursor(page.next_cursor)}",
            file=sys.stderr,
        )
    return 0


async def _history_records(
    service: ApprovalService, context: _Context, requests: Sequence[ApprovalRequest]
) -> list[dict[str, Any]]:
    """Each request as the history exports it, approved ones with the receipt the server would give the agent."""
    key = _receipt_key(context.settings)
    if key is None and any(r.status is Status.APPROVED for r in requests):
        missing = (
            f"no SIGNOFF_RECEIPT_KEY and no readable key file beside {context.database.path}"
            if context.settings.db_url is None
            else "no SIGNOFF_RECEIPT_KEY (on PostgreSQL, set it to the servers' key)"
        )
        print(f"note: approved requests are listed without receipts: {missing}", file=sys.stderr)
    redaction = service.policy.config.redact.redaction  # [redact]: masked in the export, not in what receipts bind
    if key is None:
        now, ttl = service.clock.now(), service.receipt_ttl_seconds
        return [
            render.history_record(r, ApprovalStatus.of(r, now=now, receipt_ttl_seconds=ttl), redaction)
            for r in requests
        ]
    from signoff.tools.app_state import AppState  # loads mcp: only for the records that carry receipts

    state = AppState(service=service, receipt_key=key)
    return [render.history_record(r, await state.status(r, strict=False), redaction) for r in requests]


def _receipt_key(settings: Settings) -> bytes | None:
    """The key the server signs receipts with, if this user can read it; never a new one (history only reads)."""
    if settings.receipt_key:
        return receipt_key(settings)
    path = settings.db_path.with_name(settings.db_path.name + ".receipt-key")
    return receipt_key(settings) if os.access(path, os.R_OK) else None


async def _stats(service: ApprovalService, context: _Context) -> int:
    from signoff.server.metrics import read_snapshot, samples, table

    models = await _models(context)
    try:
        snapshot = await read_snapshot(service.store, models, service.clock.now())
    finally:
        await models.close()
    print(json.dumps({"metrics": samples(snapshot)}, indent=2) if context.args.json else table(snapshot))
    return 0


async def _audit_verify(service: ApprovalService, context: _Context) -> int:
    models, alerts = await _models(context), await _alerts(context)
    return await audit_cli.verify(service.store, models, alerts, dict(context.args.anchor))


async def _export_training_data(service: ApprovalService, context: _Context) -> int:
    from signoff.server import export

    args = context.args
    requests = await export.decided_by_people(service.store, since=args.since, until=args.until, action=args.action)
    redaction = service.policy.config.redact.redaction  # [redact]: masked in the export
    records = [
        export.record(redaction.request(r), model_path=args.model_path, version_path=args.version_path)
        for r in requests
    ]
    records = export.select_model(records, args.model)
    text = export.as_csv(records) if args.format == "csv" else export.as_jsonl(records)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    print(f"exported {len(records)} request(s) decided by people", file=sys.stderr)
    return 0


async def _report(service: ApprovalService, context: _Context) -> int:
    from signoff.server import report
    from signoff.storage.audit import verify_store

    args = context.args
    models = await _models(context)
    try:
        audit = await verify_store(service.store, {}, models=models)
    finally:
        await models.close()
    alerts = await _alerts(context)
    try:
        episodes = await alerts.episodes(limit=10_000)
    finally:
        await alerts.close()
    requests = await report.requests_in(service.store, args.since, args.until)
    numbers = report.build(
        requests,
        episodes,
        audit,
        since=args.since,
        until=args.until,
        now=service.clock.now(),
        sla_seconds=args.sla_minutes * 60,
    )
    render_as = {"html": report.as_html, "md": report.as_markdown, "json": report.as_json}
    text = render_as[args.format](numbers)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


async def _models(context: _Context) -> ModelStore:
    """The model store beside the approval store, for a command that only reads it (the SQLite file read-only)."""
    from signoff.storage.models.sqlite import SqliteModelStore

    settings = context.settings
    if settings.db_url is not None:
        return await open_model_store(settings.db_path, settings.db_url)
    return SqliteModelStore(await open_read_only(context.database.path), poll_interval=1.0, seed=None)


async def _alerts(context: _Context) -> Alerts:
    """The alerts' state beside the approval store, for a command that only reads it (the SQLite file read-only)."""
    from signoff.storage.alerts import AlertStore

    settings = context.settings
    if settings.db_url is not None:
        return await open_alert_store(settings.db_path, settings.db_url)
    return AlertStore(await open_read_only(context.database.path))


async def _alerts_list(service: ApprovalService, context: _Context) -> int:
    return await alerts_cli.alerts_list(await _alerts(context), context.args)


async def _slack(settings: Settings, args: argparse.Namespace) -> int:
    from signoff.notifiers import slack_setup, web_client

    if args.slack_command == "manifest":
        print(json.dumps(slack_setup.manifest(request_url=args.request_url), indent=2))
        return 0
    config = load_policy_config(settings.config_path) if settings.config_path else PolicyConfig()
    channels = [settings.slack_channel, config.slack.channel, *(rule.channel for rule in config.rules)]
    bot = web_client(settings.slack_bot_token, settings.slack_api_url) if settings.slack_bot_token else None
    findings = await slack_setup.check(
        bot,
        app_token=settings.slack_app_token,
        has_signing_secret=settings.slack_signing_secret is not None,
        channels=list(dict.fromkeys(c for c in channels if c)),
        approvers=tuple(
            dict.fromkeys([*config.slack.approvers, *(a for rule in config.rules for a in rule.approvers)])
        ),
    )
    for finding in findings:
        print(f"{'ok' if finding.ok else 'missing'}: {finding.message}")
    return 0 if all(f.ok for f in findings) else 1


_HANDLERS: dict[tuple[str, ...], Callable[[ApprovalService, _Context], Awaitable[int]]] = {
    ("review", "list"): _review_list,
    ("review", "show"): _review_show,
    ("review", "approve"): _decide(Verdict.APPROVE),
    ("review", "reject"): _decide(Verdict.REJECT),
    ("review", "claim"): _claim,
    ("review", "release"): _release,
    ("history",): _history,
    ("stats",): _stats,
    ("audit", "verify"): _audit_verify,
    ("outbox", "list"): lambda service, context: outbox_cli.outbox_list(service, context.args),
    ("outbox", "retry"): lambda service, context: outbox_cli.outbox_retry(service, context.args),
    ("alerts",): _alerts_list,
    ("export", "training-data"): _export_training_data,
    ("report",): _report,
    ("policy", "replay"): lambda service, context: policy_cli.replay_command(service, context.args),
    ("fairness",): lambda service, context: policy_cli.fairness_command(service, context.args),
}


if __name__ == "__main__":
    sys.exit(main())
