"""Errors the API answers with, and how unexpected failures become gRPC codes.

Handlers raise `ServiceError` subclasses with a message a person can act on;
the RPC wrapper turns them into status codes. Anything else is classified
here: an unreachable database or apiserver is UNAVAILABLE (the caller may
retry), a value PostgreSQL refuses to store is INVALID_ARGUMENT, everything
unforeseen is INTERNAL. Bad input is never UNKNOWN."""

from __future__ import annotations

import logging

import grpc
import httpx
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from nicoflow.kube.client import ApiError

# The message travels as the grpc-message header, percent-encoded; clients
# drop a reply whose headers pass 8 KiB (they see RESOURCE_EXHAUSTED instead of
# our code), and a message quoting a hostile 10 kB input would. Bound what we
# send by its encoded size.
MESSAGE_BUDGET = 2048


def _encoded_size(char: str) -> int:
    return 1 if " " <= char <= "~" and char != "%" else 3 * len(char.encode("utf-8", "replace"))


def bounded(message: str, budget: int = MESSAGE_BUDGET) -> str:
    """`message`, with its middle cut when it would not fit the header budget;
    the head (what is wrong) and the tail (how to fix it) stay."""
    if len(message) * 12 <= budget or sum(map(_encoded_size, message)) <= budget:
        return message
    marker = " [...] "
    head_budget, tail_budget = budget * 3 // 5, budget * 2 // 5 - len(marker)
    head = _prefix(message, head_budget)
    tail = _prefix(message[::-1], tail_budget)[::-1]
    return f"{head}{marker}{tail}"


def _prefix(text: str, budget: int) -> str:
    used = 0
    for i, char in enumerate(text):
        used += _encoded_size(char)
        if used > budget:
            return text[:i]
    return text


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


def classify(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """Code and message for infrastructure failures; None for real bugs."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return grpc.StatusCode.UNAVAILABLE, "the inventory database is unreachable; retry later"
    if isinstance(exc, DataError):
        # PostgreSQL refused a value the request carried (a NUL character, a
        # number out of range for its column): the caller's to fix
        detail = str(exc.orig or exc).strip().splitlines()[0]
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            bounded(f"the request holds a value the inventory cannot store: {detail}"),
        )
    if isinstance(exc, httpx.TransportError):
        return grpc.StatusCode.UNAVAILABLE, "the Kubernetes API is unreachable; retry later"
    if isinstance(exc, ApiError) and (exc.status >= 500 or exc.status == 429):
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"the Kubernetes API is unavailable ({exc.status} {exc.reason}); retry later",
        )
    if isinstance(exc, ApiError) and exc.status in (401, 403):
        return (
            grpc.StatusCode.INTERNAL,
            "the Flow API server is not allowed to do this in Kubernetes "
            f"({exc.status} {exc.reason}); check its service account's RBAC",
        )
    if isinstance(exc, ConnectionError | TimeoutError):
        return grpc.StatusCode.UNAVAILABLE, f"a backend is unreachable ({exc}); retry later"
    return None


# Level of the per-RPC log line by outcome: what callers cause is info,
# transient trouble a warning, the rest an error.
_INFO = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
_WARN = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def level_for(code: grpc.StatusCode) -> int:
    if code in _INFO:
        return logging.INFO
    if code in _WARN:
        return logging.WARNING
    return logging.ERROR
