"""Task: one rack's run of a TaskSpec (namespaced, owned by its TaskSpec, like a
Job's Pod).

The spec is a snapshot taken when the Task is created — the resolved
components per type and the rule — and never changes afterwards, except for a
cancel request. The status is the durable state of the run, modelled next to
the engine that writes it (nicoflow.api.taskstatus)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from nicoflow.api.admission import REQUESTER_MAX
from nicoflow.api.common import (
    AGE_COLUMN,
    DESCRIPTION_MAX,
    NAME_MAX,
    CrdInfo,
    CrdModel,
    LabelName,
    Message,
    ObjectName,
    PrinterColumn,
    cel,
    validations,
)
from nicoflow.api.rack import MAC_PATTERN, MAX_COMPONENTS
from nicoflow.api.task_spec import (
    DEFAULT_QUEUE_TIMEOUT_SECONDS,
    MAX_QUEUE_TIMEOUT_SECONDS,
    TaskOptions,
)
from nicoflow.api.taskstatus import TaskStatus
from nicoflow.domain.rules import RuleDefinition, RuleSource
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode


class ComponentRef(CrdModel):
    """A component as resolved from the rack's inventory."""

    name: LabelName
    serial: str | None = Field(None, max_length=128)
    core_id: str | None = Field(None, max_length=128, description="Used in every Core call.")
    bmc_mac_address: str | None = Field(
        None,
        pattern=MAC_PATTERN,
        max_length=17,
        description="The component's own BMC: how NICo Core knows a component that has no "
        "Core id yet (ingest).",
    )


class ComponentGroup(CrdModel):
    """The targeted components of one type."""

    type: ComponentType
    ids: list[ComponentRef] = Field(
        min_length=1,
        max_length=MAX_COMPONENTS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class RuleSnapshot(CrdModel):
    """The rule as it was when the Task was created, and why it was chosen; later rule
    edits do not affect the Task."""

    name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        description="OperationRule name, or builtin-<operation> for a built-in rule.",
    )
    source: RuleSource
    reason: Message | None = None
    definition: RuleDefinition


_IMMUTABLE = (
    "self.taskSpecName == oldSelf.taskSpecName && self.rack == oldSelf.rack && "
    "self.operation == oldSelf.operation && self.components == oldSelf.components && "
    "self.rule == oldSelf.rule && self.conflictStrategy == oldSelf.conflictStrategy && "
    "self.queueTimeoutSeconds == oldSelf.queueTimeoutSeconds && "
    "has(self.options) == has(oldSelf.options) && "
    "(!has(self.options) || self.options == oldSelf.options) && "
    "has(self.description) == has(oldSelf.description) && "
    "(!has(self.description) || self.description == oldSelf.description) && "
    "has(self.requestedBy) == has(oldSelf.requestedBy) && "
    "(!has(self.requestedBy) || self.requestedBy == oldSelf.requestedBy)"
)


class TaskRunSpec(CrdModel):
    """What one rack's run does: fixed at creation, except `cancel`."""

    task_spec_name: ObjectName = Field(description="The TaskSpec this Task belongs to.")
    rack: LabelName = Field(description="The Rack operated on.")
    operation: OperationCode
    description: str | None = Field(
        None,
        max_length=DESCRIPTION_MAX,
        description="The TaskSpec's description when the Task was made (kept with its history).",
    )
    options: TaskOptions | None = None
    components: list[ComponentGroup] = Field(
        min_length=1,
        max_length=len(ComponentType),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    rule: RuleSnapshot
    conflict_strategy: ConflictStrategy = ConflictStrategy.REJECT
    queue_timeout_seconds: int = Field(
        DEFAULT_QUEUE_TIMEOUT_SECONDS, ge=1, le=MAX_QUEUE_TIMEOUT_SECONDS
    )
    requested_by: str | None = Field(
        None,
        max_length=REQUESTER_MAX,
        description="Who asked for the run: the TaskSpec's requester when the operator "
        "created the Task.",
    )
    cancel: bool = Field(
        False,
        description="Request cancellation; the running step is stopped and no further "
        "stage starts. Cannot be undone.",
        json_schema_extra=validations(
            cel("!oldSelf || self", "cancel cannot be unset once true; cancellation is final")
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _IMMUTABLE,
                "a Task's spec is immutable except spec.cancel; to change what runs, create a "
                "new TaskSpec",
            )
        )
    )


CRD = CrdInfo(
    kind="Task",
    plural="tasks",
    singular="task",
    scope="Namespaced",
    spec=TaskRunSpec,
    status=TaskStatus,
    description="One rack's run of a TaskSpec: stages of steps driving the rack's components "
    "through NICo Core.",
    short_names=("ftask", "ftasks"),
    printer_columns=(
        PrinterColumn("Rack", "string", ".spec.rack"),
        PrinterColumn("Operation", "string", ".spec.operation"),
        PrinterColumn("Phase", "string", ".status.phase"),
        PrinterColumn("Stage", "integer", ".status.currentStage"),
        AGE_COLUMN,
        PrinterColumn("Stages", "integer", ".status.stageCount", priority=1),
        PrinterColumn("TaskSpec", "string", ".spec.taskSpecName", priority=1),
        PrinterColumn("Requested-By", "string", ".spec.requestedBy", priority=1),
        PrinterColumn("Message", "string", ".status.message", priority=1),
    ),
)
