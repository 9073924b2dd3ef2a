"""Trace context without an SDK at work: what an agent sends is checked, carried to notifications, and nothing is
installed unless the OTLP endpoint is set (the spans themselves are tested end to end in
tests/integration/test_traces.py, against a real OTLP receiver)."""

from __future__ import annotations

import logging

import pytest

from signoff.server import tracing as setup
from signoff.storage import tracing

AGENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        42,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # an unknown version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # the all-zero trace id is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # W3C: lower case only
        AGENT + "\n",
        AGENT + "x" * 1_000_000,
    ],
)
def test_a_traceparent_that_is_not_w3c_is_ignored(value: object) -> None:
    assert tracing.valid_traceparent(value) is None
    assert tracing.trace_id_of(value if isinstance(value, str) else None) is None


def test_a_w3c_traceparent_is_kept_and_its_trace_id_read() -> None:
    assert tracing.valid_traceparent(AGENT) == AGENT
    assert tracing.trace_id_of(AGENT) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_without_a_tracer_provider_spans_are_not_made_and_the_parent_is_only_carried() -> None:
    assert not tracing.recording()
    assert tracing.current_traceparent() is None
    with tracing.span("signoff.notify", parent=AGENT) as span:
        span.set(notifier="webhook")  # no span: nothing to set, and no error
        assert tracing.current_traceparent() == AGENT  # what a webhook or Slack message is sent with
    assert tracing.current_traceparent() is None
    with tracing.span("signoff.notify", parent="garbage"):
        assert tracing.current_traceparent() is None


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_nothing_is_installed_without_an_endpoint_or_when_disabled(environ: dict[str, str]) -> None:
    assert setup.configure(environ) is None
    assert not tracing.recording()


def test_an_unknown_protocol_is_refused_with_a_warning_naming_the_choices(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with caplog.at_level(logging.WARNING, logger="signoff.server.tracing"):
        assert setup.configure(environ) is None
    assert "use http/protobuf or grpc" in caplog.text
    assert not tracing.recording()
