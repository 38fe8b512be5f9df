"""Target resolution over a small fixed inventory: what each kind of target selects,
the errors a person sees, and that the answer does not depend on input order."""

from __future__ import annotations

import random
from typing import Any

import pytest

from nicoflow.api.common import LabelSelector
from nicoflow.api.task_spec import ComponentTarget, TaskTargets
from nicoflow.domain.targets import (
    InventoryComponent,
    InventoryRack,
    describe_selector,
    match_labels,
    resolve_targets,
)
from nicoflow.domain.types import ComponentType

C, NVS, PS, CDU = (
    ComponentType.COMPUTE,
    ComponentType.NVSWITCH,
    ComponentType.POWERSHELF,
    ComponentType.CDU,
)


def comp(rack: str, name: str, type_: ComponentType, slot: int | None, core: bool = True) -> Any:
    return InventoryComponent(
        id=f"id-{rack}-{name}",
        name=name,
        type=type_,
        serial=f"SN-{rack}-{name}",
        core_id=f"core-{rack}-{name}" if core else None,
        manufacturer="NVIDIA",
        slot_id=slot,
        tray_index=slot,
    )


def rack(name: str, labels: dict[str, str], domain: str | None, *extra: Any) -> InventoryRack:
    comps = (
        # deliberately not in the resolved order
        comp(name, "compute-02", C, 12),
        comp(name, "ps-01", PS, 1),
        comp(name, "compute-01", C, 11, core=name != "a01"),
        comp(name, "nvswitch-01", NVS, 20),
        *extra,
    )
    return InventoryRack(
        name=name, uid=f"uid-{name}", labels=labels, nvl_domain=domain, components=comps
    )


RACKS = [
    rack("a01", {"row": "a", "site": "dc1"}, "nvl-1"),
    rack("a02", {"row": "a", "site": "dc2"}, "nvl-1"),
    rack("b01", {"row": "b"}, "nvl-2", comp("b01", "cdu-01", CDU, None)),
    rack("c01", {}, None),
]
# A second rack holding a component with the same core id as a01's switch but another type,
# and a serial shared across two manufacturers.
TWIN = InventoryComponent(
    id="id-x01-tor", name="tor-01", type=ComponentType.TORSWITCH, serial="SN-a02-ps-01",
    core_id="core-a01-nvswitch-01", manufacturer="Other",
)  # fmt: skip
RACKS_WITH_TWIN = [*RACKS, InventoryRack(name="x01", components=(TWIN,))]


def names(res: Any) -> dict[str, list[str]]:
    return {r: [c.name for c in comps] for r, comps in res.per_rack.items()}


