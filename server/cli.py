"""The `signoff` command: run the server, review requests, read the history, verify the audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from signoff.server import render
from signoff.server.config import Settings, package_version
from signoff.storage import ApprovalRequest, ConfigError, RequestQuery, SignoffError, Status, Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.storage.text import InertFormatter, visible
from signoff.tools.access import Role
from signoff.tools.approvals.policy import Policy
from signoff.tools.approvals.policy_config import PolicyConfig, load_policy_config
from signoff.tools.approvals.service import ApprovalService

logger = logging.getLogger("signoff")

EXAMPLES = {
    "serve": "examples:\n  signoff serve                      # stdio, what mcp.json runs\n"
    "  signoff serve --transport http --port 8765",
    "console": "examples:\n  signoff console                    # on loopback: prints a one-time sign-in link\n"
    "  signoff console --port 8800 --as alice",
    "review list": "example:\n  signoff review list",
    "review show": "example:\n  signoff review show req_abc123",
    "review approve": "example:\n  signoff review approve req_abc123 --as alice --comment 'checked the invoice'",
    "review reject": "example:\n  signoff review reject req_abc123 --as alice --comment 'wrong account'",
    "history": "examples:\n  signoff history --status approved --since 2026-01-01\n"
    "  signoff history --action payments.transfer --json",
    "audit verify": "example:\n  signoff audit verify",
    "token new": "example:\n  signoff token new --identity billing-bot --role agent",
    "slack check": "example:\n  SIGNOFF_SLACK_BOT_TOKEN=xoxb-… SIGNOFF_SLACK_APP_TOKEN=xapp-… signoff slack check",
    "slack manifest": "examples:\n  signoff slack manifest                 # Socket Mode: no public URL needed\n"
    "  signoff slack manifest --request-url https://signoff.example.com/slack/interactions",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=Path, help="SQLite database file (default: SIGNOFF_DB or the user data dir)")
    common.add_argument("--config", type=Path, help="policy TOML file (default: SIGNOFF_CONFIG; none = defaults)")

    def sub(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, key: str, text: str
    ) -> argparse.ArgumentParser:
        return group.add_parser(
            name,
            parents=[common],
            help=text,
            description=text,
            epilog=EXAMPLES[key],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

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
        description="Human approval for AI agents, as an MCP server.",
        epilog="example:\n  signoff serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"signoff {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub(commands, "serve", "serve", "run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a Host header to accept when binding beyond loopback (repeat; default: the bind address)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve HTTP beyond loopback without [[auth.tokens]]: anyone who reaches the port can call the tools",
    )

    console = sub(commands, "console", "console", "serve the reviewers' web console alone, over the same database")
    console.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    console.add_argument("--port", type=int, default=8766, help="port (default 8766)")
    console.add_argument(
        "--as", dest="reviewer", metavar="NAME", help="without reviewer tokens: your name on votes (default: OS user)"
    )

    actions = group(commands, "review", "list and decide pending requests", "signoff review list")
    listing = sub(actions, "list", "review list", "list pending requests, oldest deadline first")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = sub(actions, "show", "review show", "show one request: payload, why it was asked, votes, events")
    show.add_argument("request_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    for verdict in Verdict:
        decide = sub(actions, verdict.value, f"review {verdict.value}", f"{verdict.value} a pending request")
        decide.add_argument("request_id")
        decide.add_argument("--as", dest="reviewer", required=True, help="your name, as recorded in the audit log")
        decide.add_argument(
            "--comment",
            required=verdict is Verdict.REJECT,
            help="the reason (required to reject; the agent sees it)",
        )

    history = sub(commands, "history", "history", "print the approval history, newest first")
    history.add_argument("--status", choices=[s.value for s in Status])
    history.add_argument("--action", help="exact action name")
    history.add_argument("--since", type=_parse_time, help="ISO date or time (UTC if no zone given)")
    history.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    history.add_argument("--json", action="store_true", help="print JSON")

    audit_actions = group(commands, "audit", "check the tamper-evident audit log", "signoff audit verify")
    verify = sub(
        audit_actions,
        "verify",
        "audit verify",
        "verify the audit log and the rows it explains; exit 1 at the first bad one",
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
    new.add_argument("--role", required=True, choices=[r.value for r in Role], help="agent, reviewer or models")
    slack_actions = group(commands, "slack", "set up Slack reviewers", "signoff slack manifest")
    sub(slack_actions, "check", "slack check", "check the Slack tokens, channels and approvers; say what is missing")
    manifest = sub(
        slack_actions, "manifest", "slack manifest", "print the Slack app manifest to paste at api.slack.com"
    )
    manifest.add_argument("--request-url", help="use HTTP interactivity at this URL instead of Socket Mode")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not (seq.isdigit() and len(digest) == 64):
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
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(db_path=args.db, config_path=args.config)
        configure_logging(settings.log_level)
        if args.command == "serve":
            return serve(settings, args)
        if args.command == "console":
            from signoff.server.console.standalone import run

            return run(settings, host=args.host, port=args.port, as_name=args.reviewer)
        if args.command == "token":
            return _new_token(args.identity, args.role)
        if args.command == "slack":
            return asyncio.run(_slack(settings, args))
        return asyncio.run(_offline(settings, args))
    except SignoffError as exc:
        print(f"error: {visible(exc.message)}", file=sys.stderr)  # a message may quote what an agent wrote
        return 1


def configure_logging(level: str | int) -> None:
    """Log to stderr, one record per line: the message and its arguments show control characters as escapes, so a
    summary with a newline or an escape sequence cannot forge a log line or rewrite the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def serve(settings: Settings, args: argparse.Namespace) -> int:
    # imported here: the other commands start faster without mcp
    from mcp.server.transport_security import TransportSecuritySettings
    from signoff.server.app import build_server, load_policy, serve_http
    from signoff.server.auth import LOOPBACK_HOSTS

    if args.transport == "stdio":
        server = build_server(settings)
        asyncio.run(_open_database(settings))  # a bad path stops here with one line, not inside the transport
        logger.info("signoff %s serving on stdio, database %s", package_version(), settings.db_path)
        server.run()
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
    url_host = f"[{host}]" if ":" in host else host
    server = build_server(settings, http_url=f"http://{url_host}:{port}")
    asyncio.run(_open_database(settings))
    security = None  # on loopback the SDK checks Host and Origin itself
    if not loopback:
        hosts = args.allowed_host or [f"{url_host}:{port}"]
        origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
        security = TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)
    logger.info(
        "signoff %s serving on http://%s:%d/mcp, database %s", package_version(), url_host, port, settings.db_path
    )
    serve_http(server, settings, host=host, port=port, security=security)
    return 0


