"""One typed settings object, read once at the edge from SIGNOFF_* variables and command-line flags."""

from __future__ import annotations

import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from signoff.notifiers.email import SmtpSecurity, SmtpSettings
from signoff.server.alerts import ENV_THRESHOLDS, AlertSettings
from signoff.server.policy_env import PolicyOverrides
from signoff.storage import ConfigError
from signoff.storage.pg_url import is_postgres_url
from signoff.tools.models.canary import CanaryLimits
from signoff.tools.models.service import ModelSettings


def package_version() -> str:
    try:
        return version("signoff")
    except PackageNotFoundError:
        return "0.0.0"


MIN_RECEIPT_KEY_BYTES = 32


def receipt_key(settings: Settings) -> bytes:
    """SIGNOFF_RECEIPT_KEY, or the key in ``<database>.receipt-key``, created (mode 0600) on first use, so every
    process that shares the database signs alike. A key file that other users can read or write, or that another
    user owns, is refused: whoever planted or read it could forge approval receipts."""
    if settings.receipt_key:
        return settings.receipt_key.encode()
    path = settings.db_path.with_name(settings.db_path.name + ".receipt-key")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the receipt key {path}: {exc}; set SIGNOFF_RECEIPT_KEY instead") from exc
    key = _read_private(path).strip()
    if len(key) < MIN_RECEIPT_KEY_BYTES:
        raise ConfigError(f"the receipt key in {path} is too short; delete the file to make a new one")
    return key


def _read_private(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of this user's that nobody else may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the receipt key {path}: {exc}; delete it to make a new one, or set SIGNOFF_RECEIPT_KEY"
        ) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the receipt key {path} is not a regular file; delete it to make a new one")
        if info.st_uid != os.geteuid():
            raise ConfigError(
                f"the receipt key {path} belongs to user id {info.st_uid}, not to signoff's user ({os.geteuid()}): "
                "someone else may know it; delete it to make a new one"
            )
        if info.st_mode & 0o077:
            raise ConfigError(
                f"the receipt key {path} is readable or writable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {path}` if you made it, "
                "or delete it to make a new one"
            )
        return file.read()


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("signoff")) / "signoff.db"