ALL4 = ["compute-01", "compute-02", "nvswitch-01", "ps-01"]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ({"racks": ["a01"]}, {"a01": ALL4}),
        ({"racks": ["b01", "a01"]}, {"a01": ALL4, "b01": [*ALL4, "cdu-01"]}),
        ({"rackSelector": {"matchLabels": {"row": "a"}}}, {"a01": ALL4, "a02": ALL4}),
        (
            {"rackSelector": {"matchExpressions": [{"key": "site", "operator": "In",
                                                    "values": ["dc2", "dc9"]}]}},
            {"a02": ALL4},
        ),
        (
            {"rackSelector": {"matchExpressions": [{"key": "row", "operator": "NotIn",
                                                    "values": ["a"]}]}},
            {"b01": [*ALL4, "cdu-01"], "c01": ALL4},  # NotIn also selects racks without the key
        ),
        (
            {"rackSelector": {"matchExpressions": [{"key": "site", "operator": "Exists"}]}},
            {"a01": ALL4, "a02": ALL4},
        ),
        (
            {"rackSelector": {"matchExpressions": [{"key": "site", "operator": "DoesNotExist"}],
                              "matchLabels": {"row": "b"}}},
            {"b01": [*ALL4, "cdu-01"]},
        ),
        ({"nvlDomains": ["nvl-1"]}, {"a01": ALL4, "a02": ALL4}),
        (
            {"racks": ["a01", "b01"], "componentTypes": ["nvswitch", "powershelf"]},
            {"a01": ["nvswitch-01", "ps-01"], "b01": ["nvswitch-01", "ps-01"]},
        ),
        ({"racks": ["a01"], "componentTypes": ["compute"]}, {"a01": ["compute-01", "compute-02"]}),
        ({"components": [{"id": "id-a02-ps-01"}]}, {"a02": ["ps-01"]}),
        ({"components": [{"coreId": "core-b01-compute-02", "type": "compute"}]},
         {"b01": ["compute-02"]}),
        ({"components": [{"serial": "SN-c01-nvswitch-01"}]}, {"c01": ["nvswitch-01"]}),
        ({"components": [{"name": "cdu-01", "rack": "b01"}]}, {"b01": ["cdu-01"]}),
        ({"components": [{"serial": "SN-a01-ps-01", "type": "powershelf"}]}, {"a01": ["ps-01"]}),
        # union: a rack selected whole (filtered) plus a single component of another type
        (
            {"racks": ["a01"], "componentTypes": ["nvswitch"],
             "components": [{"name": "compute-02", "rack": "a01"},
                            {"name": "ps-01", "rack": "c01"}]},
            {"a01": ["compute-02", "nvswitch-01"], "c01": ["ps-01"]},
        ),
        # the same rack reached three ways appears once, components once
        (
            {"racks": ["a01"], "rackSelector": {"matchLabels": {"site": "dc1"}},
             "nvlDomains": ["nvl-1"], "components": [{"id": "id-a01-ps-01"}]},
            {"a01": ALL4, "a02": ALL4},
        ),
    ],
)  # fmt: skip
def test_resolves(targets: dict[str, Any], expected: dict[str, list[str]]) -> None:
    res = resolve_targets(targets, RACKS)
    assert names(res) == expected
    assert res.errors == []


def test_empty_selector_selects_every_rack() -> None:
    res = resolve_targets({"rackSelector": {}, "componentTypes": ["cdu"]}, RACKS)
    assert names(res) == {"b01": ["cdu-01"]}
    assert res.errors == [
        ("rackSelector (everything)", f"rack {r} has no cdu components")
        for r in ("a01", "a02", "c01")
    ]


def test_component_without_core_id_is_still_returned() -> None:
    res = resolve_targets({"racks": ["a01"], "componentTypes": ["compute"]}, RACKS)
    first = res.per_rack["a01"][0]
    assert first.name == "compute-01"
    assert first.core_id is None


