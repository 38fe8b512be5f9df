"""Target resolution: which components of which racks a TaskSpec operates on.

Pure: the caller loads the inventory (`nicoflow.inventory.queries`) and passes
it in. Targets arrive as the TaskSpec's `spec.targets` in its wire form (a
camelCase mapping) or as the API model, which this layer turns into that form
without importing it.

Rack targets (names, a label selector, NVL domains) select whole racks, then
`componentTypes` narrows them; `excludeRacks` leaves racks out whatever
selected them. Component targets name single components by inventory id,
Core id (+ type), serial number, or name within a rack; the type, when
given, must agree. Everything is united. Problems with what a user wrote
are collected as errors, never raised, so a TaskSpec can report all of them at
once and still run on the racks that did resolve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nicoflow.domain.types import ComponentType, OperationCode

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_TYPE_ORDER = {t: i for i, t in enumerate(ComponentType)}


@runtime_checkable
class WireModel(Protocol):
    """An API model that renders its Kubernetes (camelCase) form."""

    def to_k8s(self) -> dict[str, Any]: ...


# slots: target resolution holds every targeted rack's components at once
@dataclass(frozen=True, slots=True)
class InventoryComponent:
    """One component of a rack as the inventory knows it."""

    id: str  # Flow inventory UUID
    name: str
    type: ComponentType
    serial: str
    core_id: str | None = None  # NICo Core's id; None until the component is ingested
    manufacturer: str = ""
    slot_id: int | None = None
    tray_index: int | None = None
    # its own BMC's MAC (a compute tray's host BMC): Core's key before ingestion
    bmc_mac: str | None = None


@dataclass(frozen=True, slots=True)
class InventoryRack:
    """One rack with its components.

    `uid` is the Rack object's Kubernetes UID ("" when unknown), `id` the
    inventory row's UUID."""

    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    nvl_domain: str | None = None
    components: tuple[InventoryComponent, ...] = ()
    id: str = ""


