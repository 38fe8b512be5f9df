"""Request building blocks from plain values: identifiers, component types and
operation targets (racks by id or name, components by Flow id or Core id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType

COMPONENT_TYPE_NUMBERS: dict[ComponentType, pb.ComponentType.ValueType] = {
    ComponentType.COMPUTE: pb.COMPONENT_TYPE_COMPUTE,
    ComponentType.NVSWITCH: pb.COMPONENT_TYPE_NVSWITCH,
    ComponentType.POWERSHELF: pb.COMPONENT_TYPE_POWERSHELF,
    ComponentType.TORSWITCH: pb.COMPONENT_TYPE_TORSWITCH,
    ComponentType.UMS: pb.COMPONENT_TYPE_UMS,
    ComponentType.CDU: pb.COMPONENT_TYPE_CDU,
}
COMPONENT_TYPES_BY_NUMBER = {n: t for t, n in COMPONENT_TYPE_NUMBERS.items()}


class TargetError(ValueError):
    """Targets that cannot make a request; the message says what to change."""


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def uuid_msg(text: str) -> pb.UUID:
    return pb.UUID(id=text)


def identifier(text: str) -> pb.Identifier:
    """A rack or NVL domain by UUID when the text is one, else by name."""
    return pb.Identifier(id=pb.UUID(id=text)) if is_uuid(text) else pb.Identifier(name=text)


def component_type_number(text: str | ComponentType) -> pb.ComponentType.ValueType:
    try:
        return COMPONENT_TYPE_NUMBERS[ComponentType.parse(str(text))]
    except ValueError as exc:
        raise TargetError(str(exc)) from None


def component_type_name(number: int) -> str:
    """Display name ("Compute") of a wire number; "Unknown" for anything else."""
    found = COMPONENT_TYPES_BY_NUMBER.get(number)  # type: ignore[call-overload]
    return found.display if found is not None else "Unknown"


def rack_targets(
    *, ids: Sequence[str] = (), names: Sequence[str] = (), types: Iterable[str] = ()
) -> pb.OperationTargetSpec:
    """Whole racks (narrowed to `types` when given), by id and/or name."""
    numbers = [component_type_number(t) for t in types]
    for rid in ids:
        if not is_uuid(rid):
            raise TargetError(f"rack id {rid!r} is not a UUID (use --rack-names for names)")
    targets = [pb.RackTarget(id=pb.UUID(id=r), component_types=numbers) for r in ids]
    targets += [pb.RackTarget(name=n, component_types=numbers) for n in names]
    if not targets:
        raise TargetError("name at least one rack")
    return pb.OperationTargetSpec(racks=pb.RackTargets(targets=targets))


def component_targets(ids: Sequence[str], types: Sequence[str] = ()) -> pb.OperationTargetSpec:
    """Components by Flow UUID, or by NICo Core id — which needs exactly one type
    to say what kind of Core id it is (machine id, switch id, shelf id)."""
    if not ids:
        raise TargetError("name at least one component")
    targets = []
    for cid in ids:
        if is_uuid(cid):
            targets.append(pb.ComponentTarget(id=pb.UUID(id=cid)))
            continue
        if len(types) != 1:
            raise TargetError(
                f"component {cid!r} is not a UUID, so it is read as a NICo Core id: give "
                "exactly one component type with -t (for example -t compute)"
            )
        ref = pb.ExternalRef(type=component_type_number(types[0]), id=cid)
        targets.append(pb.ComponentTarget(external=ref))
    return pb.OperationTargetSpec(components=pb.ComponentTargets(targets=targets))


def target_spec(
    *,
    rack_ids: Sequence[str] = (),
    rack_names: Sequence[str] = (),
    component_ids: Sequence[str] = (),
    types: Sequence[str] = (),
) -> pb.OperationTargetSpec:
    """Exactly one kind of target, as the API requires."""
    if component_ids and (rack_ids or rack_names):
        raise TargetError("give racks (--rack-ids/--rack-names) or --component-ids, not both")
    if component_ids:
        return component_targets(component_ids, types)
    if rack_ids or rack_names:
        return rack_targets(ids=rack_ids, names=rack_names, types=types)
    raise TargetError("no targets: give --rack-ids, --rack-names or --component-ids")
