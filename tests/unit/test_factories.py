"""The test factories give a test the same requests whatever ran before it (a pytest order that ran thousands of
requests first once moved the outbox tests' requests past the times they claim at). The two tests run in this
order: the first makes many requests, the second must not see them."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import T0, make_request


def test_a_test_may_make_thousands_of_requests() -> None:
    for _ in range(5000):
        last = make_request()
    assert last.created_at == T0 + timedelta(seconds=5000)


def test_the_next_test_numbers_its_requests_from_one_again() -> None:
    first = make_request()
    assert (first.id, first.created_at) == ("req_test000001", T0 + timedelta(seconds=1))
    assert first.created_at < first.expires_at == T0 + timedelta(seconds=1, hours=1)
