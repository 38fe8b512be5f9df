"""Task.status: the durable workflow state of one rack's run.

The task engine reads and writes exactly these models, and the CRD schema is
rendered from them, so what the operator persists is what the apiserver keeps.
Every list and string is bounded: status must stay small (one object per rack)
and the CRD's CEL cost budget needs the bounds."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from nicoflow.domain.types import ComponentType, Leftover, TaskPhase

MAX_ERROR = 512
MAX_COMPONENTS_PER_STEP = 128
MAX_STAGES = 64
MAX_STEPS_PER_STAGE = 8

CoreId = Annotated[str, Field(max_length=128)]


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ItemPhase(StrEnum):
    """Phase of a stage, a step or one component within a step."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self not in (ItemPhase.PENDING, ItemPhase.RUNNING)


class Intent(_Status):
    """A state-changing Core call about to be made, written before the call.

    After a restart the engine finds it and asks Core whether the call landed
    before deciding to send it again."""

    key: str = Field(max_length=253, description="Idempotency key sent as x-request-id.")
    action: str = Field(
        max_length=64, description="Action and operation, e.g. PowerControl/power_off."
    )
    component_ids: list[CoreId] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS_PER_STEP,
        description="Core ids the call names.",
    )
    issued_at: datetime
    unknown_since: datetime | None = Field(
        None,
        description="Since when the call's outcome for component_ids is unknown (its reply "
        "was lost, or the operator restarted): Core's state is read until it shows whether the "
        "call landed, and only what provably did not land is sent again.",
    )
    lost_error: str = Field(
        "", max_length=MAX_ERROR, description="The error that hid the call's outcome."
    )
    lost_transient: bool = Field(
        False, description="Core reported itself unavailable or overloaded, not a failure."
    )


class ComponentResult(_Status):
    id: str = Field(max_length=128, description="Core id of the component.")
    name: str = Field("", max_length=128)
    phase: ItemPhase = ItemPhase.PENDING
    attempts: int = Field(0, ge=0)
    commanded: bool = Field(False, description="A state-changing call for it was sent.")
    error: str = Field("", max_length=MAX_ERROR)


class StepStatus(_Status):
    component_type: ComponentType
    phase: ItemPhase = ItemPhase.PENDING
    total: int = Field(0, ge=0)
    succeeded: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    batch: int = Field(0, ge=0, description="Index of the batch in progress (maxParallel).")
    batches: int = Field(0, ge=0)
    action: int = Field(0, ge=0, description="Index of the action in progress (pre, main, post).")
    action_name: str = Field("", max_length=64)
    attempt: int = Field(1, ge=1, description="Attempt of the action in progress.")
    started_at: datetime | None = None
    batch_started_at: datetime | None = None
    action_started_at: datetime | None = None
    main_issued_at: datetime | None = Field(
        None, description="When the batch's PowerControl went out (graceful→forced escalation)."
    )
    escalated: bool = False
    next_at: datetime | None = Field(None, description="Not before: sleep, poll or retry delay.")
    polls: int = Field(0, ge=0, description="Status reads made by the polling action.")
    transient_retries: int = Field(
        0,
        ge=0,
        description="Commands re-sent because NICo Core could not take them (unavailable, "
        "overloaded); these do not use up the step's retry attempts.",
    )
    issued: list[CoreId] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS_PER_STEP,
        description="Core ids the action in progress has commanded (state-changing actions).",
    )
    done: list[CoreId] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS_PER_STEP,
        description="Core ids that finished the action in progress.",
    )
    settled: list[CoreId] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS_PER_STEP,
        description="Core ids seen at rest (not powering on or off) before the power command "
        "in progress, when an earlier command of the Task may still have been under way.",
    )
    finished_at: datetime | None = None
    intent: Intent | None = None
    error: str = Field("", max_length=MAX_ERROR)
    components: list[ComponentResult] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS_PER_STEP,
        description="Per-component results while the step runs; once it has finished and "
        "its results are in the task archive, only the failed components stay.",
    )
    archived: bool = Field(
        False, description="The finished step's per-component results are in the task archive."
    )


class StageStatus(_Status):
    number: int = Field(ge=1)
    phase: ItemPhase = ItemPhase.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = Field("", max_length=MAX_ERROR)
    steps: list[StepStatus] = Field(default_factory=list, max_length=MAX_STEPS_PER_STAGE)


class Release(_Status):
    id: CoreId
    leftover: Leftover


class AppliedRule(_Status):
    name: str = Field(max_length=253)
    source: str = Field(max_length=32, description="explicit, selector, default or builtin.")
    reason: str = Field("", max_length=MAX_ERROR)


class Condition(_Status):
    """metav1.Condition."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(None, ge=0)
    last_transition_time: datetime
    reason: str = Field(max_length=1024, pattern="^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field("", max_length=32768)


class TaskStatus(_Status):
    phase: TaskPhase = TaskPhase.PENDING
    message: str = Field("", max_length=MAX_ERROR)
    observed_generation: int | None = Field(None, ge=0)
    queued_at: datetime | None = None
    queue_expires_at: datetime | None = None
    queue_position: int | None = Field(None, ge=0)
    start_time: datetime | None = None
    completion_time: datetime | None = None
    current_stage: int | None = Field(None, ge=0, description="Stage number in progress.")
    stage_count: int | None = Field(None, ge=0)
    applied_rule: AppliedRule | None = None
    stages: list[StageStatus] = Field(default_factory=list, max_length=MAX_STAGES)
    commanded: list[CoreId] = Field(
        default_factory=list,
        max_length=256,
        description="Components that received a state-changing call: those of finished "
        "steps as the steps finish, all of them when the Task is cancelled.",
    )
    releases: list[Release] = Field(
        default_factory=list,
        max_length=256,
        description="What the Task's commands left in NICo Core that is not taken away yet "
        "(a maintenance override that silences a tray's alerts, the report that keeps tenants "
        "off a host during a DPU update); the operator keeps trying, even after the Task "
        "finished.",
    )
    release_attempts: int = Field(0, ge=0)
    release_at: datetime | None = Field(None, description="Next attempt to remove them.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
