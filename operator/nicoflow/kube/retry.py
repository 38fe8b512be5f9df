"""Retry Kubernetes calls the apiserver refused without acting on them.

429 (too many requests, or a resource's storage still initialising right
after its CRD was established) and 503 mean "not processed, come back": a
short retry turns a blip into a slower answer instead of an UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nicoflow.kube.client import ApiError

T = TypeVar("T")

DELAYS = (0.2, 0.5, 1.0, 2.0)
_RETRYABLE = frozenset({429, 503})


async def retrying(call: Callable[[], Awaitable[T]], delays: tuple[float, ...] = DELAYS) -> T:
    for delay in delays:
        try:
            return await call()
        except ApiError as exc:
            if exc.status not in _RETRYABLE:
                raise
        await asyncio.sleep(delay)
    return await call()