@dataclass
class Resolution:
    """Components to operate on, per rack name, plus what did not resolve.

    `errors` holds (target description, message) pairs, in target order."""

    per_rack: dict[str, tuple[InventoryComponent, ...]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def component_count(self) -> int:
        return sum(len(c) for c in self.per_rack.values())


def component_sort_key(c: InventoryComponent) -> tuple[int, int, int, int, int, str, str]:
    """Type (declaration order), then slot, tray index, name; unknown positions last."""
    return (
        _TYPE_ORDER[c.type],
        c.slot_id is None,
        c.slot_id or 0,
        c.tray_index is None,
        c.tray_index or 0,
        c.name,
        c.id,
    )


# --- label selectors --------------------------------------------------------------------


def _wire(value: Mapping[str, Any] | WireModel) -> Mapping[str, Any]:
    if isinstance(value, WireModel):
        return value.to_k8s()
    if isinstance(value, Mapping):
        return value
    raise ValueError(f"expected a mapping, got {type(value).__name__}")


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    # Both spellings: wire objects are camelCase, Python callers may write snake_case.
    return data.get(camel, data.get(snake))


def rack_selector(targets: Mapping[str, Any]) -> Any:
    """The targets' rack selector; `allRacks: true` is the selector of every rack."""
    selector = _pick(targets, "rackSelector", "rack_selector")
    if selector is None and _pick(targets, "allRacks", "all_racks"):
        return {}
    return selector


def match_labels(selector: Mapping[str, Any] | WireModel, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy a Kubernetes label selector (every term must hold).

    An empty selector selects everything, as in Kubernetes. A malformed selector
    (unknown operator, values where none belong or missing where needed) raises
    ValueError with a message for people."""
    sel = _wire(selector)
    match = _pick(sel, "matchLabels", "match_labels") or {}
    if not isinstance(match, Mapping):
        raise ValueError("matchLabels must be a mapping of label keys to values")
    for key, wanted in match.items():
        if labels.get(key) != wanted:
            return False
    expressions = _pick(sel, "matchExpressions", "match_expressions") or []
    for expr in expressions:
        expr = _wire(expr)
        key, operator = expr.get("key"), expr.get("operator")
        values = list(expr.get("values") or [])
        if not key:
            raise ValueError("a matchExpressions entry needs a key")
        if operator not in SELECTOR_OPERATORS:
            raise ValueError(
                f"unknown selector operator {operator!r} for key {key!r}; "
                f"use one of: {', '.join(SELECTOR_OPERATORS)}"
            )
        if operator in ("In", "NotIn") and not values:
            raise ValueError(f"operator {operator} on key {key!r} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"operator {operator} on key {key!r} takes no values")
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def describe_selector(selector: Mapping[str, Any] | WireModel) -> str:
    """Compact text of a selector, in kubectl's -l syntax: `row=a,site in (dc1,dc2)`."""
    try:
        sel = _wire(selector)
    except ValueError:
        return repr(selector)
    terms = [
        f"{k}={v}" for k, v in sorted((_pick(sel, "matchLabels", "match_labels") or {}).items())
    ]
    for raw in _pick(sel, "matchExpressions", "match_expressions") or []:
        expr = _wire(raw)
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            terms.append(f"{key} {op} ({','.join(values)})")
    return ",".join(terms) or "(everything)"


# --- resolution ------------------------------------------------------------------------


class _Index:
    """Lookups over the loaded inventory for component targets."""

    def __init__(self, racks: Sequence[InventoryRack]) -> None:
        self.racks = {r.name: r for r in racks}
        self.rack_of: dict[str, str] = {}
        self.by_id: dict[str, InventoryComponent] = {}
        self.by_core: dict[str, list[InventoryComponent]] = {}
        self.by_serial: dict[str, list[InventoryComponent]] = {}
        for rack in racks:
            for c in rack.components:
                self.rack_of[c.id] = rack.name
                self.by_id[c.id] = c
                if c.core_id:
                    self.by_core.setdefault(c.core_id, []).append(c)
                self.by_serial.setdefault(c.serial, []).append(c)


def _parse_type(raw: object) -> ComponentType:
    if isinstance(raw, ComponentType):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"component type must be a string, got {raw!r}")
    return ComponentType.parse(raw)


def _check_type(what: str, found: InventoryComponent, wanted: ComponentType | None) -> str | None:
    if wanted is not None and found.type is not wanted:
        return f"{what} is a {found.type.value}, not {wanted.value}"
    return None


def _describe_component_target(t: Mapping[str, Any]) -> str:
    kind = ""
    if t.get("id"):
        kind = f"id={t['id']}"
    elif _pick(t, "coreId", "core_id"):
        kind = f"coreId={_pick(t, 'coreId', 'core_id')}"
    elif t.get("serial"):
        kind = f"serial={t['serial']}"
    elif t.get("name"):
        kind = f"{t.get('rack') or '?'}/{t['name']}"
    if t.get("type"):
        kind += f" ({t['type']})"
    return f"component {kind}".rstrip()


def _resolve_component(t: Mapping[str, Any], index: _Index) -> tuple[str, InventoryComponent] | str:
    """(rack name, component) for one component target, or an error message."""
    try:
        wanted = _parse_type(t["type"]) if t.get("type") else None
    except ValueError as exc:
        return str(exc)
    cid = t.get("id")
    core_id = _pick(t, "coreId", "core_id")
    serial = t.get("serial")
    name = t.get("name")
    given = [x for x in (cid, core_id, serial, name) if x]
    if len(given) != 1:
        return "name a component by exactly one of id, coreId, serial or name"

    if cid:
        found = index.by_id.get(str(cid))
        if found is None:
            return f"component with id {cid} not found"
        problem = _check_type(f"component {cid}", found, wanted)
        return problem or (index.rack_of[found.id], found)

    if core_id:
        if wanted is None:
            return "a component named by coreId must also set type (Core ids are per type)"
        matches = index.by_core.get(str(core_id), [])
        exact = [c for c in matches if c.type is wanted]
        if len(exact) == 1:
            return index.rack_of[exact[0].id], exact[0]
        if not matches:
            return f"component with core id {core_id} not found"
        if not exact:
            kinds = " and a ".join(sorted({c.type.value for c in matches}))
            return f"core id {core_id} is a {kinds}, not {wanted.value}"
        return _ambiguous(f"core id {core_id}", exact, index)

    if serial:
        matches = index.by_serial.get(str(serial), [])
        if not matches:
            return f"component with serial {serial} not found"
        if len(matches) > 1:
            return _ambiguous(f"serial {serial}", matches, index)
        problem = _check_type(f"component with serial {serial}", matches[0], wanted)
        return problem or (index.rack_of[matches[0].id], matches[0])

    rack_name = t.get("rack")
    if not rack_name:
        return "a component named by name must also set rack (names are unique only per rack)"
    rack = index.racks.get(str(rack_name))
    if rack is None:
        return f"rack {rack_name} not found"
    named = [c for c in rack.components if c.name == name]
    if not named:
        return f"component {name} not found in rack {rack_name}"
    if len(named) > 1:
        return _ambiguous(f"name {name} in rack {rack_name}", named, index)
    problem = _check_type(f"component {rack_name}/{name}", named[0], wanted)
    return problem or (rack.name, named[0])


def _ambiguous(what: str, matches: Iterable[InventoryComponent], index: _Index) -> str:
    where = ", ".join(sorted(f"{index.rack_of[c.id]}/{c.name}" for c in matches))
    return f"{what} matches more than one component ({where}); name it by id instead"


def _as_list(value: Any) -> list[Any]:
    return list(value) if value else []


def resolve_targets(
    targets: Mapping[str, Any] | WireModel, racks: Sequence[InventoryRack]
) -> Resolution:
    """Resolve a TaskSpec's targets against the inventory `racks`.

    `racks` must contain every rack the targets can reach (see
    `nicoflow.inventory.queries.load_for_targets`). The result lists components
    per rack in a deterministic order; racks left with no component are not in
    `per_rack` but named in `errors`."""
    out = Resolution()
    try:
        spec = _wire(targets)
    except ValueError as exc:
        out.errors.append(("targets", str(exc)))
        return out
    index = _Index(racks)
    ordered_racks = sorted(racks, key=lambda r: r.name)

    # Racks selected whole, with the target that selected them first (for messages).
    whole: dict[str, str] = {}

    for name in _as_list(spec.get("racks")):
        if name in index.racks:
            whole.setdefault(name, f"rack {name}")
        else:
            out.errors.append((f"rack {name}", f"rack {name} not found"))

    selector = rack_selector(spec)
    if selector is not None:
        what = (
            "allRacks"
            if _pick(spec, "rackSelector", "rack_selector") is None
            else f"rackSelector {describe_selector(selector)}"
        )
        try:
            hits = [r.name for r in ordered_racks if match_labels(selector, r.labels)]
        except ValueError as exc:
            out.errors.append((what, str(exc)))
        else:
            if not hits:
                out.errors.append((what, "no rack matches the selector"))
            for name in hits:
                whole.setdefault(name, what)

    for domain in _as_list(_pick(spec, "nvlDomains", "nvl_domains")):
        hits = [r.name for r in ordered_racks if r.nvl_domain == domain]
        if not hits:
            out.errors.append((f"nvlDomain {domain}", f"NVL domain {domain} has no racks"))
        for name in hits:
            whole.setdefault(name, f"nvlDomain {domain}")

    types: set[ComponentType] = set()
    for raw in _as_list(_pick(spec, "componentTypes", "component_types")):
        try:
            types.add(_parse_type(raw))
        except ValueError as exc:
            out.errors.append((f"componentType {raw}", str(exc)))

    chosen: dict[str, dict[str, InventoryComponent]] = {}
    for name in whole:
        chosen[name] = {
            c.id: c for c in index.racks[name].components if not types or c.type in types
        }

    for raw in _as_list(spec.get("components")):
        try:
            t = _wire(raw)
        except ValueError as exc:
            out.errors.append(("component", str(exc)))
            continue
        result = _resolve_component(t, index)
        if isinstance(result, str):
            out.errors.append((_describe_component_target(t), result))
            continue
        rack_name, comp = result
        chosen.setdefault(rack_name, {})[comp.id] = comp

    # racks left out on purpose (a schedule skipping racks still busy from its last run)
    for name in _as_list(_pick(spec, "excludeRacks", "exclude_racks")):
        chosen.pop(name, None)

    for name in sorted(chosen):
        if chosen[name]:
            out.per_rack[name] = tuple(sorted(chosen[name].values(), key=component_sort_key))
            continue
        kinds = " or ".join(t.value for t in sorted(types, key=_TYPE_ORDER.__getitem__))
        message = (
            f"rack {name} has no {kinds} components" if kinds else f"rack {name} has no components"
        )
        out.errors.append((whole.get(name, f"rack {name}"), message))

    if not (
        spec.get("racks")
        or selector is not None
        or _pick(spec, "nvlDomains", "nvl_domains")
        or spec.get("components")
    ):
        out.errors.append(
            (
                "targets",
                "targets must name at least one of racks, rackSelector, nvlDomains or components",
            )
        )
    return out


def addressable(operation: OperationCode, component: InventoryComponent) -> bool:
    """Whether a Task can address the component in NICo Core. Every hardware
    call needs its Core id, except ingest: that registers components Core
    does not know yet, by their BMC's MAC."""
    if component.core_id:
        return True
    return operation is OperationCode.INGEST and bool(component.bmc_mac)


def unaddressable_reason(operation: OperationCode, component: InventoryComponent) -> str:
    what = f"{component.type.value} {component.name} (serial {component.serial})"
    if operation is OperationCode.INGEST:
        return (
            f"{what} has neither a NICo Core id nor a host BMC; add a bmcs entry of type "
            "host with its MAC address to the Rack"
        )
    return (
        f"{what} has no NICo Core id yet; ingest the rack first, set coreId on the Rack, "
        "or wait for inventory sync"
    )
