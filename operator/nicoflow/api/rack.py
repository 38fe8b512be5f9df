"""Rack: an expected rack as people declare it (cluster-scoped, like a Node).

spec is the inventory people own: identity, location, NVL domain and the
components with their positions and BMCs. BMC passwords never go in the
object; a Secret reference names where they live. status is what Flow
observed through NICo Core."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from nicoflow.api.common import (
    AGE_COLUMN,
    LABEL_VALUE_MAX,
    SHORT_TEXT_MAX,
    Conditions,
    CrdInfo,
    CrdModel,
    LabelName,
    Message,
    ObjectReference,
    PrinterColumn,
    SecretReference,
    ShortText,
    Timestamp,
    cel,
)
from nicoflow.domain.types import BMCType, ComponentType, OperationCode, TaskPhase

MAX_COMPONENTS = 128
MAX_BMCS = 4
MAC_PATTERN = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"

Serial = Annotated[str, Field(min_length=1, max_length=128)]
CoreId = Annotated[str, Field(min_length=1, max_length=128)]


class RackIdentity(CrdModel):
    """What the rack is; manufacturer + serial number identify it uniquely."""

    manufacturer: str = Field(min_length=1, max_length=SHORT_TEXT_MAX)
    serial_number: Serial
    model: ShortText | None = None
    description: Message | None = None
    display_name: ShortText | None = Field(
        None,
        description="The rack's name in the v1 API, when that is not a valid object name "
        "(e.g. R1); the object's name is derived from it.",
    )


class RackLocation(CrdModel):
    """Where the rack stands."""

    region: ShortText | None = None
    datacenter: ShortText | None = None
    room: ShortText | None = None
    position: ShortText | None = Field(None, description="Row/position label on the floor.")


class ComponentPosition(CrdModel):
    """Place of the component in the rack."""

    slot_id: int | None = Field(None, ge=0, le=1024, description="Rack unit / slot.")
    tray_index: int | None = Field(None, ge=0, le=1024, description="Index among trays of a type.")
    host_id: int | None = Field(None, ge=0, le=1024, description="Host index inside the tray.")


class BMC(CrdModel):
    """A baseboard management controller (credentials: spec.credentialsSecretRef)."""

    type: BMCType
    mac_address: str = Field(pattern=MAC_PATTERN, max_length=17)
    ip_address: str | None = Field(None, max_length=45, description="IPv4 or IPv6 address.")


class RackComponent(CrdModel):
    """One tray, shelf or switch of the rack."""

    name: LabelName = Field(description="Unique within the rack, e.g. compute-01.")
    display_name: ShortText | None = Field(
        None,
        description="The component's name in the v1 API, when that is not a valid, unique "
        "name (e.g. GPU Tray 1); the name is derived from it.",
    )
    type: ComponentType
    manufacturer: ShortText | None = None
    model: ShortText | None = None
    serial_number: Serial
    firmware_version: ShortText | None = Field(None, description="Expected firmware version.")
    position: ComponentPosition | None = None
    bmcs: list[BMC] | None = Field(
        None,
        max_length=MAX_BMCS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["macAddress"],
        },
    )
    core_id: CoreId | None = Field(
        None,
        description="NICo Core's ID for the component (machine, switch or power shelf ID); "
        "every hardware call uses it.",
    )


class RackSpec(CrdModel):
    """The rack as expected."""

    identity: RackIdentity
    location: RackLocation | None = None
    nvl_domain: LabelName | None = Field(None, description="NVLink domain the rack belongs to.")
    core_id: CoreId | None = Field(None, description="NICo Core's ID for the rack, e.g. a12.")
    credentials_secret_ref: SecretReference | None = Field(
        None, description="Secret with the BMC credentials of the rack's components."
    )
    components: list[RackComponent] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                cel(
                    "self.all(c, self.exists_one(d, d.serialNumber == c.serialNumber))",
                    "component serial numbers must be unique within the rack",
                )
            ],
        },
    )


class ComponentCounts(CrdModel):
    """Components per type, and in total."""

    total: int = Field(0, ge=0)
    compute: int | None = Field(None, ge=0)
    nvswitch: int | None = Field(None, ge=0)
    powershelf: int | None = Field(None, ge=0)
    torswitch: int | None = Field(None, ge=0)
    ums: int | None = Field(None, ge=0)
    cdu: int | None = Field(None, ge=0)


class RackPowerState(StrEnum):
    ON = "On"
    OFF = "Off"
    MIXED = "Mixed"
    UNKNOWN = "Unknown"


class PowerSummary(CrdModel):
    """Power state over the rack's components as Core last reported it."""

    state: RackPowerState = Field(description="On/Off when all agree, else Mixed or Unknown.")
    on: int = Field(0, ge=0)
    off: int = Field(0, ge=0)
    unknown: int = Field(0, ge=0)
    observed_time: Timestamp | None = None


class FirmwareVersionCount(CrdModel):
    version: ShortText
    count: int = Field(ge=0)


class FirmwareSummary(CrdModel):
    """Firmware versions observed for one component type."""

    type: ComponentType
    versions: list[FirmwareVersionCount] = Field(default_factory=list, max_length=32)


class DriftSummary(CrdModel):
    """Differences between this spec and what Core reports."""

    missing: int = Field(0, ge=0, description="Expected here, not seen by Core.")
    unexpected: int = Field(0, ge=0, description="Seen by Core, not expected here.")
    mismatch: int = Field(0, ge=0, description="Seen, but with different attributes.")
    checked_time: Timestamp | None = None


class LeakState(StrEnum):
    UNKNOWN = "Unknown"
    DETECTED = "Detected"
    NOT_DETECTED = "NotDetected"


class LeakSummary(CrdModel):
    state: LeakState
    components: list[LabelName] | None = Field(
        None, max_length=MAX_COMPONENTS, description="Components reporting a leak."
    )
    detected_time: Timestamp | None = None


class ActiveTask(ObjectReference):
    """The Task running on the rack, if any."""

    operation: OperationCode | None = None
    phase: TaskPhase | None = None


class RackStatus(CrdModel):
    """The rack as observed."""

    observed_generation: int | None = Field(None, ge=0)
    component_counts: ComponentCounts | None = None
    power: PowerSummary | None = None
    firmware: list[FirmwareSummary] | None = Field(
        None,
        max_length=len(ComponentType),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    drift: DriftSummary | None = None
    active_task: ActiveTask | None = None
    leak: LeakSummary | None = None
    conditions: Conditions | None = None


CRD = CrdInfo(
    kind="Rack",
    plural="racks",
    singular="rack",
    scope="Cluster",
    spec=RackSpec,
    status=RackStatus,
    description="An expected GPU rack: identity, location and components. Conditions: Ready "
    "(inventory in sync with NICo Core), Drifted, LeakDetected.",
    short_names=("rk",),
    printer_columns=(
        PrinterColumn("Manufacturer", "string", ".spec.identity.manufacturer"),
        PrinterColumn("Model", "string", ".spec.identity.model"),
        PrinterColumn("Components", "integer", ".status.componentCounts.total"),
        PrinterColumn("Power", "string", ".status.power.state"),
        AGE_COLUMN,
        PrinterColumn("Serial", "string", ".spec.identity.serialNumber", priority=1),
        PrinterColumn("NVL-Domain", "string", ".spec.nvlDomain", priority=1),
        PrinterColumn("Task", "string", ".status.activeTask.name", priority=1),
    ),
    object_validations=(
        cel(
            "self.metadata.name.size() <= 63",
            f"rack names are used as label values, so they must be at most {LABEL_VALUE_MAX} "
            "characters",
        ),
    ),
)
