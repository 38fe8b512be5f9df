from __future__ import annotations

from nicoflow.core.readiness import ComponentStatus, check_readiness, hosts_to_gate
from nicoflow.domain.types import ComponentType as CT
from nicoflow.domain.types import OperationType as Op

IN_USE = ComponentStatus("Assigned", frozenset({Op.POWER_CONTROL, Op.FIRMWARE_CONTROL}))
READY = ComponentStatus("Ready")
REPROVISIONING = ComponentStatus("HostReprovision", frozenset({Op.FIRMWARE_CONTROL}))


def test_blocked_operation_blocks_with_reason() -> None:
    verdict = check_readiness(
        ["m1", "m2", "m3"], {"m1": READY, "m2": IN_USE, "m3": REPROVISIONING}, Op.POWER_CONTROL
    )
    assert not verdict.ready
    assert [b.component_id for b in verdict.blockers] == ["m2"]
    assert verdict.blockers[0].reason == "power_control is blocked while the component is Assigned"
    assert "m2:" in verdict.describe()


def test_other_operations_pass() -> None:
    verdict = check_readiness(["m3"], {"m3": REPROVISIONING}, Op.POWER_CONTROL)
    assert verdict.ready
    assert check_readiness(["m3"], {"m3": REPROVISIONING}, Op.FIRMWARE_CONTROL).blockers


def test_missing_status_fails_open_but_is_reported() -> None:
    verdict = check_readiness(["m1", "m9"], {"m1": READY, "m9": None}, Op.FIRMWARE_CONTROL)
    assert verdict.ready
    assert verdict.unknown == ("m9",)
    verdict = check_readiness(["m7"], {}, Op.FIRMWARE_CONTROL)
    assert verdict.ready
    assert verdict.unknown == ("m7",)


def test_override_bypasses() -> None:
    verdict = check_readiness(["m2"], {"m2": IN_USE}, Op.POWER_CONTROL, override=True)
    assert verdict.ready
    assert verdict.bypassed
    assert verdict.describe() == "readiness check overridden"


def test_bring_up_uses_the_power_gate() -> None:
    assert check_readiness(["m2"], {"m2": IN_USE}, Op.BRING_UP).blockers
    firmware_only = ComponentStatus("X", frozenset({Op.FIRMWARE_CONTROL}))
    assert check_readiness(["m"], {"m": firmware_only}, Op.BRING_UP).ready


def test_duplicate_ids_counted_once() -> None:
    verdict = check_readiness(["m2", "m2"], {"m2": IN_USE}, Op.POWER_CONTROL)
    assert len(verdict.blockers) == 1


def test_compute_gates_its_targets() -> None:
    assert hosts_to_gate(CT.COMPUTE, ["m1", "m2", "m1"], rack_of={}, hosts_by_rack={}) == [
        "m1",
        "m2",
    ]


def test_switches_and_shelves_gate_hosts_of_their_racks() -> None:
    rack_of = {"sw1": "r1", "sw2": "r1", "ps1": "r2", "sw9": None}
    hosts = {"r1": ["h1", "h2"], "r2": ["h3"]}
    assert hosts_to_gate(CT.NVSWITCH, ["sw1", "sw2"], rack_of=rack_of, hosts_by_rack=hosts) == [
        "h1",
        "h2",
    ]
    assert hosts_to_gate(CT.POWERSHELF, ["ps1", "sw1"], rack_of=rack_of, hosts_by_rack=hosts) == [
        "h3",
        "h1",
        "h2",
    ]
    # Unknown rack: nothing to gate on.
    assert hosts_to_gate(CT.NVSWITCH, ["sw9", "swX"], rack_of=rack_of, hosts_by_rack=hosts) == []
