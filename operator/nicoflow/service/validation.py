"""Checks on request fields, before anything is looked up.

Each failure is an InvalidArgument whose message names the field, says what
is wrong with it and how to write it instead."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType
from nicoflow.service.enums import component_type
from nicoflow.service.errors import InvalidArgument

DEFAULT_OFFSET = 0
DEFAULT_LIMIT = 100
_UUID_EXAMPLE = "123e4567-e89b-12d3-a456-426614174000"


@dataclass(frozen=True)
class Page:
    offset: int = DEFAULT_OFFSET
    limit: int = DEFAULT_LIMIT


MAX_PAGE = 1000


def page(pagination: pb.Pagination | None) -> Page:
    """Offset 0 / limit 100 when absent; when given, limit > 0 and offset >= 0.
    A limit past MAX_PAGE is served as MAX_PAGE: the response's total tells the
    client there is more, as for any page (the original had no bound)."""
    if pagination is None:
        return Page()
    if pagination.offset < 0:
        raise InvalidArgument(
            f"pagination.offset is {pagination.offset}; it must be 0 or more "
            "(omit pagination for the first 100 results)"
        )
    if pagination.limit <= 0:
        raise InvalidArgument(
            f"pagination.limit is {pagination.limit}; it must be greater than 0 when "
            "pagination is given (omit pagination for the default of 100)"
        )
    return Page(pagination.offset, min(pagination.limit, MAX_PAGE))


def parse_uuid_text(text: str, field: str) -> uuid.UUID:
    if not text:
        raise InvalidArgument(f"{field} is required: give a UUID such as {_UUID_EXAMPLE}")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument(
            f"{field} {text!r} is not a UUID; write it like {_UUID_EXAMPLE}"
        ) from None


def timestamp(msg: Timestamp, field: str) -> datetime:
    """A protobuf Timestamp as an aware datetime; a value outside the years
    1-9999 (or with nanos out of range) is the caller's mistake."""
    try:
        return msg.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(
            f"{field} (seconds {msg.seconds}, nanos {msg.nanos}) is not a valid time; "
            "give a time between the years 1 and 9999 with nanos from 0 to 999999999"
        ) from None


def parse_uuid(msg: pb.UUID | None, field: str) -> uuid.UUID:
    return parse_uuid_text(msg.id if msg is not None else "", field)


@dataclass(frozen=True)
class Identifier:
    """A rack or NVL domain named by id or by name (exactly one)."""

    id: uuid.UUID | None = None
    name: str | None = None

    def describe(self) -> str:
        return f"id {self.id}" if self.id is not None else f"name {self.name!r}"


def identifier(msg: pb.Identifier | None, field: str) -> Identifier:
    has_id = msg is not None and msg.HasField("id") and bool(msg.id.id)
    has_name = msg is not None and bool(msg.name)
    if has_id and has_name:
        raise InvalidArgument(f"{field} sets both id and name; give only one of them")
    if not has_id and not has_name:
        raise InvalidArgument(f"{field} is empty; give its id (a UUID) or its name")
    assert msg is not None
    if has_id:
        return Identifier(id=parse_uuid(msg.id, f"{field}.id"))
    return Identifier(name=msg.name)


def serial_info(msg: pb.DeviceSerialInfo | None, field: str) -> tuple[str, str]:
    if msg is None or not msg.serial_number:
        raise InvalidArgument(f"{field}.serial_number is required")
    if not msg.manufacturer:
        raise InvalidArgument(
            f"{field}.manufacturer is required: a serial number is unique per manufacturer"
        )
    return msg.manufacturer, msg.serial_number


def direction(text: str, field: str) -> bool:
    """True for descending; empty means ascending."""
    norm = text.strip().upper()
    if norm in ("", "ASC"):
        return False
    if norm == "DESC":
        return True
    raise InvalidArgument(f"{field} is {text!r}; use ASC or DESC")


# --- target specs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RackRef:
    """One rack target; empty `types` means every component of the rack."""

    index: int
    id: uuid.UUID | None
    name: str | None
    types: frozenset[ComponentType]

    def describe(self) -> str:
        return f"rack id {self.id}" if self.id is not None else f"rack {self.name!r}"


@dataclass(frozen=True)
class ComponentRef:
    """One component target: by Flow UUID, or by Core id and type."""

    index: int
    id: uuid.UUID | None = None
    core_type: ComponentType | None = None
    core_id: str | None = None

    def describe(self) -> str:
        if self.id is not None:
            return f"component id {self.id}"
        assert self.core_type is not None
        return f"{self.core_type.value} with Core id {self.core_id!r}"


@dataclass(frozen=True)
class Targets:
    racks: tuple[RackRef, ...] = ()
    components: tuple[ComponentRef, ...] = ()


def target_spec(spec: pb.OperationTargetSpec | None, field: str = "target_spec") -> Targets:
    """Shape checks of the original (§4.1): racks or components, never both, at
    least one entry, every entry names exactly one thing, no UNKNOWN types."""
    which = spec.WhichOneof("targets") if spec is not None else None
    if spec is None or which is None:
        raise InvalidArgument(
            f"{field} is empty: set racks (RackTargets, each by id or name) or components "
            "(ComponentTargets, each by id or external ref)"
        )
    if which == "racks":
        if not spec.racks.targets:
            raise InvalidArgument(f"{field}.racks has no targets; add at least one RackTarget")
        racks = []
        for i, t in enumerate(spec.racks.targets):
            where = f"{field}.racks.targets[{i}]"
            kind = t.WhichOneof("identifier")
            rid: uuid.UUID | None = None
            name: str | None = None
            if kind == "id" and t.id.id:
                rid = parse_uuid(t.id, f"{where}.id")
            elif kind == "name" and t.name:
                name = t.name
            else:
                raise InvalidArgument(f"{where} names no rack: set id (a UUID) or name")
            types = frozenset(
                component_type(n, f"{where}.component_types[{j}]")
                for j, n in enumerate(t.component_types)
            )
            racks.append(RackRef(i, rid, name, types))
        return Targets(racks=tuple(racks))
    if not spec.components.targets:
        raise InvalidArgument(
            f"{field}.components has no targets; add at least one ComponentTarget"
        )
    comps: list[ComponentRef] = []
    for i, c in enumerate(spec.components.targets):
        where = f"{field}.components.targets[{i}]"
        chosen = c.WhichOneof("identifier")
        if chosen == "id" and c.id.id:
            comps.append(ComponentRef(i, id=parse_uuid(c.id, f"{where}.id")))
        elif chosen == "external":
            ctype = component_type(c.external.type, f"{where}.external.type")
            if not c.external.id:
                raise InvalidArgument(
                    f"{where}.external.id is empty; give NICo Core's id of the component "
                    "(machine id for compute, switch or power shelf id otherwise)"
                )
            comps.append(ComponentRef(i, core_type=ctype, core_id=c.external.id))
        else:
            raise InvalidArgument(
                f"{where} names no component: set id (a UUID) or external (type and Core id)"
            )
    return Targets(components=tuple(comps))
