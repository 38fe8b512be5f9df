"""The PostgreSQL inventory schema as SQLAlchemy models.

Postgres holds what must be queried fast or kept long: the inventory index
mirrored from Rack objects, what NICo Core reports about the hardware, drift,
and the archive of finished Tasks. Kubernetes stays the source of intent.

Schema changes go through Alembic revisions in `nicoflow/inventory/migrations`;
a test compares these models with the migrated database, so the two cannot
drift apart silently.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from nicoflow.domain.types import (
    BMCType,
    ComponentType,
    OperationCode,
    OperationType,
    PowerState,
    TaskPhase,
)

# Deterministic constraint names let later revisions drop or alter a
# constraint by name instead of guessing what Postgres generated.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ComponentPhase(StrEnum):
    """Readiness of a component as NICo Core reports it (the original's `Phase`)."""

    UNKNOWN = "unknown"
    INITIALIZING = "initializing"
    READY = "ready"
    IN_USE = "in_use"
    ERROR = "error"
    DELETING = "deleting"


class LeakStatus(StrEnum):
    UNKNOWN = "unknown"
    DETECTED = "detected"
    NOT_DETECTED = "not_detected"


class DriftType(StrEnum):
    """How the expected inventory and Core disagree about one component.

    missing: expected here, absent in Core; unexpected: in Core, unknown here;
    mismatch: both know it but some fields differ (see `diffs`)."""

    MISSING = "missing"
    UNEXPECTED = "unexpected"
    MISMATCH = "mismatch"


_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def normalize_mac(raw: str) -> str:
    """Canonical MAC form used as the BMC key: lower-case, colon separated.

    Accepts colons, dashes, dots (Cisco style) or bare hex, in any case, so the
    same BMC entered two ways cannot become two rows."""
    bare = re.sub(r"[\s:.\-]", "", raw).lower()
    if not _MAC_HEX.fullmatch(bare):
        raise ValueError(f"invalid MAC address {raw!r}; expected six hex octets")
    return ":".join(bare[i : i + 2] for i in range(0, 12, 2))


def _enum(cls: type[StrEnum], name: str) -> Enum:
    """A string column holding the enum's values, guarded by a CHECK constraint.

    VARCHAR + CHECK instead of a native Postgres ENUM: adding a value is then a
    plain constraint swap inside a transaction."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class IPAddress(TypeDecorator[str]):
    """Postgres INET (validated by the server) read back as plain text.

    psycopg would return `ipaddress` objects; callers and the wire speak strings."""

    impl = INET
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value

    def process_result_value(self, value: object | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


def _uuid_pk() -> Mapped[uuid.UUID]:
    # uuid4 in Python (set at flush) so the ORM needs no round trip to learn the key;
    # the DB default serves raw SQL writers (psql, bulk upserts).
    return mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    # A trigger (see the first revision) also stamps it for writers that bypass the ORM.
    return mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


def _deleted_at() -> Mapped[datetime | None]:
    return mapped_column(DateTime(timezone=True), nullable=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class NVLDomain(Base):
    __tablename__ = "nvl_domain"

    id: Mapped[uuid.UUID] = _uuid_pk()
    # the name in Rack specs (a DNS label); display_name: the v1 client's name
    # when that was not one
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = _created_at()
    deleted_at: Mapped[datetime | None] = _deleted_at()

    racks: Mapped[list[Rack]] = relationship(back_populates="nvl_domain", passive_deletes=True)


class Rack(Base):
    """One expected rack, mirrored from its Rack object.

    `name` is the Rack object's name; `display_name` the v1 client's name when
    that is not a valid object name. Unique constraints include soft-deleted
    rows on purpose: a tombstone keeps its identity until it is purged."""

    __tablename__ = "rack"
    __table_args__ = (
        UniqueConstraint("manufacturer", "serial_number"),
        # Core's rack id (e.g. "a12"); several racks may not have one yet.
        Index(
            "uq_rack_external_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text, unique=True)
    manufacturer: Mapped[str] = mapped_column(Text, nullable=False)
    serial_number: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    datacenter: Mapped[str | None] = mapped_column(Text)
    room: Mapped[str | None] = mapped_column(Text)
    position: Mapped[str | None] = mapped_column(Text)
    nvl_domain_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("nvl_domain.id", ondelete="SET NULL"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    # Which version of the Rack object this row reflects. The mirror only writes
    # when the object's generation moved forward, so replays are no-ops; the UID
    # tells a re-created object (generation restarts at 1) from the old one.
    source_uid: Mapped[str | None] = mapped_column(Text)
    source_generation: Mapped[int | None] = mapped_column(BigInteger)
    source_resource_version: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    deleted_at: Mapped[datetime | None] = _deleted_at()

    nvl_domain: Mapped[NVLDomain | None] = relationship(back_populates="racks")
    components: Mapped[list[Component]] = relationship(back_populates="rack", passive_deletes=True)


class Component(Base):
    """One expected component (tray, switch, shelf ...) plus what Core last said about it."""

    __tablename__ = "component"
    __table_args__ = (
        UniqueConstraint("manufacturer", "serial_number"),
        CheckConstraint(
            "blocked_operations <@ ARRAY["
            + ", ".join(f"'{op.value}'" for op in OperationType)
            + "]::text[]",
            name="blocked_operations_known",
        ),
        # Core ids are only unique per component type (machine id vs switch id ...).
        Index(
            "uq_component_type_external_id",
            "type",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # SET NULL: components may exist unassigned; purging a rack deletes its
    # components explicitly rather than by cascade.
    rack_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("rack.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # the v1 client's name when it is not the (DNS label) name in the Rack spec
    display_name: Mapped[str | None] = mapped_column(Text)
    # place in the rack's component list: reads keep the order it was given in
    ordinal: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[ComponentType] = mapped_column(_enum(ComponentType, "type"), nullable=False)
    manufacturer: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[str | None] = mapped_column(Text)
    serial_number: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    description: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    firmware_version: Mapped[str | None] = mapped_column(Text)
    slot_id: Mapped[int | None] = mapped_column(Integer)
    tray_index: Mapped[int | None] = mapped_column(Integer)
    host_id: Mapped[int | None] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(Text)

    # Observed by inventory sync; never written from a Rack spec.
    power_state: Mapped[PowerState] = mapped_column(
        _enum(PowerState, "power_state"),
        nullable=False,
        default=PowerState.UNKNOWN,
        server_default=PowerState.UNKNOWN.value,
    )
    actual_firmware: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status_phase: Mapped[ComponentPhase] = mapped_column(
        _enum(ComponentPhase, "status_phase"),
        nullable=False,
        default=ComponentPhase.UNKNOWN,
        server_default=ComponentPhase.UNKNOWN.value,
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    # OperationType values the readiness gate refuses while Core reports this state.
    blocked_operations: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, default=list, server_default=text("'{}'::text[]")
    )
    leak_status: Mapped[LeakStatus] = mapped_column(
        _enum(LeakStatus, "leak_status"),
        nullable=False,
        default=LeakStatus.UNKNOWN,
        server_default=LeakStatus.UNKNOWN.value,
    )
    # Start of the current leak incident (Core's alert time, else when first seen);
    # NULL unless leak_status is detected. The leak response keys its TaskSpecs on it.
    leak_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # NVOS management address Core reports for a switch.
    nvos_ip: Mapped[str | None] = mapped_column(IPAddress)
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    deleted_at: Mapped[datetime | None] = _deleted_at()

    rack: Mapped[Rack | None] = relationship(back_populates="components")
    bmcs: Mapped[list[BMC]] = relationship(
        back_populates="component",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="BMC.mac_address",
    )


class BMC(Base):
    """A management controller of a component, keyed by its MAC.

    Credentials are never stored here: `credentials_secret_ref` names a
    Kubernetes Secret in the operator's namespace."""

    __tablename__ = "bmc"
    __table_args__ = (
        # The key must be canonical even for writers that bypass normalize_mac.
        CheckConstraint(
            "mac_address ~ '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'", name="mac_address_normalized"
        ),
    )

    mac_address: Mapped[str] = mapped_column(String(17), primary_key=True)
    type: Mapped[BMCType] = mapped_column(_enum(BMCType, "type"), nullable=False)
    component_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("component.id", ondelete="CASCADE"), nullable=False, index=True
    )
    ip_address: Mapped[str | None] = mapped_column(IPAddress)
    credentials_secret_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    component: Mapped[Component] = relationship(back_populates="bmcs")

    @validates("mac_address")
    def _normalize_mac(self, _key: str, value: str) -> str:
        return normalize_mac(value)