@pytest.mark.parametrize(
    ("targets", "errors"),
    [
        ({"racks": ["a01", "zz9"]}, [("rack zz9", "rack zz9 not found")]),
        (
            {"rackSelector": {"matchLabels": {"row": "q"}}},
            [("rackSelector row=q", "no rack matches the selector")],
        ),
        (
            {"rackSelector": {"matchExpressions": [{"key": "row", "operator": "Gt",
                                                    "values": ["1"]}]}},
            [("rackSelector row Gt (1)",
              "unknown selector operator 'Gt' for key 'row'; "
              "use one of: In, NotIn, Exists, DoesNotExist")],
        ),
        ({"nvlDomains": ["nvl-9"]}, [("nvlDomain nvl-9", "NVL domain nvl-9 has no racks")]),
        (
            {"racks": ["a01", "b01"], "componentTypes": ["cdu"]},
            [("rack a01", "rack a01 has no cdu components")],
        ),
        (
            {"nvlDomains": ["nvl-1"], "componentTypes": ["cdu", "torswitch"]},
            [("nvlDomain nvl-1", "rack a01 has no torswitch or cdu components"),
             ("nvlDomain nvl-1", "rack a02 has no torswitch or cdu components")],
        ),
        (
            {"components": [{"id": "nope"}]},
            [("component id=nope", "component with id nope not found")],
        ),
        (
            {"components": [{"serial": "SN-x"}]},
            [("component serial=SN-x", "component with serial SN-x not found")],
        ),
        (
            {"components": [{"coreId": "core-zz", "type": "compute"}]},
            [("component coreId=core-zz (compute)", "component with core id core-zz not found")],
        ),
        (
            {"components": [{"coreId": "core-a01-nvswitch-01", "type": "compute"}]},
            [("component coreId=core-a01-nvswitch-01 (compute)",
              "core id core-a01-nvswitch-01 is a nvswitch, not compute")],
        ),
        (
            {"components": [{"coreId": "core-a01-compute-02"}]},
            [("component coreId=core-a01-compute-02",
              "a component named by coreId must also set type (Core ids are per type)")],
        ),
        (
            {"components": [{"serial": "SN-a01-ps-01", "type": "compute"}]},
            [("component serial=SN-a01-ps-01 (compute)",
              "component with serial SN-a01-ps-01 is a powershelf, not compute")],
        ),
        (
            {"components": [{"id": "id-a01-ps-01", "type": "nvswitch"}]},
            [("component id=id-a01-ps-01 (nvswitch)",
              "component id-a01-ps-01 is a powershelf, not nvswitch")],
        ),
        (
            {"components": [{"name": "compute-09", "rack": "a01"}]},
            [("component a01/compute-09", "component compute-09 not found in rack a01")],
        ),
        (
            {"components": [{"name": "compute-01", "rack": "zz9"}]},
            [("component zz9/compute-01", "rack zz9 not found")],
        ),
        (
            {"components": [{"name": "compute-01"}]},
            [("component ?/compute-01",
              "a component named by name must also set rack (names are unique only per rack)")],
        ),
        (
            {"components": [{"id": "id-a01-ps-01", "serial": "SN-a01-ps-01"}]},
            [("component id=id-a01-ps-01",
              "name a component by exactly one of id, coreId, serial or name")],
        ),
        (
            {"racks": ["a01"], "componentTypes": ["blade"]},
            [("componentType blade",
              "unknown component type 'blade'; expected one of: compute, nvswitch, powershelf, "
              "torswitch, ums, cdu")],
        ),
        ({}, [("targets", "targets must name at least one of racks, rackSelector, nvlDomains or "
                          "components")]),
    ],
)  # fmt: skip
def test_errors(targets: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    res = resolve_targets(targets, RACKS)
    assert res.errors == errors


def test_errors_do_not_stop_the_rest() -> None:
    res = resolve_targets(
        {"racks": ["a01", "zz9"], "components": [{"serial": "nope"}, {"id": "id-c01-ps-01"}]},
        RACKS,
    )
    assert names(res) == {"a01": ALL4, "c01": ["ps-01"]}
    assert [t for t, _ in res.errors] == ["rack zz9", "component serial=nope"]
    assert res.component_count == 5


def test_core_id_resolution_checks_the_type() -> None:
    # Same Core id on a switch (a01) and a ToR switch (x01): the type picks the right one.
    res = resolve_targets(
        {"components": [{"coreId": "core-a01-nvswitch-01", "type": "torswitch"}]}, RACKS_WITH_TWIN
    )
    assert names(res) == {"x01": ["tor-01"]}
    res = resolve_targets(
        {"components": [{"coreId": "core-a01-nvswitch-01", "type": "nvswitch"}]}, RACKS_WITH_TWIN
    )
    assert names(res) == {"a01": ["nvswitch-01"]}
    res = resolve_targets(
        {"components": [{"coreId": "core-a01-nvswitch-01", "type": "compute"}]}, RACKS_WITH_TWIN
    )
    assert res.errors == [
        (
            "component coreId=core-a01-nvswitch-01 (compute)",
            "core id core-a01-nvswitch-01 is a nvswitch and a torswitch, not compute",
        )
    ]


def test_ambiguous_serial_is_an_error_naming_both() -> None:
    res = resolve_targets({"components": [{"serial": "SN-a02-ps-01"}]}, RACKS_WITH_TWIN)
    assert res.per_rack == {}
    assert res.errors == [
        (
            "component serial=SN-a02-ps-01",
            "serial SN-a02-ps-01 matches more than one component (a02/ps-01, x01/tor-01); "
            "name it by id instead",
        )
    ]
    # the type disambiguates nothing here (serial targets need exactly one match first)


def test_accepts_the_api_model() -> None:
    model = TaskTargets(
        rack_selector=LabelSelector.model_validate(
            {"matchExpressions": [{"key": "site", "operator": "In", "values": ["dc1"]}]}
        ),
        component_types=[NVS],
        components=[ComponentTarget(core_id="core-b01-compute-01", type=C)],
    )
    res = resolve_targets(model, RACKS)
    assert names(res) == {"a01": ["nvswitch-01"], "b01": ["compute-01"]}
    assert res.errors == []


def test_order_is_deterministic() -> None:
    targets = {"rackSelector": {}, "components": [{"id": "id-x01-tor"}]}
    expected = resolve_targets(targets, RACKS_WITH_TWIN)
    # type, then slot: compute-01 (11), compute-02 (12), nvswitch, powershelf, cdu (no slot)
    assert names(expected)["b01"] == ["compute-01", "compute-02", "nvswitch-01", "ps-01", "cdu-01"]
    assert list(expected.per_rack) == ["a01", "a02", "b01", "c01", "x01"]
    rng = random.Random(7)
    for _ in range(20):
        shuffled = [
            InventoryRack(
                name=r.name,
                labels=r.labels,
                nvl_domain=r.nvl_domain,
                components=tuple(rng.sample(r.components, len(r.components))),
            )
            for r in rng.sample(RACKS_WITH_TWIN, len(RACKS_WITH_TWIN))
        ]
        got = resolve_targets(targets, shuffled)
        assert got.per_rack == expected.per_rack
        assert list(got.per_rack) == list(expected.per_rack)


def exprs(key: str, operator: str, *values: str) -> dict[str, Any]:
    expr: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return {"matchExpressions": [expr]}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1"}}, {}, False),
        (exprs("a", "In", "1", "2"), {"a": "2"}, True),
        (exprs("a", "In", "1"), {}, False),
        (exprs("a", "NotIn", "1"), {}, True),
        (exprs("a", "NotIn", "1"), {"a": "1"}, False),
        (exprs("a", "NotIn", "1"), {"a": "2"}, True),
        (exprs("a", "Exists"), {"a": ""}, True),
        (exprs("a", "Exists"), {"b": "1"}, False),
        (exprs("a", "DoesNotExist"), {"b": "1"}, True),
        (exprs("a", "DoesNotExist"), {"a": "1"}, False),
        # every term must hold
        ({"matchLabels": {"b": "2"},
          "matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": "1"}, False),
        # snake_case spelling from Python callers
        ({"match_labels": {"a": "1"}}, {"a": "1"}, True),
    ],
)  # fmt: skip
def test_match_labels(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert match_labels(selector, labels) is matches
    if "match_labels" not in selector:
        assert match_labels(LabelSelector.model_validate(selector), labels) is matches


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ({"key": "a", "operator": "Gt", "values": ["1"]}, "unknown selector operator 'Gt'"),
        ({"key": "a", "operator": "In"}, "operator In on key 'a' needs at least one value"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "operator Exists on key 'a' takes"),
        ({"operator": "Exists"}, "a matchExpressions entry needs a key"),
    ],
)
def test_match_labels_rejects_malformed(expr: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        match_labels({"matchExpressions": [expr]}, {"a": "1"})


def test_describe_selector() -> None:
    sel = {
        "matchLabels": {"row": "a", "env": "prod"},
        "matchExpressions": [
            {"key": "site", "operator": "In", "values": ["dc1", "dc2"]},
            {"key": "tier", "operator": "NotIn", "values": ["x"]},
            {"key": "gpu", "operator": "Exists"},
            {"key": "drain", "operator": "DoesNotExist"},
        ],
    }
    assert describe_selector(sel) == "env=prod,row=a,site in (dc1,dc2),tier notin (x),gpu,!drain"
    assert describe_selector({}) == "(everything)"


def test_exclude_racks_leaves_racks_out_whatever_selects_them() -> None:
    """What a TaskSchedule with overlap Skip uses to leave busy racks out."""
    res = resolve_targets(
        {
            "rackSelector": {"matchLabels": {"row": "a"}},
            "racks": ["b01"],
            "components": [{"id": "id-a02-ps-01"}],
            "excludeRacks": ["a02", "b01"],
        },
        RACKS,
    )
    assert sorted(res.per_rack) == ["a01"]
    assert res.errors == []
