"""Client interceptor for the Core channel: one log line per call (method,
status code, duration, request id), a hook for metrics and, with tracing on,
a span per call (a child of whatever span is current: a Task's stage)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from nicoflow import tracing

CallHook = Callable[[str, grpc.StatusCode, float], None]

log = logging.getLogger("nicoflow.core.grpc")

# Codes a caller expects in normal operation (e.g. "already set", "not found").
_QUIET = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def level_for(code: grpc.StatusCode) -> int:
    if code == grpc.StatusCode.OK:
        return logging.DEBUG
    if code in _QUIET:
        return logging.INFO
    if code in _TRANSIENT:
        return logging.WARNING
    return logging.ERROR


def _method_name(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def _request_id(details: Any) -> str | None:
    for key, value in details.metadata or ():
        if key == "x-request-id":
            return str(value)
    return None


def _span(details: Any, method: str) -> tracing.RpcSpan:
    service, _, name = method.lstrip("/").partition("/")
    request_id = _request_id(details)
    attributes = {"grpc.request_id": request_id} if request_id else {}
    return tracing.RpcSpan(service, name, server=False, current=False, attributes=attributes)


class ObservingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, target_name: str = "nico-core-api", on_call: CallHook | None = None):
        self._target = target_name
        self._on_call = on_call

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        method = _method_name(client_call_details)
        span = _span(client_call_details, method) if tracing.enabled() else None
        start = time.monotonic()
        call = await continuation(client_call_details, request)
        error = ""
        try:
            # Completes the RPC; the caller awaits the same call object again and
            # sees the same response or error.
            await call
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code, error = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            self._record(client_call_details, method, grpc.StatusCode.CANCELLED, start, "", span)
            raise
        self._record(client_call_details, method, code, start, error, span)
        return call

    def _record(
        self,
        details: Any,
        method: str,
        code: grpc.StatusCode,
        start: float,
        error: str,
        span: tracing.RpcSpan | None = None,
    ) -> None:
        elapsed = time.monotonic() - start
        if span is not None:
            span.finish(code.name, code.value[0], error)
        log.log(
            level_for(code),
            "grpc client call",
            extra={
                "grpc.target": self._target,
                "grpc.method": method,
                "grpc.code": code.name,
                "grpc.duration_ms": round(elapsed * 1000, 3),
                "grpc.request_id": _request_id(details),
                "grpc.error": error,
            },
        )
        if self._on_call is not None:
            try:
                self._on_call(method, code, elapsed)
            except Exception:  # a metrics hook must never break a call
                log.exception("on_call hook failed")
