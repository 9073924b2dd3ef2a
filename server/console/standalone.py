"""``signoff console``: the console alone, over the same database and policy file (built and reloaded as ``serve``
does: ``policy_source``), for people whose agents use stdio."""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette

from signoff.server import audit_check
from signoff.server.auth import LOOPBACK_HOSTS, ConfigTokenVerifier
from signoff.server.config import Settings, package_version
from signoff.server.console import routes
from signoff.server.console.core import Console
from signoff.server.console.sessions import SignInLinks
from signoff.server.policy_source import load_policy, reloader, trusted_data
from signoff.server.stores import database_name, open_model_store, open_store
from signoff.storage import ConfigError
from signoff.tools.approvals.service import ApprovalService
from signoff.tools.models.service import ModelService

logger = logging.getLogger(__name__)


def run(settings: Settings, *, host: str, port: int, as_name: str | None, extra_hosts: Sequence[str] = ()) -> int:
    """Serve the console until interrupted. With reviewer tokens in the config file, people sign in with them;
    without, on loopback only, one person signs in by a one-time link printed here, and votes as ``as_name`` (or
    the OS user). Requests naming another ``Host`` (or ``Origin``) than the bind address, this machine's name, the
    loopback names and ``extra_hosts`` are refused, as ``signoff serve`` refuses them (DNS rebinding)."""
    import uvicorn  # imported here: the other commands start faster without it

    from signoff.server.http_guard import HostOriginGuard, allowed_hosts, timed_protocol
    from signoff.server.stopping import Stopper, serve_uvicorn

    policy = load_policy(settings)  # as `signoff serve` loads it; reloaded below as serve reloads it
    tokens = policy.config.auth.tokens
    verifier = ConfigTokenVerifier(tokens) if tokens else None
    url_host = f"[{host}]" if ":" in host else host
    base = f"http://{url_host}:{port}"
    service: list[ApprovalService] = []
    models: list[ModelService] = []
    console = Console(
        service_of=lambda: service[0] if service else None,
        models_of=lambda: models[0] if models else None,
        check_chain=lambda service, models: audit_check.whole_chain(
            settings, service.store, models.store if models else None
        ),
        verifier=verifier,
        idle_minutes=settings.console_idle_minutes,
        announce_link=lambda path: _announce(f"{base}{path}"),
    )
    if console.reviewer_tokens:
        if as_name is not None:
            raise ConfigError("--as is for a console without reviewer tokens; sign in with your reviewer token")
    elif host in LOOPBACK_HOSTS:
        name = as_name if as_name is not None else getpass.getuser()
        if not name.strip():
            raise ConfigError("--as needs a name: the one your votes are recorded under")
        console.links = SignInLinks(identity=name.strip())
    else:
        raise ConfigError(
            f"refusing to serve the console on {host} without reviewer tokens: add [[auth.tokens]] with role "
            '"reviewer" to the config file (signoff token new --identity NAME --role reviewer), or bind to 127.0.0.1'
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings)  # the SQLite file, or PostgreSQL at SIGNOFF_DB's URL
        model_store = await open_model_store(settings.db_path, settings.db_url)
        try:
            approvals = ApprovalService(
                store, policy, claim_seconds=settings.claim_minutes * 60, trusted=trusted_data(settings)
            )
            service.append(approvals)
            models.append(ModelService(model_store, approvals, settings=settings.models))
            async with anyio.create_task_group() as tasks:
                if (watcher := reloader(settings, approvals)) is not None:  # an edit or SIGHUP, as on `serve`
                    await tasks.start(watcher.watch)
                logger.info("signoff %s console on %s, database %s", package_version(), base, database_name(settings))
                if console.links is not None:
                    _announce(f"{base}/sign-in/link?key={console.links.new_key()}", as_name=console.links.identity)
                yield
                tasks.cancel_scope.cancel()
        finally:
            service.clear()
            models.clear()
            await model_store.close()
            await store.close()

    app = Starlette(routes=routes(console), lifespan=lifespan)
    level = settings.log_level.lower()
    config = uvicorn.Config(
        HostOriginGuard(app, allowed_hosts(host, port, extra_hosts)),  # as `signoff serve`: no DNS rebinding
        host=host,
        port=port,
        log_level=level,
        access_log=level == "debug",
        http=timed_protocol(settings.http_request_timeout, settings.http_idle_timeout),
        limit_concurrency=settings.http_max_connections + 1,
        timeout_graceful_shutdown=2,  # the live queue's stream is cut 2 s after a stop instead of holding it up
    )
    anyio.run(serve_uvicorn, config, Stopper())  # SIGINT/SIGTERM: one line, exit 0
    return 0


def _announce(url: str, as_name: str | None = None) -> None:
    """A sign-in link, on stderr (where the person who started the console reads it), never in the log."""
    who = f" (votes are recorded as {as_name})" if as_name else ""
    print(f"signoff console: sign in once at {url}{who}", file=sys.stderr, flush=True)