def _new_token(identity: str, role: str) -> int:
    from signoff.server.auth import new_token

    token, digest = new_token()
    print(f"token (give it to {identity}; it is shown once): {token}")
    print("add to the config file:")
    print(f'[[auth.tokens]]\nidentity = "{identity}"\nrole = "{role}"\nsha256 = "{digest}"')
    return 0


async def _open_database(settings: Settings) -> None:
    store = await SqliteStore.open(settings.db_path)
    await store.close()


async def _offline(settings: Settings, args: argparse.Namespace) -> int:
    """Commands that work on the database directly, alongside any running server."""
    # the server's policy: its [[people]] and approvers decide who may vote here as everywhere
    policy = Policy(load_policy_config(settings.config_path)) if settings.config_path else Policy()
    store = await SqliteStore.open(settings.db_path)
    try:
        service = ApprovalService(store, policy)
        handler = _HANDLERS[
            (args.command, getattr(args, "review_command", None) or getattr(args, "audit_command", None))
        ]
        return await handler(service, args)
    finally:
        await store.close()


async def _review_list(service: ApprovalService, args: argparse.Namespace) -> int:
    pending: list[ApprovalRequest] = []
    cursor = None
    while True:  # every pending request: the oldest are the ones about to expire
        page = await service.list_requests(RequestQuery(status=Status.PENDING, limit=500, before=cursor))
        pending += page.items
        if (cursor := page.next_cursor) is None:
            break
    pending.sort(key=lambda r: r.expires_at)
    print(render.as_json(pending) if args.json else render.table(pending))
    return 0


async def _review_show(service: ApprovalService, args: argparse.Namespace) -> int:
    request = await service.get(args.request_id)
    if args.json:
        print(render.as_json([request]))
    else:
        print(render.detail(request, await service.store.request_events(request.id)))
    return 0


def _decide(verdict: Verdict) -> Callable[[ApprovalService, argparse.Namespace], Awaitable[int]]:
    async def run(service: ApprovalService, args: argparse.Namespace) -> int:
        request = await service.vote(args.request_id, args.reviewer, verdict, args.comment)
        if request.status is Status.PENDING:
            print(
                f"{visible(args.reviewer)} voted {verdict.value} on {request.id}: "
                f"{len(request.approvals)} of {request.approvals_required} approvals, still pending"
            )
        else:
            print(f"{request.id} is now {request.status.value} ({visible(args.reviewer)} voted {verdict.value})")
        return 0

    return run


async def _history(service: ApprovalService, args: argparse.Namespace) -> int:
    query = RequestQuery(
        status=Status(args.status) if args.status else None,
        action=args.action,
        since=args.since,
        limit=args.limit,
    )
    page = await service.list_requests(query)
    print(render.as_json(page.items) if args.json else render.table(page.items))
    return 0


async def _audit_verify(service: ApprovalService, args: argparse.Namespace) -> int:
    from signoff.storage.audit import verify_store
    from signoff.storage.models.sqlite import SqliteModelStore

    models = await SqliteModelStore.open(Settings.from_env(db_path=args.db, config_path=args.config).db_path)
    try:
        report = await verify_store(service.store, dict(args.anchor), models=models)
    finally:
        await models.close()
    if report.ok:
        print(f"ok: {report.events_checked} events verified, and every request, vote and model row matches its events")
        for column, rows in sorted(report.unchecked.items()):
            print(f"not checked: {column} of {rows} row(s), whose events were written before they recorded it")
        if report.model_baselines:
            seqs = ", ".join(f"#{seq}" for seq in report.model_baselines)
            print(f"not checked: the model plane before event {seqs}, taken as found when it entered the chain")
        print(f"head {report.head_seq}:{report.head_hash} (keep it elsewhere; pass it back with --anchor)")
        return 0
    if report.first_bad_seq is not None:
        where = f"event #{report.first_bad_seq}"
    else:
        where = report.row or f"request {report.request_id}"
        where += f", column {report.column}" if report.column else ""
    print(f"FAILED at {where}: {report.reason} ({report.events_checked} events verified)", file=sys.stderr)
    return 1


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


_HANDLERS: dict[tuple[str, str | None], Callable[[ApprovalService, argparse.Namespace], Awaitable[int]]] = {
    ("review", "list"): _review_list,
    ("review", "show"): _review_show,
    ("review", "approve"): _decide(Verdict.APPROVE),
    ("review", "reject"): _decide(Verdict.REJECT),
    ("history", None): _history,
    ("audit", "verify"): _audit_verify,
}


if __name__ == "__main__":
    sys.exit(main())
