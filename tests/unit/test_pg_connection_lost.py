"""Which PostgreSQL errors mean "the connection is gone" (a read may be tried again on another connection) and which
a statement caused (trying again would only add load): storage.pg_db.connection_lost."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from signoff.storage.pg_db import connection_lost


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),  # libpq's own: no SQLSTATE
        errors.AdminShutdown("terminating connection due to administrator command"),  # 57P01: a restart, a failover
        errors.CrashShutdown("crash"),  # 57P02
        errors.CannotConnectNow("the database system is starting up"),  # 57P03
        errors.ConnectionFailure("connection failure"),  # class 08
    ],
)
def test_a_lost_connection_may_be_tried_again(error: psycopg.OperationalError) -> None:
    assert connection_lost(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.QueryCanceled("canceling statement due to statement timeout"),  # 57014
        errors.LockNotAvailable("could not obtain lock"),  # 55P03
        errors.TooManyConnections("too many connections"),  # 53300
    ],
)
def test_an_error_a_statement_caused_is_not_tried_again(error: psycopg.OperationalError) -> None:
    assert not connection_lost(error)