def database_setting(value: str | None) -> dict[str, Any]:
    """``db_path`` and ``db_url`` from SIGNOFF_DB or ``--db``: a ``postgresql://`` URL selects PostgreSQL (the SQLite
    path stays the default one, where the receipt key file lives unless SIGNOFF_RECEIPT_KEY is set); anything else is
    the SQLite file."""
    if value is not None and is_postgres_url(value):
        return {"db_path": default_db_path(), "db_url": value}
    return {"db_path": Path(value).expanduser() if value else default_db_path(), "db_url": None}


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    db_path: Path  #: SIGNOFF_DB
    #: SIGNOFF_DB=postgresql://user:password@host:port/dbname: PostgreSQL instead of the SQLite file, for every command
    db_url: str | None = None
    config_path: Path | None = None  #: SIGNOFF_CONFIG: the policy TOML; None applies the defaults
    log_level: str = "INFO"  #: SIGNOFF_LOG_LEVEL
    progress_interval: float = 5.0  #: SIGNOFF_PROGRESS_INTERVAL: seconds between progress notifications
    permission_wait_seconds: float = 120.0  #: SIGNOFF_PERMISSION_WAIT_SECONDS: permission_prompt's bounded wait
    sweep_interval: float = 1.0  #: SIGNOFF_SWEEP_INTERVAL: how often expired requests are closed
    slack_bot_token: str | None = None  #: SIGNOFF_SLACK_BOT_TOKEN (xoxb-…): turns Slack on
    slack_app_token: str | None = None  #: SIGNOFF_SLACK_APP_TOKEN (xapp-…): replies by Socket Mode
    slack_signing_secret: str | None = None  #: SIGNOFF_SLACK_SIGNING_SECRET: replies by POST /slack/interactions
    slack_channel: str | None = None  #: SIGNOFF_SLACK_CHANNEL: where requests go unless the policy says otherwise
    slack_api_url: str | None = None  #: SIGNOFF_SLACK_API_URL: the Web API base URL (tests, proxies)
    webhook_url: str | None = None  #: SIGNOFF_WEBHOOK_URL: also POST every state change here, signed
    webhook_secret: str | None = None  #: SIGNOFF_WEBHOOK_SECRET: the HMAC key for the webhook
    receipt_key: str | None = None  #: SIGNOFF_RECEIPT_KEY: signs approval receipts; else a key file by the database
    notify_max_attempts: int = 50  #: SIGNOFF_NOTIFY_MAX_ATTEMPTS: a notifier gives up after this many failures
    notify_give_up_seconds: float = 86_400.0  #: SIGNOFF_NOTIFY_GIVE_UP_SECONDS: or this long after the first
    #: SIGNOFF_HTTP_REQUEST_TIMEOUT: seconds a client gets to send a whole request (line, headers, body), counted
    #: from the connection's opening or the first byte of the request; then the connection is closed (slowloris)
    http_request_timeout: float = 10.0
    http_idle_timeout: float = 5.0  #: SIGNOFF_HTTP_IDLE_TIMEOUT: an idle keep-alive connection closes after this
    #: SIGNOFF_HTTP_MAX_CONNECTIONS: beyond this many open connections (or requests in progress), requests get 503
    http_max_connections: int = 200
    #: SIGNOFF_HTTP_STATELESS (on/off; ``serve --stateless``): every POST to /mcp stands alone, no MCP session kept in
    #: this process's memory, so replicas behind a round-robin proxy each answer any call (docs: Deployment)
    http_stateless: bool = False
    console_idle_minutes: float = 30.0  #: SIGNOFF_CONSOLE_IDLE_MINUTES: a console session ends after this idle time
    #: SIGNOFF_PUBLIC_URL: where people reach this server's web console (``https://signoff.example.com``);
    #: when set, Slack messages link each request's console page
    public_url: str | None = None
    claim_minutes: float = 15.0  #: SIGNOFF_CLAIM_MINUTES: a reviewer's claim ("alice is reviewing") lapses after this
    models: ModelSettings = field(default_factory=ModelSettings)  #: SIGNOFF_MODEL_*: the model control plane
    alerts: AlertSettings = field(default_factory=AlertSettings)  #: SIGNOFF_ALERT_*, SIGNOFF_SMTP_*: built-in alerts
    #: SIGNOFF_CONFIDENCE_THRESHOLD, SIGNOFF_DEFAULT_OUTCOME: over the policy file's values
    policy_overrides: PolicyOverrides = field(default_factory=PolicyOverrides)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            **database_setting(env.get("SIGNOFF_DB") or None),
            config_path=Path(env["SIGNOFF_CONFIG"]).expanduser() if env.get("SIGNOFF_CONFIG") else None,
            log_level=_log_level(env.get("SIGNOFF_LOG_LEVEL", "INFO")),
            progress_interval=_number(env, "SIGNOFF_PROGRESS_INTERVAL", 5.0),
            permission_wait_seconds=_number(env, "SIGNOFF_PERMISSION_WAIT_SECONDS", 120.0),
            sweep_interval=_number(env, "SIGNOFF_SWEEP_INTERVAL", 1.0),
            slack_bot_token=env.get("SIGNOFF_SLACK_BOT_TOKEN") or None,
            slack_app_token=env.get("SIGNOFF_SLACK_APP_TOKEN") or None,
            slack_signing_secret=env.get("SIGNOFF_SLACK_SIGNING_SECRET") or None,
            slack_channel=env.get("SIGNOFF_SLACK_CHANNEL") or None,
            slack_api_url=env.get("SIGNOFF_SLACK_API_URL") or None,
            webhook_url=env.get("SIGNOFF_WEBHOOK_URL") or None,
            webhook_secret=env.get("SIGNOFF_WEBHOOK_SECRET") or None,
            receipt_key=env.get("SIGNOFF_RECEIPT_KEY") or None,
            notify_max_attempts=_whole(env, "SIGNOFF_NOTIFY_MAX_ATTEMPTS", 50, 1, 1_000_000),
            notify_give_up_seconds=_number(env, "SIGNOFF_NOTIFY_GIVE_UP_SECONDS", 86_400.0),
            console_idle_minutes=_bounded(env, "SIGNOFF_CONSOLE_IDLE_MINUTES", 30.0, 1, 7 * 24 * 60),
            claim_minutes=_bounded(env, "SIGNOFF_CLAIM_MINUTES", 15.0, 1, 24 * 60),
            public_url=public_url(env.get("SIGNOFF_PUBLIC_URL", "").strip() or None),
            models=_model_settings(env),
            alerts=_alert_settings(env),
            policy_overrides=PolicyOverrides.from_env(env),
            http_request_timeout=_bounded(env, "SIGNOFF_HTTP_REQUEST_TIMEOUT", 10.0, 0.01, 3600),
            http_idle_timeout=_bounded(env, "SIGNOFF_HTTP_IDLE_TIMEOUT", 5.0, 0.01, 3600),
            http_max_connections=_whole(env, "SIGNOFF_HTTP_MAX_CONNECTIONS", 200, 1, 100_000),
            http_stateless=_switch(env, "SIGNOFF_HTTP_STATELESS", "off"),
        )
        settings.check()
        if overrides.get("db") is not None:  # --db: a path or a URL, instead of SIGNOFF_DB's
            overrides.update(database_setting(str(overrides["db"])))
        overrides.pop("db", None)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None or k == "db_url"})

    def check(self) -> None:
        """Settings that only make sense together, or in a known shape."""
        if self.slack_bot_token and not self.slack_bot_token.startswith("xoxb-"):
            raise ConfigError("SIGNOFF_SLACK_BOT_TOKEN must be a bot token (xoxb-…), from OAuth & Permissions")
        if self.slack_app_token and not self.slack_app_token.startswith("xapp-"):
            raise ConfigError("SIGNOFF_SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write")
        if (self.slack_app_token or self.slack_signing_secret) and not self.slack_bot_token:
            raise ConfigError("Slack replies need SIGNOFF_SLACK_BOT_TOKEN too: signoff posts with the bot token")
        if self.receipt_key is not None and len(self.receipt_key.encode()) < MIN_RECEIPT_KEY_BYTES:
            raise ConfigError(
                f"SIGNOFF_RECEIPT_KEY is {len(self.receipt_key.encode())} bytes; use at least {MIN_RECEIPT_KEY_BYTES} "
                "random bytes (e.g. python -c 'import secrets; print(secrets.token_hex(32))'), or unset it to use a "
                "key file beside the database"
            )
        if self.alerts.slack_channel and not self.slack_bot_token:
            raise ConfigError("SIGNOFF_ALERT_SLACK_CHANNEL needs SIGNOFF_SLACK_BOT_TOKEN: alerts are posted by the bot")
        if bool(self.webhook_url) != bool(self.webhook_secret):
            raise ConfigError("set SIGNOFF_WEBHOOK_URL and SIGNOFF_WEBHOOK_SECRET together: webhooks are always signed")


