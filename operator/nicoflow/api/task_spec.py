"""TaskSpec: one request to run an operation on a set of racks (namespaced,
like a Job). The operator resolves the targets to racks and creates one Task
per rack; status counts those Tasks.

What to run (operation, options, targets, rule, conflict handling) is fixed
at creation; how the rollout proceeds (suspend, cancel, parallelism, failure
budget, cleanup) may change while it runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from nicoflow.api.admission import REQUESTER_MAX
from nicoflow.api.common import (
    AGE_COLUMN,
    DESCRIPTION_MAX,
    MESSAGE_MAX,
    Conditions,
    CrdInfo,
    CrdModel,
    LabelName,
    LabelSelector,
    LocalObjectReference,
    Message,
    ObjectName,
    PrinterColumn,
    Timestamp,
    cel,
    validations,
)
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode, TaskPhase

FIRMWARE_CODES = (OperationCode.UPGRADE, OperationCode.DOWNGRADE, OperationCode.ROLLBACK)
DEFAULT_QUEUE_TIMEOUT_SECONDS = 3600
MAX_QUEUE_TIMEOUT_SECONDS = 86400
MAX_RACK_TARGETS = 4096
MAX_COMPONENT_TARGETS = 1024
MAX_TASKS_LISTED = 4096

SubTarget = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]


class FirmwareWindow(CrdModel):
    """When compute firmware may be applied (honoured by the legacy compute manager)."""

    start_time: Timestamp
    end_time: Timestamp

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.startTime < self.endTime", "firmwareWindow.startTime must be before endTime")
        )
    )

    @model_validator(mode="after")
    def _ordered(self) -> FirmwareWindow:
        if self.start_time >= self.end_time:
            raise ValueError("firmwareWindow.startTime must be before endTime")
        return self


class TaskOptions(CrdModel):
    """Operation options."""

    target_version: str | None = Field(
        None,
        max_length=4096,
        description="Firmware version to reach: a version string, or a JSON object with one "
        "entry per component type (compute, nvswitch, powershelf). Empty: the desired version "
        "known to NICo Core.",
    )
    sub_targets: list[SubTarget] | None = Field(
        None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Firmware parts to update, e.g. bmc, bios, cpld, nvos, pmc, psu, dpu. "
        "Empty: the whole bundle.",
    )
    firmware_window: FirmwareWindow | None = None
    override_readiness_check: bool = Field(
        False,
        description="Skip waiting for components to be free of tenant work before disruptive "
        "operations.",
    )


_ONE_IDENTIFIER = (
    "[has(self.id), has(self.coreId), has(self.serial), has(self.name)].filter(x, x).size() == 1"
)


class ComponentTarget(CrdModel):
    """One component, named by exactly one of id, coreId, serial or name."""

    id: str | None = Field(None, max_length=64, description="Flow inventory UUID.")
    core_id: str | None = Field(None, max_length=128, description="NICo Core's ID; needs type.")
    serial: str | None = Field(None, max_length=128, description="Serial number.")
    name: LabelName | None = Field(None, description="Component name; needs rack.")
    rack: LabelName | None = Field(None, description="Rack of a component named by name.")
    type: ComponentType | None = None

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _ONE_IDENTIFIER,
                "name a component by exactly one of id, coreId, serial or name",
            ),
            cel(
                "!has(self.name) || has(self.rack)",
                "a component named by name must also set rack (names are unique only within "
                "a rack)",
            ),
            cel(
                "!has(self.coreId) || has(self.type)",
                "a component named by coreId must also set type (Core IDs are per type)",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> ComponentTarget:
        given = [x for x in (self.id, self.core_id, self.serial, self.name) if x is not None]
        if len(given) != 1:
            raise ValueError("name a component by exactly one of id, coreId, serial or name")
        if self.name is not None and self.rack is None:
            raise ValueError("a component named by name must also set rack")
        if self.core_id is not None and self.type is None:
            raise ValueError("a component named by coreId must also set type")
        return self


_HAS_TARGET = (
    "(has(self.racks) && size(self.racks) > 0) || has(self.rackSelector) || "
    "(has(self.nvlDomains) && size(self.nvlDomains) > 0) || "
    "(has(self.components) && size(self.components) > 0) || "
    "(has(self.allRacks) && self.allRacks)"
)
_NO_TARGET = (
    "targets must name at least one of racks, rackSelector, nvlDomains, components or "
    "allRacks: true"
)
# An empty rackSelector selects every rack in the fleet: it must be meant.
_EMPTY_SELECTOR_MEANT = (
    "!has(self.rackSelector) || "
    "(has(self.rackSelector.matchLabels) && size(self.rackSelector.matchLabels) > 0) || "
    "(has(self.rackSelector.matchExpressions) && size(self.rackSelector.matchExpressions) > 0) || "
    "(has(self.allRacks) && self.allRacks)"
)
EMPTY_SELECTOR_MESSAGE = (
    "rackSelector {} selects every rack: narrow it with matchLabels or matchExpressions, "
    "or set targets.allRacks: true to operate on the whole fleet"
)


class TaskTargets(CrdModel):
    """What to operate on. Racks named, selected by label or by NVL domain are
    united; componentTypes narrows them to some component types; components adds
    single components (their racks are found from the inventory)."""

    racks: list[LabelName] | None = Field(
        None, max_length=MAX_RACK_TARGETS, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    rack_selector: LabelSelector | None = None
    nvl_domains: list[LabelName] | None = Field(
        None, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    component_types: list[ComponentType] | None = Field(
        None,
        max_length=len(ComponentType),
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Only these component types of the selected racks; empty: all.",
    )
    components: list[ComponentTarget] | None = Field(None, max_length=MAX_COMPONENT_TARGETS)
    all_racks: bool | None = Field(
        None,
        description="Every rack in the inventory. Required to mean it when rackSelector is "
        "empty ({}), which would select every rack too.",
    )
    exclude_racks: list[LabelName] | None = Field(
        None,
        max_length=MAX_RACK_TARGETS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Racks left out, whatever else selects them (a TaskSchedule with overlap "
        "policy Skip lists the racks still busy with its previous run).",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(_HAS_TARGET, _NO_TARGET), cel(_EMPTY_SELECTOR_MEANT, EMPTY_SELECTOR_MESSAGE)
        )
    )

    @model_validator(mode="after")
    def _check(self) -> TaskTargets:
        if not (
            self.racks
            or self.rack_selector
            or self.nvl_domains
            or self.components
            or self.all_racks
        ):
            raise ValueError(_NO_TARGET)
        selector = self.rack_selector
        if (
            selector is not None
            and not selector.match_labels
            and not selector.match_expressions
            and not self.all_racks
        ):
            raise ValueError(EMPTY_SELECTOR_MESSAGE)
        return self


_FIRMWARE = ", ".join(f"'{c.value}'" for c in FIRMWARE_CODES)
_IMMUTABLE = (
    "self.operation == oldSelf.operation && self.targets == oldSelf.targets && "
    "self.conflictStrategy == oldSelf.conflictStrategy && "
    "self.queueTimeoutSeconds == oldSelf.queueTimeoutSeconds && "
    "has(self.options) == has(oldSelf.options) && "
    "(!has(self.options) || self.options == oldSelf.options) && "
    "has(self.ruleRef) == has(oldSelf.ruleRef) && "
    "(!has(self.ruleRef) || self.ruleRef == oldSelf.ruleRef)"
)
IMMUTABLE_MESSAGE = (
    "operation, options, targets, ruleRef, conflictStrategy and queueTimeoutSeconds cannot "
    "change after creation (create a new TaskSpec); description, suspend, cancel, "
    "maxParallelRacks, maxFailedRacks and ttlSecondsAfterFinished can"
)


class TaskSpecSpec(CrdModel):
    """A request: run `operation` on `targets`."""

    operation: OperationCode
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    options: TaskOptions | None = None
    targets: TaskTargets
    rule_ref: LocalObjectReference | None = Field(
        None, description="OperationRule to use instead of the resolved one."
    )
    conflict_strategy: ConflictStrategy = Field(
        ConflictStrategy.REJECT,
        description="When a conflicting Task runs on a rack: Reject fails that rack's Task, "
        "Queue makes it wait (FIFO) up to queueTimeoutSeconds.",
    )
    queue_timeout_seconds: int = Field(
        DEFAULT_QUEUE_TIMEOUT_SECONDS, ge=1, le=MAX_QUEUE_TIMEOUT_SECONDS
    )
    max_parallel_racks: int = Field(
        0, ge=0, le=100000, description="Tasks running at once; 0 = no limit."
    )
    max_failed_racks: int | None = Field(
        None,
        ge=0,
        le=100000,
        description="Stop starting new Tasks once more racks than this have failed; "
        "unset = no limit.",
    )
    suspend: bool = Field(False, description="Hold Tasks not yet started; running ones go on.")
    cancel: bool = Field(
        False,
        description="Cancel every unfinished Task. Cannot be undone.",
        json_schema_extra=validations(
            cel("!oldSelf || self", "cancel cannot be unset once true; cancellation is final")
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        le=31536000,
        description="Delete the TaskSpec and its Tasks this long after it finished.",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"self.operation in [{_FIRMWARE}] || !has(self.options) || "
                "(!has(self.options.targetVersion) && !has(self.options.subTargets) && "
                "!has(self.options.firmwareWindow))",
                "options.targetVersion, subTargets and firmwareWindow apply only to upgrade, "
                "downgrade and rollback",
                field_path=".options",
            ),
            cel(_IMMUTABLE, IMMUTABLE_MESSAGE),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> TaskSpecSpec:
        opts = self.options
        if (
            opts is not None
            and self.operation not in FIRMWARE_CODES
            and (opts.target_version or opts.sub_targets or opts.firmware_window)
        ):
            raise ValueError(
                "options.targetVersion, subTargets and firmwareWindow apply only to upgrade, "
                "downgrade and rollback"
            )
        return self


class TaskSpecPhase(StrEnum):
    """Summary of a TaskSpec for people; automation should read the conditions."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class ResolutionError(CrdModel):
    """A target that did not resolve to a rack or component."""

    target: str = Field(max_length=256)
    message: Message