class ComponentDrift(Base):
    """One disagreement found by the last complete inventory sync."""

    __tablename__ = "component_drift"

    id: Mapped[uuid.UUID] = _uuid_pk()
    # NULL for components Core knows and we do not (drift_type unexpected).
    component_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("component.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(Text)
    # The rack the row belongs to: the component's rack when checked, or for an
    # unexpected component the rack Core places it in (or whose layout names its
    # serial or BMC MAC); NULL when nothing places it.
    rack_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("rack.id", ondelete="SET NULL"), index=True
    )
    component_type: Mapped[ComponentType] = mapped_column(
        _enum(ComponentType, "component_type"), nullable=False
    )
    drift_type: Mapped[DriftType] = mapped_column(_enum(DriftType, "drift_type"), nullable=False)
    # [{"field_name", "expected_value", "actual_value"}, ...] for mismatches.
    diffs: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
    checked_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TaskHistory(Base):
    """A Task, recorded when it is created and kept after its Kubernetes object
    is garbage-collected (finished_at is NULL until it finishes).

    No foreign key to `rack`: history must outlive a purged rack, which is why
    the rack's name is copied alongside its id."""

    __tablename__ = "task_history"
    __table_args__ = (
        Index("ix_task_history_rack_id_finished_at", "rack_id", "finished_at"),
        # jsonb_path_ops serves containment queries such as
        # components @> '{"compute": ["<uuid>"]}' (tasks that touched a component).
        Index(
            "ix_task_history_components",
            "components",
            postgresql_using="gin",
            postgresql_ops={"components": "jsonb_path_ops"},
        ),
    )

    # The Task object's UID; supplied by the archiver, so no default.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    namespace: Mapped[str] = mapped_column(Text, nullable=False)
    task_spec_name: Mapped[str | None] = mapped_column(Text, index=True)
    # the Task's id in the v1 API (nicoflow.domain.task_ids.record_id)
    api_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    rack_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    rack_name: Mapped[str | None] = mapped_column(Text)
    operation_code: Mapped[OperationCode] = mapped_column(
        _enum(OperationCode, "operation_code"), nullable=False
    )
    operation_type: Mapped[OperationType] = mapped_column(
        _enum(OperationType, "operation_type"), nullable=False
    )
    phase: Mapped[TaskPhase] = mapped_column(_enum(TaskPhase, "phase"), nullable=False, index=True)
    message: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # who asked: the Task's spec.requestedBy (nicoflow.api.admission.requester)
    requested_by: Mapped[str | None] = mapped_column(Text)
    # Component ids by type value: {"compute": ["<uuid>", ...], "nvswitch": [...]}.
    components: Mapped[dict[str, list[str]]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    applied_rule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # NULL while the Task runs (the operator records Tasks as it creates and
    # starts them). Indexed alone too: retention deletes by age across racks.
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    archived_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TaskResult(Base):
    """One component's result in one step of a Task, archived when the step
    finishes (the Task's status then keeps only the failures).

    Keyed by the Task's UID like task_history, without a foreign key: results
    arrive while the Task runs, before its history row exists."""

    __tablename__ = "task_result"
    __table_args__ = (
        Index("ix_task_result_component_id_finished_at", "component_id", "finished_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_type: Mapped[ComponentType] = mapped_column(
        _enum(ComponentType, "component_type"), primary_key=True
    )
    # NICo Core's id (or the BMC MAC of a component Core does not know yet)
    component_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    phase: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    commanded: Mapped[bool] = mapped_column(nullable=False, server_default=text("false"))
    error: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # retention prunes results by age, with the history rows
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )


class SyncState(Base):
    """Bookkeeping of periodic jobs (inventory sync, leak detection), one row per job,
    so readers can tell how fresh the observed columns and drift rows are."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _updated_at()
