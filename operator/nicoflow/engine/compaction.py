"""Keep a Task's status small: finished steps hand their per-component results
to the task archive and keep only the components that failed (and, in the
Task's `commanded` list, the names of those that received a command).

A 72-component restart otherwise carries every component's result for every
stage in its status, and every status write makes the apiserver decode,
validate and encode all of it. The host archives first and compacts only once
the archive has the results, so nothing is ever lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nicoflow.api.taskstatus import ItemPhase, TaskStatus
from nicoflow.domain.types import ComponentType


@dataclass(frozen=True)
class ComponentRecord:
    """One component's result in one step, as the archive keeps it."""

    stage: int
    component_type: ComponentType
    id: str
    name: str
    phase: ItemPhase
    attempts: int
    commanded: bool
    error: str
    finished_at: datetime | None


def to_archive(status: TaskStatus) -> list[ComponentRecord]:
    """Results of finished steps that are not in the archive yet."""
    return [
        ComponentRecord(
            stage=stage.number,
            component_type=step.component_type,
            id=c.id,
            name=c.name,
            phase=c.phase,
            attempts=c.attempts,
            commanded=c.commanded,
            error=c.error,
            finished_at=step.finished_at,
        )
        for stage in status.stages
        for step in stage.steps
        if step.phase.finished and not step.archived
        for c in step.components
    ]


def compact(status: TaskStatus) -> None:
    """Drop what to_archive returned (the archive has it now): finished steps
    keep their counts, their error and the components that failed."""
    for stage in status.stages:
        for step in stage.steps:
            if not step.phase.finished or step.archived:
                continue
            # who was touched stays on the Task: a person stopping it needs that list
            touched = {c.name or c.id for c in step.components if c.commanded}
            status.commanded = sorted(set(status.commanded) | touched)[:256]
            step.components = [c for c in step.components if c.phase is ItemPhase.FAILED]
            step.archived = True
