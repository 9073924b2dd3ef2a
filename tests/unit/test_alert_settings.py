"""The alert rules' judgement and their settings: defaults, and a clear error for each wrong value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signoff.notifiers.email import SmtpSecurity
from signoff.server.alerts import AlertSettings, judge
from signoff.server.config import Settings
from signoff.storage import ConfigError
from signoff.storage.alerts import Measures

DB = {"SIGNOFF_DB": "/tmp/signoff-alert-settings.db"}
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def firing(decided: int, rejected: int, pending: int, settings: AlertSettings | None = None) -> dict[str, bool]:
    measures = Measures(human_decisions=decided, human_rejections=rejected, pending=pending)
    return {v.rule: v.firing for v in judge(measures, settings or AlertSettings(), NOW)}


def test_the_seeds_thresholds_are_the_defaults() -> None:
    assert firing(20, 1, 100) == {"rejection_rate": False, "pending_backlog": False}  # 5 % and 100: not above
    assert firing(20, 2, 101) == {"rejection_rate": True, "pending_backlog": True}
    assert firing(19, 19, 0)["rejection_rate"] is False  # too few decisions to judge
    assert firing(0, 0, 0)["rejection_rate"] is False


def test_the_opt_in_rules_judge_the_oldest_request_and_dead_notifications() -> None:
    settings = AlertSettings(oldest_pending_minutes=30, notifications_dead=True)
    waited = Measures(
        human_decisions=0,
        human_rejections=0,
        pending=1,
        oldest_pending=NOW - timedelta(minutes=31),
        dead_notifications=2,
    )
    verdicts = {v.rule: v for v in judge(waited, settings, NOW)}
    assert verdicts["oldest_pending"].firing and verdicts["oldest_pending"].value == 31
    assert verdicts["notifications_dead"].firing and "signoff outbox retry" in verdicts["notifications_dead"].message
    calm = Measures(human_decisions=0, human_rejections=0, pending=0)
    assert not any(v.firing for v in judge(calm, settings, NOW))
    assert {v.rule for v in judge(calm, AlertSettings(), NOW)} == {"rejection_rate", "pending_backlog"}  # opt-in


def test_settings_come_from_the_environment() -> None:
    env = {
        **DB,
        "SIGNOFF_ALERT_REJECTION_RATE": "0.1",
        "SIGNOFF_ALERT_REJECTION_MIN_DECISIONS": "5",
        "SIGNOFF_ALERT_MAX_PENDING": "10",
        "SIGNOFF_SMTP_HOST": "smtp.example.com",
        "SIGNOFF_SMTP_SECURITY": "tls",
        "SIGNOFF_ALERT_EMAIL_TO": "oncall@example.com, lead@example.com",
        "SIGNOFF_ALERT_OLDEST_PENDING_MINUTES": "45",
        "SIGNOFF_ALERT_NOTIFICATIONS_DEAD": "on",
    }
    alerts = Settings.from_env(env).alerts
    assert (alerts.rejection_rate, alerts.rejection_min_decisions, alerts.max_pending) == (0.1, 5, 10)
    assert alerts.smtp is not None
    assert (alerts.smtp.port, alerts.smtp.security) == (465, SmtpSecurity.TLS)
    assert alerts.smtp.recipients == ("oncall@example.com", "lead@example.com")
    assert (alerts.oldest_pending_minutes, alerts.notifications_dead) == (45, True)
    defaults = Settings.from_env(DB).alerts
    assert (defaults.smtp, defaults.oldest_pending_minutes, defaults.notifications_dead) == (None, None, False)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SIGNOFF_ALERT_REJECTION_RATE": "5%"}, "SIGNOFF_ALERT_REJECTION_RATE='5%' is not a number"),
        ({"SIGNOFF_ALERT_REJECTION_RATE": "5"}, "out of range; use 0 to 1"),
        ({"SIGNOFF_ALERT_MAX_PENDING": "1.5"}, "not a whole number"),
        ({"SIGNOFF_ALERTS": "maybe"}, "use on or off"),
        ({"SIGNOFF_ALERT_NOTIFICATIONS_DEAD": "yes"}, "SIGNOFF_ALERT_NOTIFICATIONS_DEAD='yes'; use on or off"),
        ({"SIGNOFF_ALERT_OLDEST_PENDING_MINUTES": "0"}, "out of range; use 1 to 525600"),
        ({"SIGNOFF_SMTP_HOST": "smtp.example.com"}, "set SIGNOFF_SMTP_HOST and SIGNOFF_ALERT_EMAIL_TO together"),
        ({"SIGNOFF_ALERT_EMAIL_TO": "a@example.com"}, "set SIGNOFF_SMTP_HOST and SIGNOFF_ALERT_EMAIL_TO together"),
        (
            {"SIGNOFF_SMTP_HOST": "h", "SIGNOFF_ALERT_EMAIL_TO": "a@b", "SIGNOFF_SMTP_SECURITY": "ssl"},
            "use starttls, tls or none",
        ),
        (
            {"SIGNOFF_SMTP_HOST": "h", "SIGNOFF_ALERT_EMAIL_TO": "a@b", "SIGNOFF_SMTP_USERNAME": "u"},
            "set SIGNOFF_SMTP_USERNAME and SIGNOFF_SMTP_PASSWORD together",
        ),
        ({"SIGNOFF_ALERT_SLACK_CHANNEL": "#devops"}, "needs SIGNOFF_SLACK_BOT_TOKEN"),
    ],
)
def test_a_wrong_alert_setting_says_what_to_change(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({**DB, **env})


def test_the_password_is_not_shown_in_the_settings_repr(tmp_path: Path) -> None:
    env = {**DB, "SIGNOFF_SMTP_HOST": "h", "SIGNOFF_ALERT_EMAIL_TO": "a@b"}
    env |= {"SIGNOFF_SMTP_USERNAME": "u", "SIGNOFF_SMTP_PASSWORD": "hunter2-secret"}
    assert "hunter2-secret" not in repr(Settings.from_env(env))
