"""The readiness gate: may an operation start on these components now?

A component blocks an operation when its recorded status lists that operation
among its blocked operations (e.g. a tray assigned to a tenant blocks power
control). A component with no recorded status does not block — the gate fails
open, as the original does — but is reported so callers can log it. The
operator's override bypasses the gate entirely.

Which components to check is the caller's business: the targets themselves
for compute; for switches and power shelves, every compute tray in the racks
that own the targets (see `hosts_to_gate`). Bring-up uses the power-control
gate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nicoflow.domain.types import ComponentType, OperationType


@dataclass(frozen=True)
class ComponentStatus:
    """What Flow last recorded about a component's lifecycle in Core."""

    phase: str
    blocked_operations: frozenset[OperationType] = frozenset()


@dataclass(frozen=True)
class Blocker:
    component_id: str
    reason: str


@dataclass(frozen=True)
class ReadinessVerdict:
    blockers: tuple[Blocker, ...] = ()
    # No status recorded: allowed through, worth a log line.
    unknown: tuple[str, ...] = ()
    bypassed: bool = False

    @property
    def ready(self) -> bool:
        return not self.blockers

    def describe(self) -> str:
        if self.bypassed:
            return "readiness check overridden"
        if not self.blockers:
            return "ready"
        return "; ".join(f"{b.component_id}: {b.reason}" for b in self.blockers)


def gated_operation(operation: OperationType) -> OperationType:
    """Bring-up powers components on, so it waits on the power-control gate."""
    return OperationType.POWER_CONTROL if operation == OperationType.BRING_UP else operation


def check_readiness(
    component_ids: Iterable[str],
    statuses: Mapping[str, ComponentStatus | None],
    operation: OperationType,
    *,
    override: bool = False,
) -> ReadinessVerdict:
    ids = list(dict.fromkeys(component_ids))
    if override:
        return ReadinessVerdict(bypassed=True)
    gated = gated_operation(operation)
    blockers: list[Blocker] = []
    unknown: list[str] = []
    for cid in ids:
        status = statuses.get(cid)
        if status is None:
            unknown.append(cid)
        elif gated in status.blocked_operations:
            blockers.append(
                Blocker(cid, f"{gated.value} is blocked while the component is {status.phase}")
            )
    return ReadinessVerdict(tuple(blockers), tuple(unknown))


def hosts_to_gate(
    component_type: ComponentType,
    target_ids: Iterable[str],
    *,
    rack_of: Mapping[str, str | None],
    hosts_by_rack: Mapping[str, Iterable[str]],
) -> list[str]:
    """Components whose readiness decides an operation on `target_ids`: the
    targets for compute; for switches and shelves the compute trays of their
    racks (a shelf power-off takes those trays down). Targets whose rack is
    unknown contribute nothing."""
    targets = list(dict.fromkeys(target_ids))
    if component_type == ComponentType.COMPUTE:
        return targets
    racks = dict.fromkeys(r for t in targets if (r := rack_of.get(t)))
    return list(dict.fromkeys(h for rack in racks for h in hosts_by_rack.get(rack, ())))


def gated_components(
    targets: Mapping[ComponentType, Iterable[str]], rack: str, rack_hosts: Iterable[str]
) -> list[str]:
    """Everything whose readiness decides an operation on one rack's `targets`
    (Core ids by type): the targets themselves, and for switches and power
    shelves every compute tray of the rack (`rack_hosts`)."""
    hosts = list(rack_hosts)
    out: list[str] = []
    for ctype, ids in targets.items():
        targets_of_type = list(ids)
        out += targets_of_type
        out += hosts_to_gate(
            ctype,
            targets_of_type,
            rack_of=dict.fromkeys(targets_of_type, rack),
            hosts_by_rack={rack: hosts},
        )
    return list(dict.fromkeys(out))


def needs_rack_hosts(types: Iterable[ComponentType]) -> bool:
    """Whether an operation on these types is gated by the rack's trays."""
    return any(t in (ComponentType.NVSWITCH, ComponentType.POWERSHELF) for t in types)
