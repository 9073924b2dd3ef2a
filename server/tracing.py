"""Export OpenTelemetry traces by OTLP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Needs the optional extra ``signoff[otel]`` (the OpenTelemetry SDK and OTLP exporters). Without the variable nothing
is installed, and signoff's spans cost a check each (``signoff.storage.tracing``); with the variable but without the
extra, a warning says what to install and signoff runs untraced.

The exporters read the other standard variables themselves: ``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``,
``..._CERTIFICATE``, and the per-signal ``OTEL_EXPORTER_OTLP_TRACES_*`` forms. ``OTEL_EXPORTER_OTLP_PROTOCOL``
picks ``http/protobuf`` (the default) or ``grpc``; ``OTEL_SERVICE_NAME`` names the service (default ``signoff``);
``OTEL_SDK_DISABLED=true`` turns it all off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from signoff.server.config import package_version

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
PROTOCOLS = ("http/protobuf", "grpc")


def configure(environ: Mapping[str, str]) -> TracerProvider | None:
    """Install a tracer provider that sends spans by OTLP, if ``environ`` names an endpoint; the provider, or None.

    The provider becomes OpenTelemetry's global one (so the MCP SDK's own ``tools/call`` spans are recorded too);
    it flushes its spans when the process exits."""
    if not (environ.get(ENDPOINT) or environ.get(TRACES_ENDPOINT)):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    protocol = protocol.strip().lower() or PROTOCOLS[0]
    if protocol not in PROTOCOLS:
        logger.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: use http/protobuf or grpc; traces are not exported",
            protocol,
        )
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = _exporter(protocol)
    except ImportError as exc:
        logger.warning(
            "%s is set but the OpenTelemetry SDK is missing (%s): install signoff[otel] to export traces",
            ENDPOINT if environ.get(ENDPOINT) else TRACES_ENDPOINT,
            exc.name,
        )
        return None
    resource = Resource.create(
        {"service.name": environ.get("OTEL_SERVICE_NAME") or "signoff", "service.version": package_version()}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger.info("exporting traces by OTLP (%s)", protocol)
    return provider


def _exporter(protocol: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()