def public_url(raw: str | None) -> str | None:
    """SIGNOFF_PUBLIC_URL checked: an http(s) URL with a host and no query, fragment or password; without its
    trailing slash, so ``<url>/requests/<id>`` is the request's console page."""
    if raw is None:
        return None
    problem = "use the console's address as people open it, like https://signoff.example.com"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise ConfigError(f"SIGNOFF_PUBLIC_URL={raw!r} is not a URL; {problem}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"SIGNOFF_PUBLIC_URL={raw!r} is not an http or https URL with a host; {problem}")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ConfigError(f"SIGNOFF_PUBLIC_URL={raw!r} has a query or fragment; {problem}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"SIGNOFF_PUBLIC_URL={raw!r} holds a user name or password; {problem}")
    if len(raw) > 1000:
        raise ConfigError(f"SIGNOFF_PUBLIC_URL is {len(raw)} characters long; {problem} (at most 1000)")
    if UNSAFE_URL_CHARS.search(raw):
        raise ConfigError(f"SIGNOFF_PUBLIC_URL={raw!r} has spaces, quotes or <>|\\ in it; {problem}")
    return raw.rstrip("/")


#: characters a URL shown in Slack mrkdwn or HTML must not hold (percent-encode them in the path instead)
UNSAFE_URL_CHARS = re.compile(r"[\s<>|\\\"'`^{}]|[^\x21-\x7e]")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"SIGNOFF_LOG_LEVEL={raw!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return raw.upper()


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, not {raw}")
    return value


