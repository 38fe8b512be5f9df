"""One structured log line, metrics and a trace span per RPC, authorization,
and the last word on status codes.

Wraps every unary handler of the server: calls to the authorized service
(v1.Flow) need the role nicoflow.service.authz names, else PERMISSION_DENIED
saying which role (logged and counted); a ServiceError becomes its code and
message, an unreachable backend UNAVAILABLE, and any other exception INTERNAL
with a short message (the traceback goes to the log, not to the caller).
Streaming handlers (health Watch, reflection) pass through untouched."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from nicoflow import tracing
from nicoflow.service.authz import CALLER, Authorizer, identity_from
from nicoflow.service.errors import classify, level_for
from nicoflow.service.metrics import ApiMetrics

log = logging.getLogger("nicoflow.service.rpc")

# Probes call these every few seconds; their log lines would drown the rest.
_QUIET_SERVICES = frozenset({"grpc.health.v1.Health"})


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class RpcInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        metrics: ApiMetrics | None = None,
        authorizer: Authorizer | None = None,
        authorized_service: str = "v1.Flow",
    ) -> None:
        self._metrics = metrics
        self._authorizer = authorizer
        self._authorized_service = authorized_service

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        service, name = _split(str(method))
        inner = handler.unary_unary
        metrics = self._metrics
        authorizer = self._authorizer if service == self._authorized_service else None

        async def behavior(request: Any, context: Any) -> Any:
            start = time.monotonic()
            code = grpc.StatusCode.OK
            error = ""
            identity = identity_from(context.auth_context() or {})
            who = identity.display if identity is not None else ""
            caller = CALLER.set(who or None)
            if metrics is not None:
                metrics.started(service, name)
            span = (
                tracing.RpcSpan(service, name, server=True, carrier=_carrier(context))
                if tracing.enabled()
                else None
            )
            try:
                if authorizer is not None:
                    decision = authorizer.decide(name, identity)
                    if not decision.allowed:
                        _denied(service, name, decision.identity, decision.needed.label, metrics)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.message)
                return await inner(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                # the handler aborted by itself: keep its status
                code = _context_code(context)
                error = _context_details(context)
                raise
            except Exception as exc:
                found = classify(exc)
                if found is None:
                    code = grpc.StatusCode.INTERNAL
                    error = f"internal error in {name}; the server log has the details"
                    log.exception("unexpected error in %s/%s", service, name)
                else:
                    code, error = found
                    if code == grpc.StatusCode.UNAVAILABLE:
                        log.warning("%s/%s: backend unavailable: %r", service, name, exc)
                await context.abort(code, error)
            finally:
                CALLER.reset(caller)
                elapsed = time.monotonic() - start
                if metrics is not None:
                    metrics.handled(service, name, code, elapsed)
                if span is not None:
                    span.finish(code.name, code.value[0], error)
                duration = elapsed * 1000.0
                level = logging.DEBUG if service in _QUIET_SERVICES else level_for(code)
                log.log(
                    level,
                    "flow rpc handled",
                    extra={
                        "grpc.service": service,
                        "grpc.method": name,
                        "grpc.code": code.name,
                        "grpc.duration_ms": round(duration, 3),
                        "grpc.peer": context.peer(),
                        "grpc.identity": who,
                        "grpc.error": error,
                    },
                )

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _denied(
    service: str, method: str, identity: str, needed: str, metrics: ApiMetrics | None
) -> None:
    if metrics is not None:
        metrics.denied(service, method, needed)
    log.warning(
        "flow rpc denied: %s needs role %s",
        method,
        needed,
        extra={
            "grpc.service": service,
            "grpc.method": method,
            "grpc.identity": identity,
            "flow.role_needed": needed,
        },
    )


def _carrier(context: Any) -> dict[str, str]:
    """Text metadata of the call, where a caller's trace context would be."""
    return {str(k): str(v) for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def _context_code(context: Any) -> grpc.StatusCode:
    code = getattr(context, "code", lambda: None)()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _context_details(context: Any) -> str:
    details = getattr(context, "details", lambda: "")()
    return details.decode() if isinstance(details, bytes) else str(details or "")
