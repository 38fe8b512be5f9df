"""Which namespaces may operate on which racks: the RackAccessPolicy decision.

Pure. A grant gives namespaces (by name or label selector) operations (power,
firmware, bring_up, ingest) on racks (by name or label selector); grants only
add. With no grant at all in the cluster, the platform namespace (where
nico-flow runs) may do everything and every other namespace nothing, so a
fresh install is closed to tenants until someone writes a policy."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nicoflow.domain.targets import describe_selector, match_labels
from nicoflow.domain.types import OperationCode, OperationType

LISTED = 10


class OperationGrant(StrEnum):
    """What a grant allows, by kind of operation."""

    POWER = "power"  # power on/off, forced, restart, resets
    FIRMWARE = "firmware"  # upgrade, downgrade, rollback
    BRING_UP = "bring_up"
    INGEST = "ingest"


def grant_for(operation: OperationCode) -> OperationGrant:
    if operation is OperationCode.INGEST:
        return OperationGrant.INGEST
    return {
        OperationType.POWER_CONTROL: OperationGrant.POWER,
        OperationType.FIRMWARE_CONTROL: OperationGrant.FIRMWARE,
        OperationType.BRING_UP: OperationGrant.BRING_UP,
    }[operation.operation_type]


@dataclass(frozen=True)
class Grant:
    """One RackAccessPolicy. A selector of None selects nothing; {} selects all."""

    name: str
    operations: frozenset[OperationGrant]
    namespaces: frozenset[str] = frozenset()
    namespace_selector: Mapping[str, Any] | None = None
    racks: frozenset[str] = frozenset()
    rack_selector: Mapping[str, Any] | None = None

    def applies_to(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return namespace in self.namespaces or _selects(self.namespace_selector, labels)

    def covers(self, rack: str, labels: Mapping[str, str]) -> bool:
        return rack in self.racks or _selects(self.rack_selector, labels)


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    try:
        return match_labels(selector, labels)
    except ValueError:
        return False  # the CRD schema refuses malformed selectors; never widen on one


def grant_from(body: Mapping[str, Any]) -> Grant:
    """A Grant from a RackAccessPolicy object (its wire form)."""
    spec = body.get("spec") or {}
    ops = set()
    for value in spec.get("operations") or ():
        try:
            ops.add(OperationGrant(value))
        except ValueError:
            continue
    return Grant(
        name=str((body.get("metadata") or {}).get("name", "")),
        operations=frozenset(ops),
        namespaces=frozenset(spec.get("namespaces") or ()),
        namespace_selector=spec.get("namespaceSelector"),
        racks=frozenset(spec.get("racks") or ()),
        rack_selector=spec.get("rackSelector"),
    )


def describe(grant: Grant) -> str:
    """What a grant allows, for people: `power, firmware on racks row=a (and a01)
    for namespaces team=storage (and ops)`."""

    def who(names: frozenset[str], selector: Mapping[str, Any] | None) -> str:
        parts = []
        if selector is not None:
            parts.append(f"selected by {describe_selector(selector)}")
        if names:
            parts.append(", ".join(sorted(names)))
        return " and ".join(parts) or "none"

    ops = ", ".join(o.value for o in OperationGrant if o in grant.operations) or "nothing"
    return (
        f"grants {ops} on racks {who(grant.racks, grant.rack_selector)} to namespaces "
        f"{who(grant.namespaces, grant.namespace_selector)}"
    )


@dataclass(frozen=True)
class Verdict:
    denied: tuple[str, ...] = ()
    message: str = ""
    granted_by: tuple[str, ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return not self.denied


def decide(
    namespace: str,
    namespace_labels: Mapping[str, str],
    operation: OperationCode,
    racks: Iterable[tuple[str, Mapping[str, str]]],
    grants: Sequence[Grant],
    platform_namespaces: Collection[str],
    *,
    platform_grant: bool = True,
) -> Verdict:
    """May `namespace` run `operation` on every one of `racks` (name, labels)?
    `platform_namespaces`: nico-flow's own (and its leak responses'); they may do
    everything while no grant exists at all, and always with `platform_grant`."""
    targeted = sorted(racks, key=lambda r: r[0])
    if namespace in platform_namespaces and (platform_grant or not grants):
        return Verdict(granted_by=("(the platform namespace)",))
    if not grants:
        return Verdict(
            tuple(name for name, _ in targeted),
            _message(namespace, operation, [n for n, _ in targeted], len(targeted), none=True),
        )
    wanted = grant_for(operation)
    mine = [
        g for g in grants if wanted in g.operations and g.applies_to(namespace, namespace_labels)
    ]
    denied = [name for name, labels in targeted if not any(g.covers(name, labels) for g in mine)]
    if not denied:
        return Verdict(granted_by=tuple(sorted(g.name for g in mine)))
    return Verdict(tuple(denied), _message(namespace, operation, denied, len(targeted)))


def _message(
    namespace: str, operation: OperationCode, denied: list[str], total: int, *, none: bool = False
) -> str:
    shown = ", ".join(denied[:LISTED])
    if len(denied) > LISTED:
        shown += f" and {len(denied) - LISTED} more"
    why = (
        "there is no RackAccessPolicy, so only the platform namespace may operate"
        if none
        else f"no RackAccessPolicy grants namespace {namespace} {grant_for(operation).value} "
        "on them"
    )
    return (
        f"namespace {namespace} may not run {operation.value} on rack(s) {shown} "
        f"({len(denied)} of {total} targeted): {why}; ask a platform administrator for a "
        "RackAccessPolicy, or target racks your namespace is granted"
    )