def _model_settings(env: Mapping[str, str]) -> ModelSettings:
    """The model settings from ``SIGNOFF_MODEL_*`` variables; unset ones keep their defaults.

    ``SIGNOFF_MODEL_GUARD`` (on/off), ``SIGNOFF_MODEL_GUARD_INTERVAL``, ``SIGNOFF_MODEL_GUARD_WINDOW_SECONDS``,
    ``SIGNOFF_MODEL_GUARD_MIN_SAMPLES``, ``SIGNOFF_MODEL_ALPHA``, ``SIGNOFF_MODEL_MAX_ERROR_RATE_INCREASE``,
    ``SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO``, ``SIGNOFF_MODEL_MAX_LATENCY_INCREASE``.
    """
    defaults, limits = ModelSettings(), CanaryLimits()
    switch = env.get("SIGNOFF_MODEL_GUARD", "on").strip().lower()
    if switch not in ("on", "off", "true", "false", "1", "0"):
        raise ConfigError(f"SIGNOFF_MODEL_GUARD={switch!r}; use on or off")
    return replace(
        defaults,
        guard_enabled=switch in ("on", "true", "1"),
        guard_interval=_bounded(env, "SIGNOFF_MODEL_GUARD_INTERVAL", defaults.guard_interval, 0.01, 86_400),
        guard_window_seconds=int(
            _bounded(env, "SIGNOFF_MODEL_GUARD_WINDOW_SECONDS", defaults.guard_window_seconds, 60, 30 * 86_400)
        ),
        guard_min_samples=int(_bounded(env, "SIGNOFF_MODEL_GUARD_MIN_SAMPLES", defaults.guard_min_samples, 1, 1e9)),
        limits=replace(
            limits,
            alpha=_bounded(env, "SIGNOFF_MODEL_ALPHA", limits.alpha, 1e-9, 0.5),
            max_error_rate_increase=_bounded(
                env, "SIGNOFF_MODEL_MAX_ERROR_RATE_INCREASE", limits.max_error_rate_increase, 0, 1
            ),
            max_error_rate_ratio=_bounded(
                env, "SIGNOFF_MODEL_MAX_ERROR_RATE_RATIO", limits.max_error_rate_ratio, 1, math.inf
            ),
            max_latency_increase=_bounded(
                env, "SIGNOFF_MODEL_MAX_LATENCY_INCREASE", limits.max_latency_increase, 0, 100
            ),
        ),
    )


def _switch(env: Mapping[str, str], name: str, default: str) -> bool:
    switch = env.get(name, default).strip().lower()
    if switch not in ("on", "off", "true", "false", "1", "0"):
        raise ConfigError(f"{name}={switch!r}; use on or off")
    return switch in ("on", "true", "1")


