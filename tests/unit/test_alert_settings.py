"""The alert rules' judgement and their settings: defaults, and a clear error for each wrong value."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signoff.notifiers.email import SmtpSecurity
from signoff.server.alerts import AlertSettings, judge, rules_in_force, unused_environment
from signoff.server.config import Settings
from signoff.storage import ConfigError
from signoff.storage.alerts import GuardAction, Measures
from signoff.tools.alert_rules import AlertRule, AlertRuleName
from signoff.tools.approvals.policy_config import parse_policy_config

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


def rules(text: str, env: dict[str, str] | None = None) -> dict[str, AlertRule]:
    """The rules in force for a config file's text and an environment, by name."""
    listed = parse_policy_config(text, "signoff.toml").alerts
    return {r.rule.value: r for r in rules_in_force(Settings.from_env({**DB, **(env or {})}).alerts, listed)}


def test_without_alerts_in_the_file_the_seeds_two_run_with_the_environments_opt_ins() -> None:
    assert list(rules("")) == ["rejection_rate", "pending_backlog"]
    seed = rules("")
    assert (seed["rejection_rate"].rate, seed["rejection_rate"].min_decisions) == (0.05, 20)
    assert (seed["pending_backlog"].max_pending, seed["pending_backlog"].repeat_minutes) == (100, 240)
    opted = rules("", {"SIGNOFF_ALERT_CANARY_GUARD": "on", "SIGNOFF_ALERT_OLDEST_PENDING_MINUTES": "45"})
    assert list(opted) == ["rejection_rate", "pending_backlog", "oldest_pending", "canary_guard"]
    assert (opted["oldest_pending"].minutes, opted["canary_guard"].minutes) == (45, 60)


FILE = """\
[[alerts]]
rule = "rejection_rate"
rate = 0.1

[[alerts]]
rule = "canary_guard"
minutes = 15
repeat_minutes = 0
"""


def test_the_files_list_replaces_the_defaults_and_the_environment_wins_key_by_key() -> None:
    listed = rules(FILE)
    assert list(listed) == ["rejection_rate", "canary_guard"]
    assert (listed["rejection_rate"].rate, listed["rejection_rate"].min_decisions) == (0.1, 20)  # unset: default
    assert (listed["canary_guard"].minutes, listed["canary_guard"].repeat_minutes) == (15, 0)
    assert listed["rejection_rate"].repeat_minutes == 240
    env = {"SIGNOFF_ALERT_REJECTION_MIN_DECISIONS": "5", "SIGNOFF_ALERT_REPEAT_MINUTES": "30"}
    won = rules(FILE, env)
    assert (won["rejection_rate"].rate, won["rejection_rate"].min_decisions) == (0.1, 5)
    assert won["rejection_rate"].repeat_minutes == won["canary_guard"].repeat_minutes == 30
    assert rules(FILE, {"SIGNOFF_ALERT_REJECTION_RATE": "0.2"})["rejection_rate"].rate == 0.2
    settings = Settings.from_env({**DB, "SIGNOFF_ALERT_MAX_PENDING": "5", "SIGNOFF_ALERT_NOTIFICATIONS_DEAD": "on"})
    listed_rules = parse_policy_config(FILE, "signoff.toml").alerts
    assert unused_environment(settings.alerts, listed_rules) == [
        "SIGNOFF_ALERT_MAX_PENDING",
        "SIGNOFF_ALERT_NOTIFICATIONS_DEAD",
    ]
    assert unused_environment(settings.alerts, ()) == []  # no list: the environment's rules run


def guard_action(seq: int, minutes_ago: float) -> GuardAction:
    return GuardAction(
        seq=seq,
        model="fraud",
        version=f"v{seq}",
        production="v1",
        at=NOW - timedelta(minutes=minutes_ago),
        reason=f"canary v{seq} failed its analysis against v1: error rate 30% vs 1%",
    )


def test_the_canary_guard_rule_names_each_action_newest_first_and_forgets_old_ones() -> None:
    [rule] = rules_in_force(AlertSettings(), (AlertRule(rule=AlertRuleName.CANARY_GUARD, minutes=30),))
    acted = tuple(guard_action(seq, 40 - seq) for seq in range(2, 10))  # 38 .. 31 minutes ago
    measures = Measures(human_decisions=0, human_rejections=0, pending=0, guard_actions=acted)
    [verdict] = judge(measures, AlertSettings(), NOW, [rule])
    assert (verdict.rule, verdict.firing, verdict.value) == ("canary_guard", False, 0)  # all older than 30 minutes
    assert verdict.message == "the canary guard has not acted in the last 30 minutes"
    recent = tuple(guard_action(seq, 10 - seq) for seq in range(2, 10))  # 8 .. 1 minutes ago
    [verdict] = judge(replace(measures, guard_actions=recent), AlertSettings(), NOW, [rule])
    assert (verdict.firing, verdict.value) == (True, 8)
    assert verdict.message.startswith("the canary guard acted 8 time(s) in the last 30 minutes; model fraud: the")
    assert "took canary v9 off and put its traffic back on v1 1 minutes ago (model change 9)" in verdict.message
    assert "canary v5" in verdict.message and "canary v4 " not in verdict.message  # the newest five
    assert verdict.message.endswith("and 3 more: see `signoff models history`")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('\n[[alerts]]\nrule = "rejection_rat"\n', "line 3: alerts[0].rule: unknown alert rule 'rejection_rat'; use"),
        ("[[alerts]]\nrate = 0.1\n", "line 1: alerts[0]: missing required key 'rule'"),
        (
            '[[alerts]]\nrule = "pending_backlog"\nmax_pendin = 5\n',
            "line 3: alerts[0].max_pendin: unknown key 'max_pendin' (did you mean 'max_pending'?)",
        ),
        (
            '[[alerts]]\nrule = "pending_backlog"\nrate = 0.1\n',
            "line 3: alerts[0].rate: applies to rejection_rate, not pending_backlog; pending_backlog takes "
            "max_pending, repeat_minutes",
        ),
        (
            '[[alerts]]\nrule = "pending_backlog"\nmax_pending = "100"\n',
            "line 3: alerts[0].max_pending: must be an integer, not the string '100'",
        ),
        ('[[alerts]]\nrule = "rejection_rate"\nrate = 5\n', "line 3: alerts[0].rate: must be a share from 0 to 1"),
        ('[[alerts]]\nrule = "canary_guard"\nminutes = 0\n', "line 3: alerts[0].minutes: must be from 1 to 525,600"),
        (
            '[[alerts]]\nrule = "canary_guard"\n\n[[alerts]]\nrule = "canary_guard"\n',
            "line 5: alerts[1].rule: 'canary_guard' is already listed",
        ),
        ('alerts = "pending_backlog"\n', "line 1: alerts: must be an array, not the string"),
    ],
)
def test_a_wrong_alerts_table_is_refused_with_its_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_policy_config(text, "signoff.toml")
    assert refused.value.message.startswith(f"signoff.toml {says}"), refused.value.message


def test_a_canary_guard_message_shows_hostile_names_inert() -> None:
    [rule] = rules_in_force(AlertSettings(), (AlertRule(rule=AlertRuleName.CANARY_GUARD),))
    hostile = replace(guard_action(2, 1), model="fraud\u202e\x1b[2J", reason="r" * 5000)
    measures = Measures(human_decisions=0, human_rejections=0, pending=0, guard_actions=(hostile,))
    [verdict] = judge(measures, AlertSettings(), NOW, [rule])
    assert "model fraud\\u202e\\x1b[2J: the canary guard" in verdict.message
    assert verdict.message.isprintable() and len(verdict.message) < 1000
