"""Trace spans of the Tasks this operator runs (only when tracing is on).

Per Task one trace, its id the Task's UID: a span for the run (from the moment
this process drives it) and beneath it a span per stage, with the stage's own
start and finish times from the Task status. Core calls made for a stage run
with its span current, so the Core client's spans become its children.

The TaskManager reports each engine decision to `observe` and runs each Core
call through `within`; with tracing off both return at once."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nicoflow import tracing
from nicoflow.api.taskstatus import ItemPhase, StageStatus, TaskStatus
from nicoflow.domain.types import TaskPhase
from nicoflow.engine.task import Decision

if TYPE_CHECKING:
    from opentelemetry.trace import Span

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, name)


@dataclass
class _Open:
    task: Span
    attributes: dict[str, Any]
    stages: dict[int, Span] = field(default_factory=dict)


def _ns(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1e9)


class StageSpans:
    def __init__(self) -> None:
        self._open: dict[Key, _Open] = {}

    def observe(
        self, key: Key, body: dict[str, Any], operation: str, before: TaskStatus, d: Decision
    ) -> None:
        """Open and close spans for what changed between `before` and `d.status`."""
        if not tracing.enabled() or before.phase.finished:
            return
        run = self._open.get(key) or self._start_task(key, body, operation, d.status)
        done_before = {s.number for s in before.stages if s.phase.finished}
        for stage in d.status.stages:
            if stage.number in done_before:
                continue
            if stage.phase is ItemPhase.RUNNING or stage.phase.finished:
                span = run.stages.get(stage.number) or self._start_stage(run, stage)
                if stage.phase.finished:
                    self._end_stage(span, stage)
                    del run.stages[stage.number]
        if d.finished:
            self._end_task(key, run, d.status)

    def within(self, key: Key, stage: int, call: Awaitable[T]) -> Awaitable[T]:
        """`call`, run with the stage's span current (unchanged when there is none)."""
        run = self._open.get(key)
        span = run.stages.get(stage) if run is not None else None
        if span is None:
            return call
        return _under(span, call)

    def forget(self, key: Key) -> None:
        """The Task was deleted while it ran: end its spans, keep nothing."""
        run = self._open.pop(key, None)
        if run is None:
            return
        for span in run.stages.values():
            span.set_attribute("outcome", "Deleted")
            span.end()
        run.task.set_attribute("outcome", "Deleted")
        run.task.end()

    def _start_task(
        self, key: Key, body: dict[str, Any], operation: str, status: TaskStatus
    ) -> _Open:
        from opentelemetry import context

        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        attributes: dict[str, Any] = {
            "task": key[1],
            "namespace": key[0],
            "taskspec": str(spec.get("taskSpecName", "")),
            "rack": str(spec.get("rack", "")),
            "operation": operation,
        }
        uid = str(meta.get("uid") or "")
        with tracing.trace_id_from(uid) if uid else contextlib.nullcontext():
            span = tracing.tracer().start_span(
                f"task {operation}",
                context=context.Context(),  # a root: the trace is the Task's
                attributes={**attributes, "task.uid": uid},
                start_time=_ns(status.start_time),
            )
        run = self._open[key] = _Open(span, attributes)
        return run

    def _start_stage(self, run: _Open, stage: StageStatus) -> Span:
        from opentelemetry import trace

        span = tracing.tracer().start_span(
            f"stage {stage.number}",
            context=trace.set_span_in_context(run.task),
            attributes={**run.attributes, "stage": stage.number},
            start_time=_ns(stage.started_at or stage.finished_at),
        )
        run.stages[stage.number] = span
        return span

    def _end_stage(self, span: Span, stage: StageStatus) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("outcome", stage.phase.value)
        if stage.phase is ItemPhase.FAILED:
            span.set_status(Status(StatusCode.ERROR, stage.error[:512]))
        span.end(end_time=_ns(stage.finished_at))

    def _end_task(self, key: Key, run: _Open, status: TaskStatus) -> None:
        from opentelemetry.trace import Status, StatusCode

        for span in run.stages.values():  # stages the run left unfinished
            span.set_attribute("outcome", status.phase.value)
            span.end()
        run.task.set_attribute("outcome", status.phase.value)
        if status.phase is TaskPhase.FAILED:
            run.task.set_status(Status(StatusCode.ERROR, status.message[:512]))
        run.task.end(end_time=_ns(status.completion_time))
        del self._open[key]


async def _under(span: Span, call: Awaitable[T]) -> T:
    from opentelemetry import trace

    with trace.use_span(
        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    ):
        return await call


SPANS = StageSpans()
