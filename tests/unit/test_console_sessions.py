"""Console sessions end after their idle time, sign-in attempts are limited per address, links work once."""

from __future__ import annotations

import pytest

from signoff.server.config import Settings
from signoff.server.console import SignInLinks
from signoff.server.console.sessions import Attempts, Sessions
from signoff.storage import ConfigError


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_its_idle_time_and_activity_keeps_it_alive() -> None:
    clock = Ticks()
    sessions = Sessions(idle_seconds=600, clock=clock)
    form = sessions.anonymous()
    session = sessions.sign_in(form, "alice")
    assert session.id != form.id and sessions.get(form.id) is None  # signing in never keeps the form's id
    clock.now += 599
    assert sessions.get(session.id) is session  # a request restarts the idle time
    clock.now += 599
    assert sessions.alive(session) and sessions.get(session.id) is session
    clock.now += 601
    assert not sessions.alive(session) and sessions.get(session.id) is None
    assert not session.csrf_ok(None) and not session.csrf_ok("x") and session.csrf_ok(session.csrf)


def test_signing_out_ends_the_session_at_once() -> None:
    sessions = Sessions(idle_seconds=600, clock=Ticks())
    session = sessions.sign_in(None, "bob")
    sessions.end(session)
    assert sessions.get(session.id) is None


def test_failed_sign_ins_are_limited_per_address_for_a_window() -> None:
    clock = Ticks()
    attempts = Attempts(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert attempts.wait_seconds("10.0.0.1") == 0
        attempts.failed("10.0.0.1")
    assert attempts.wait_seconds("10.0.0.1") == 60
    assert attempts.wait_seconds("10.0.0.2") == 0  # another address is not held back
    clock.now += 60
    assert attempts.wait_seconds("10.0.0.1") == 0


def test_an_ipv6_guesser_is_one_address_per_64_and_the_audited_refusals_are_bounded_overall() -> None:
    clock = Ticks()
    attempts = Attempts(limit=3, window=60, clock=clock, recorded_limit=4)
    for host in range(3):  # three addresses of one /64: one guesser
        attempts.failed(f"2001:db8:1:2::{host + 1}")
    assert attempts.wait_seconds("2001:db8:1:2:ffff::9") == 60
    assert attempts.wait_seconds("2001:db8:1:3::1") == 0  # the next /64 is someone else
    assert attempts.wait_seconds("::ffff:10.0.0.1") == 0 and attempts.wait_seconds("unknown") == 0
    assert [attempts.may_record() for _ in range(6)] == [True] * 4 + [False] * 2
    clock.now += 60
    assert attempts.may_record()


def test_a_sign_in_link_works_once() -> None:
    links = SignInLinks(identity="dave")
    key = links.new_key()
    assert not links.redeem("wrong") and links.redeem(key) and not links.redeem(key) and not links.unused


def test_the_idle_time_is_a_setting_with_bounds() -> None:
    assert Settings.from_env({"SIGNOFF_CONSOLE_IDLE_MINUTES": "15"}).console_idle_minutes == 15
    assert Settings.from_env({}).console_idle_minutes == 30
    with pytest.raises(ConfigError, match="SIGNOFF_CONSOLE_IDLE_MINUTES"):
        Settings.from_env({"SIGNOFF_CONSOLE_IDLE_MINUTES": "0"})


def test_a_live_stream_reconnecting_does_not_keep_a_session_alive() -> None:
    clock = Ticks()
    sessions = Sessions(idle_seconds=600, clock=clock)
    session = sessions.sign_in(None, "alice")
    clock.now += 500
    assert sessions.get(session.id, activity=False) is session
    clock.now += 101
    assert sessions.get(session.id, activity=False) is None