class TaskSummary(CrdModel):
    name: ObjectName
    rack: LabelName
    phase: TaskPhase


class TaskSpecStatus(CrdModel):
    """Progress over the TaskSpec's Tasks. Conditions: Resolved (targets resolved to
    racks), Suspended, Complete (every Task finished, none failed), Failed (reasons
    TasksFailed, MaxFailedRacksExceeded, ResolutionFailed), Cancelled. Complete, Failed
    and Cancelled are final."""

    observed_generation: int | None = Field(None, ge=0)
    phase: TaskSpecPhase | None = None
    message: str | None = Field(None, max_length=MESSAGE_MAX)
    racks: int | None = Field(None, ge=0, description="Racks resolved (= Tasks).")
    requested_by: str | None = Field(
        None,
        max_length=REQUESTER_MAX,
        description="Who asked, as the operator read it when it resolved the targets: the "
        "identity in flow.nico.io/on-behalf-of (and through whom), else the Kubernetes user "
        "in flow.nico.io/requested-by.",
    )
    pending: int | None = Field(None, ge=0)
    waiting: int | None = Field(None, ge=0)
    running: int | None = Field(None, ge=0)
    succeeded: int | None = Field(None, ge=0)
    failed: int | None = Field(None, ge=0)
    cancelled: int | None = Field(None, ge=0)
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    resolution_errors: list[ResolutionError] | None = Field(None, max_length=64)
    tasks: list[TaskSummary] | None = Field(
        None,
        max_length=MAX_TASKS_LISTED,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    tasks_truncated: bool | None = Field(
        None, description="True when there are more Tasks than `tasks` lists."
    )
    conditions: Conditions | None = None


CRD = CrdInfo(
    kind="TaskSpec",
    plural="taskspecs",
    singular="taskspec",
    scope="Namespaced",
    spec=TaskSpecSpec,
    status=TaskSpecStatus,
    description="A request to run one operation on a set of racks; the operator creates one "
    "Task per rack.",
    short_names=("ts",),
    printer_columns=(
        PrinterColumn("Operation", "string", ".spec.operation"),
        PrinterColumn("Racks", "integer", ".status.racks"),
        PrinterColumn("Succeeded", "integer", ".status.succeeded"),
        PrinterColumn("Failed", "integer", ".status.failed"),
        PrinterColumn("Phase", "string", ".status.phase"),
        AGE_COLUMN,
        PrinterColumn("Running", "integer", ".status.running", priority=1),
        PrinterColumn("Waiting", "integer", ".status.waiting", priority=1),
        PrinterColumn("Requested-By", "string", ".status.requestedBy", priority=1),
        PrinterColumn("Message", "string", ".status.message", priority=1),
    ),
)
