"""OpenTelemetry tracing of `flow operator` and `flow serve`, off unless asked for.

On when `--otlp-endpoint` is given or OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is
set (and OTEL_SDK_DISABLED is not true): spans go to that endpoint over
OTLP/gRPC through the SDK's batch processor. `http://host:4317` is plaintext,
`https://` or a bare host:port use TLS, as the OTLP exporter decides.

Off, no SDK is loaded and call sites check `enabled()` before building
anything, so a process without tracing pays one function call per hook.

Root spans opened under `trace_id_from(...)` take that trace id instead of a
random one: the operator files every span of a Task under the Task's UID, so a
run split by an operator restart is still one trace, found from the Task."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"

OPERATOR_SERVICE = "nico-flow-operator"
API_SERVICE = "nico-flow-api"

# gRPC codes that mark a server span as failed (OpenTelemetry's RPC conventions)
_SERVER_FAULTS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_forced_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "nicoflow_trace_id", default=None
)


def endpoint(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """Where spans go, or None when tracing stays off."""
    if explicit:
        return explicit
    if env.get(ENV_SDK_DISABLED, "").strip().lower() == "true":
        return None
    return env.get(ENV_TRACES_ENDPOINT) or env.get(ENV_ENDPOINT) or None


def configure(service_name: str, explicit: str | None, env: Mapping[str, str]) -> str | None:
    """Install the process-wide tracer provider; returns the endpoint, or None (off)."""
    global _provider, _tracer
    url = endpoint(explicit, env)
    if url is None:
        return None
    # the SDK and the exporter are imported only by processes that trace
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    from nicoflow import __version__

    class TraceIdFromContext(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return _forced_trace_id.get() or super().generate_trace_id()

    resource = Resource.create(
        {
            SERVICE_NAME: env.get(ENV_SERVICE_NAME) or service_name,
            SERVICE_VERSION: __version__,
        }
    )
    provider = TracerProvider(resource=resource, id_generator=TraceIdFromContext())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("nicoflow", __version__)
    return url


def enabled() -> bool:
    return _tracer is not None


def tracer() -> Tracer:
    if _tracer is None:
        raise RuntimeError("tracing is off: check tracing.enabled() first")
    return _tracer


def shutdown() -> None:
    """Flush what is buffered and stop exporting (at process exit)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


@contextlib.contextmanager
def trace_id_from(uid: str) -> Iterator[None]:
    """Root spans started inside take the 128 bits of this UUID as trace id."""
    token = _forced_trace_id.set(uuid.UUID(uid).int or None)
    try:
        yield
    finally:
        _forced_trace_id.reset(token)


class RpcSpan:
    """A span around one gRPC call. With `current`, it is the current span until
    `finish`, which must then run in the context that opened it (the same
    asyncio task)."""

    def __init__(
        self,
        service: str,
        method: str,
        *,
        server: bool,
        current: bool = True,
        attributes: Mapping[str, Any] | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> None:
        from opentelemetry import context, propagate, trace

        parent = propagate.extract(carrier) if carrier else None
        kind = trace.SpanKind.SERVER if server else trace.SpanKind.CLIENT
        self.span: Span = tracer().start_span(
            f"{service}/{method}",
            context=parent,
            kind=kind,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
                **(attributes or {}),
            },
        )
        self._server = server
        self._token = context.attach(trace.set_span_in_context(self.span)) if current else None

    def finish(self, code_name: str, code_value: int, error: str = "") -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("rpc.grpc.status_code", code_value)
        self.span.set_attribute("grpc.code", code_name)
        # a server span fails only for the server's own faults, a client span for any code
        if code_name != "OK" and (not self._server or code_name in _SERVER_FAULTS):
            self.span.set_status(Status(StatusCode.ERROR, f"{code_name}: {error}"[:512]))
        if self._token is not None:
            context.detach(self._token)
        self.span.end()
