"""One typed settings object, read once at the edge from SIGNOFF_* variables and command-line flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import platformdirs

from storage import ConfigError


def package_version() -> str:
    try:
        return version("signoff")
    except PackageNotFoundError:
        return "0.0.0"


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("signoff")) / "signoff.db"


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    db_path: Path  #: SIGNOFF_DB
    config_path: Path | None = None  #: SIGNOFF_CONFIG: the policy TOML; None applies the defaults
    log_level: str = "INFO"  #: SIGNOFF_LOG_LEVEL
    progress_interval: float = 5.0  #: SIGNOFF_PROGRESS_INTERVAL: seconds between progress notifications
    permission_wait_seconds: float = 120.0  #: SIGNOFF_PERMISSION_WAIT_SECONDS: permission_prompt's bounded wait
    sweep_interval: float = 1.0  #: SIGNOFF_SWEEP_INTERVAL: how often expired requests are closed

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            db_path=Path(env["SIGNOFF_DB"]).expanduser() if env.get("SIGNOFF_DB") else default_db_path(),
            config_path=Path(env["SIGNOFF_CONFIG"]).expanduser() if env.get("SIGNOFF_CONFIG") else None,
            log_level=_log_level(env.get("SIGNOFF_LOG_LEVEL", "INFO")),
            progress_interval=_number(env, "SIGNOFF_PROGRESS_INTERVAL", 5.0),
            permission_wait_seconds=_number(env, "SIGNOFF_PERMISSION_WAIT_SECONDS", 120.0),
            sweep_interval=_number(env, "SIGNOFF_SWEEP_INTERVAL", 1.0),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


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
