"""Trace context for every layer: OpenTelemetry spans when an SDK tracer provider is installed, and the W3C
``traceparent`` a request carries from the agent to its notifications and its reviewers' votes.

signoff makes spans only when a real tracer provider is installed (``signoff.server.tracing.configure`` installs
one with an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; an application that embeds signoff may
install its own). Without one, ``span`` costs a function call and an ``isinstance``, and nothing is recorded; the
agent's ``traceparent`` is still stored with its request and passed on to webhooks and Slack, unchanged.

The OpenTelemetry API comes with the ``mcp`` package; this module still imports without it (every helper is then
a no-op that only passes stored trace context along).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
except ImportError:  # pragma: no cover - the API ships with mcp; kept so storage never needs it
    trace = None  # type: ignore[assignment]

TRACER_NAME = "signoff"
#: The key of the trace context in a request's ``created`` event (and in Slack's message metadata).
TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

#: The trace context to pass on when no span is recording (no SDK installed): the stored ``traceparent`` of the
#: request being delivered, set by ``span(..., parent=...)``.
_carried: ContextVar[str | None] = ContextVar("signoff_traceparent", default=None)

Attributes = Mapping[str, str | int | float | bool | tuple[str, ...]]


def valid_traceparent(value: object) -> str | None:
    """``value`` if it is a W3C traceparent (version 00) with non-zero ids, else None."""
    if not isinstance(value, str) or (match := _TRACEPARENT.fullmatch(value)) is None:
        return None
    trace_id, span_id, _ = match.groups()
    return value if trace_id != "0" * 32 and span_id != "0" * 16 else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32 hex digits of the trace id in a traceparent."""
    valid = valid_traceparent(traceparent)
    return valid[3:35] if valid else None


def recording() -> bool:
    """Whether spans are recorded: an OpenTelemetry SDK (or other real) tracer provider is installed."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def current_traceparent() -> str | None:
    """The traceparent of the current span (the agent's, continued, or signoff's own), else the one carried."""
    if trace is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    return _carried.get()


class Span:
    """A span being recorded, or nothing: ``set`` adds attributes when there is one."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, **attributes: str | int | float | bool | None) -> None:
        if self._span is not None:
            self._span.set_attributes({f"signoff.{k}": v for k, v in attributes.items() if v is not None})

    def fail(self, error: BaseException) -> None:
        if self._span is not None:
            self._span.set_attribute("error.type", type(error).__qualname__)
            self._span.set_status(StatusCode.ERROR, str(error)[:200])


@contextmanager
def span(
    name: str, *, parent: str | None = None, attributes: Attributes | None = None, child_only: bool = False
) -> Iterator[Span]:
    """A span named ``name``, current inside the block. ``parent``: a stored traceparent to continue (a request's,
    for its notifications and votes); the span is then its child, linked to whatever span was current (the HTTP
    request that carried a reviewer's click, if that was traced). Without a recording provider nothing is made, and
    ``parent`` is only carried, so ``current_traceparent`` inside the block gives it to a webhook or Slack.
    ``child_only``: made only inside another span (a store commit is part of a call; the background workers' own
    commits, several a second, would each be a trace of their own)."""
    parent = valid_traceparent(parent)
    if not recording() or (child_only and parent is None and not trace.get_current_span().get_span_context().is_valid):
        token = _carried.set(parent) if parent is not None else None
        try:
            yield Span()
        finally:
            if token is not None:
                _carried.reset(token)
        return
    context, links = None, list[Link]()
    if parent is not None:
        here = trace.get_current_span().get_span_context()
        stored = _span_context(parent)
        if not here.is_valid or here.trace_id != stored.trace_id:
            context = trace.set_span_in_context(NonRecordingSpan(stored))
            links = [Link(here)] if here.is_valid else []
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=context, kind=SpanKind.INTERNAL, attributes=dict(attributes or {}), links=links
    ) as current:
        yield Span(current)


def annotate(**attributes: str | int | float | bool | None) -> None:
    """Add ``signoff.*`` attributes to the current span (the SDK's ``tools/call`` span, in a tool call)."""
    if recording():
        Span(trace.get_current_span()).set(**attributes)


def _span_context(traceparent: str) -> SpanContext:
    trace_id, span_id, flags = traceparent[3:35], traceparent[36:52], traceparent[53:55]
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
