"""Prometheus metrics of the operator, on their own registry and port.

Counts that are cheap to derive from memory (Tasks by phase, queue depth)
are computed at scrape time instead of being updated on every event."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nicoflow.domain.types import TaskPhase

REGISTRY = CollectorRegistry()
# in the message of a Task held by the operator-wide limit
LIMIT_HOLD = "--max-racks-in-flight"

RECONCILES = PromCounter(
    "nicoflow_reconciles_total",
    "Handled watch events and reconciliations, by kind.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = PromCounter(
    "nicoflow_reconcile_errors_total",
    "Reconciliations that raised, by kind.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "nicoflow_reconcile_duration_seconds",
    "Time spent in a handler, by kind.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
STAGE_SECONDS = Histogram(
    "nicoflow_stage_duration_seconds",
    "Duration of finished stages, by operation and outcome.",
    ["operation", "phase"],
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
TASKS_FINISHED = PromCounter(
    "nicoflow_tasks_finished_total",
    "Tasks that reached a final phase, by operation and phase.",
    ["operation", "phase"],
    registry=REGISTRY,
)
CORE_SECONDS = Histogram(
    "nicoflow_core_rpc_duration_seconds",
    "NICo Core calls, by method and gRPC code.",
    ["method", "code"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60),
)
CORE_ERRORS = PromCounter(
    "nicoflow_core_rpc_errors_total",
    "NICo Core calls that did not return OK, by method and code.",
    ["method", "code"],
    registry=REGISTRY,
)


CORE_THROTTLED = PromCounter(
    "nicoflow_core_throttled_seconds_total",
    "Time calls waited for the operator's NICo Core call rate limit (--core-calls-per-second).",
    registry=REGISTRY,
)
CORE_THROTTLED_CALLS = PromCounter(
    "nicoflow_core_throttled_calls_total",
    "Calls that waited for the NICo Core call rate limit.",
    registry=REGISTRY,
)


def observe_core_throttle(seconds: float) -> None:
    CORE_THROTTLED.inc(seconds)
    CORE_THROTTLED_CALLS.inc()


def observe_core_call(method: str, code: object, seconds: float) -> None:
    """Hook for the Core client's interceptor (code: a grpc.StatusCode)."""
    short = method.rsplit("/", 1)[-1]
    name = str(getattr(code, "name", code))
    CORE_SECONDS.labels(short, name).observe(seconds)
    if name != "OK":
        CORE_ERRORS.labels(short, name).inc()


P = ParamSpec("P")
R = TypeVar("R")


def timed(kind: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Count and time an async handler under `kind`."""

    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            RECONCILES.labels(kind).inc()
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            except Exception:
                RECONCILE_ERRORS.labels(kind).inc()
                raise
            finally:
                RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)

        return inner

    return wrap


class TaskCollector(Collector):
    """Tasks by phase and the waiting queue per rack, from the TaskManager."""

    def __init__(self, entries: Callable[[], Iterable[Any]]) -> None:
        self._entries = entries

    def collect(self) -> Iterable[GaugeMetricFamily]:
        phases: Counter[str] = Counter()
        queues: Counter[str] = Counter()
        held = 0
        reasons: Counter[tuple[str, str]] = Counter()
        for entry in self._entries():
            phases[entry.phase.value] += 1
            if entry.phase is TaskPhase.WAITING:
                queues[entry.rack] += 1
            elif entry.phase is TaskPhase.PENDING:
                status = entry.body.get("status") or {}
                if LIMIT_HOLD in str(status.get("message") or ""):
                    held += 1
                reasons.update(_hold_reason(status))
        by_phase = GaugeMetricFamily(
            "nicoflow_tasks", "Tasks the operator knows, by phase.", labels=["phase"]
        )
        for phase in TaskPhase:
            by_phase.add_metric([phase.value], phases.get(phase.value, 0))
        yield by_phase
        queue = GaugeMetricFamily(
            "nicoflow_rack_queue_depth",
            "Tasks waiting behind a conflict, per rack.",
            labels=["rack"],
        )
        for rack, depth in sorted(queues.items()):
            queue.add_metric([rack], depth)
        yield queue
        throttled = GaugeMetricFamily(
            "nicoflow_tasks_held_by_limit",
            "Tasks not started because the operator's racks-in-flight limit is reached.",
        )
        throttled.add_metric([], held)
        yield throttled
        by_reason = GaugeMetricFamily(
            "nicoflow_tasks_held",
            "Pending Tasks the operator holds back, by reason (the Held condition) and whether "
            "they need a person (Progressing=False, reason Stuck).",
            labels=["reason", "stuck"],
        )
        for (reason, stuck), count in sorted(reasons.items()):
            by_reason.add_metric([reason, stuck], count)
        yield by_reason


def _hold_reason(status: dict[str, Any]) -> list[tuple[str, str]]:
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    held = conditions.get("Held") or {}
    if held.get("status") != "True":
        return []
    stuck = (conditions.get("Progressing") or {}).get("reason") == "Stuck"
    return [(str(held.get("reason")), "true" if stuck else "false")]


def serve(port: int, entries: Callable[[], Iterable[Any]]) -> int:
    """Start the /metrics endpoint (a daemon thread); returns the bound port."""
    REGISTRY.register(TaskCollector(entries))
    server, _thread = start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
    bound: int = server.server_port
    return bound