def _alert_settings(env: Mapping[str, str]) -> AlertSettings:
    """The built-in alerts' settings from ``SIGNOFF_ALERTS``, ``SIGNOFF_ALERT_*``, ``SIGNOFF_SMTP_*`` (docs: Alerts)."""
    defaults = AlertSettings()
    host = env.get("SIGNOFF_SMTP_HOST", "").strip()
    recipients = tuple(a.strip() for a in env.get("SIGNOFF_ALERT_EMAIL_TO", "").split(",") if a.strip())
    if bool(host) != bool(recipients):
        raise ConfigError("set SIGNOFF_SMTP_HOST and SIGNOFF_ALERT_EMAIL_TO together: e-mail alerts need both")
    smtp = None
    if host:
        security = env.get("SIGNOFF_SMTP_SECURITY", "starttls").strip().lower()
        if security not in {s.value for s in SmtpSecurity}:
            raise ConfigError(f"SIGNOFF_SMTP_SECURITY={security!r}; use starttls, tls or none")
        username = env.get("SIGNOFF_SMTP_USERNAME") or None
        password = env.get("SIGNOFF_SMTP_PASSWORD") or None
        if bool(username) != bool(password):
            raise ConfigError("set SIGNOFF_SMTP_USERNAME and SIGNOFF_SMTP_PASSWORD together")
        default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
        smtp = SmtpSettings(
            host=host,
            port=_whole(env, "SIGNOFF_SMTP_PORT", default_port, 1, 65535),
            security=SmtpSecurity(security),
            username=username,
            password=password,
            sender=env.get("SIGNOFF_ALERT_EMAIL_FROM", "").strip() or "signoff@localhost",
            recipients=recipients,
        )
    return AlertSettings(
        enabled=_switch(env, "SIGNOFF_ALERTS", "on"),
        rejection_rate=_bounded(env, "SIGNOFF_ALERT_REJECTION_RATE", defaults.rejection_rate, 0, 1),
        rejection_min_decisions=_whole(
            env, "SIGNOFF_ALERT_REJECTION_MIN_DECISIONS", defaults.rejection_min_decisions, 1, 1_000_000_000
        ),
        max_pending=_whole(env, "SIGNOFF_ALERT_MAX_PENDING", defaults.max_pending, 0, 1_000_000_000),
        interval=_bounded(env, "SIGNOFF_ALERT_INTERVAL", defaults.interval, 0.01, 86_400),
        repeat_minutes=_bounded(env, "SIGNOFF_ALERT_REPEAT_MINUTES", defaults.repeat_minutes or 0, 0, 525_600) or None,
        oldest_pending_minutes=(
            _bounded(env, "SIGNOFF_ALERT_OLDEST_PENDING_MINUTES", 0, 1, 525_600)
            if env.get("SIGNOFF_ALERT_OLDEST_PENDING_MINUTES", "").strip()
            else None
        ),
        notifications_dead=_switch(env, "SIGNOFF_ALERT_NOTIFICATIONS_DEAD", "off"),
        canary_guard=_switch(env, "SIGNOFF_ALERT_CANARY_GUARD", "off"),
        slack_channel=env.get("SIGNOFF_ALERT_SLACK_CHANNEL", "").strip() or None,
        smtp=smtp,
        max_attempts=_whole(env, "SIGNOFF_NOTIFY_MAX_ATTEMPTS", 50, 1, 1_000_000),
        give_up_seconds=_number(env, "SIGNOFF_NOTIFY_GIVE_UP_SECONDS", 86_400.0),
        from_env=frozenset(
            name
            for name, variable in [*((n, v) for n, (v, _, _) in ENV_THRESHOLDS.items()), REPEAT]
            if env.get(variable, "").strip()
        ),
    )


REPEAT = ("repeat_minutes", "SIGNOFF_ALERT_REPEAT_MINUTES")  #: wins over every [[alerts]] table's repeat_minutes


def _bounded(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range; use {low:g} to {high:g}")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _bounded(env, name, float(default), low, high)
    if not value.is_integer():
        raise ConfigError(f"{name}={env.get(name)} is not a whole number")
    return int(value)
