"""The simulated Core's behaviour, driven by a fake clock."""

from __future__ import annotations

import json

import pytest

from nicoflow.domain.types import ComponentType
from nicoflow.simulator.catalog import DESIRED_FIRMWARE, LEAK_ALERT_ID, SHIPPED_FIRMWARE, Family
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.faults import FaultPlan, Injector
from nicoflow.simulator.firmware import JobState
from nicoflow.simulator.ingestion import IngestionState
from nicoflow.simulator.power import Power, PowerAction
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import generate_site
from nicoflow.simulator.world import (
    Alert,
    Expected,
    Node,
    NodeKind,
    ResultStatus,
    SimError,
    World,
)

SETTINGS = SimSettings(
    power_latency=2.0,
    firmware_latency=10.0,
    ingestion_latency=5.0,
    discovery_latency=1.0,
    dpu_reprovision_latency=3.0,
)


def make(
    racks: int = 2, *, uningested: int = 0, faults: FaultPlan | None = None
) -> tuple[World, FakeClock]:
    clock = FakeClock()
    world = World(
        generate_site(racks, seed=1, uningested=uningested),
        SETTINGS,
        clock,
        Injector(faults or FaultPlan()),
    )
    return world, clock


def rack_nodes(world: World, index: int = 0) -> tuple[list[Node], list[Node], list[Node]]:
    rack = list(world.racks.values())[index]
    return rack.shelves, rack.switches, rack.hosts


# --- Power ---------------------------------------------------------------------------


def test_graceful_power_off_takes_the_configured_latency() -> None:
    world, clock = make()
    _, _, hosts = rack_nodes(world)
    assert world.power_command(hosts[0], PowerAction.GRACEFUL_SHUTDOWN).ok
    assert world.power(hosts[0]) == Power.POWERING_OFF
    clock.advance(2.0)
    assert world.power(hosts[0]) == Power.OFF


def test_all_power_shelves_off_cuts_the_rack() -> None:
    world, clock = make()
    shelves, switches, hosts = rack_nodes(world)
    for shelf in shelves:
        assert world.power_command(shelf, PowerAction.FORCE_OFF).ok
    assert all(world.power(n) == Power.OFF for n in (*switches, *hosts))
    # DPUs are powered by their tray.
    assert world.power(hosts[0].dpus[0]) == Power.OFF
    outcome = world.power_command(hosts[0], PowerAction.ON)
    assert outcome.status == ResultStatus.UNAVAILABLE
    assert "no input power" in outcome.error
    # Turning something off on an unpowered rack is fine: it is off.
    assert world.power_command(switches[0], PowerAction.FORCE_OFF).ok
    # The other rack is untouched.
    _, _, other_hosts = rack_nodes(world, 1)
    assert world.power(other_hosts[0]) == Power.ON
    # Power back: trays stay off until told otherwise, then boot.
    world.power_command(shelves[0], PowerAction.ON)
    clock.advance(2.0)
    assert world.power(hosts[0]) == Power.OFF
    assert world.power_command(hosts[0], PowerAction.ON).ok
    clock.advance(2.0)
    assert world.power(hosts[0]) == Power.ON


def test_some_shelves_off_keeps_the_rack_fed() -> None:
    world, _ = make()
    shelves, _, hosts = rack_nodes(world)
    for shelf in shelves[:-1]:
        world.power_command(shelf, PowerAction.FORCE_OFF)
    assert world.power(hosts[0]) == Power.ON


def test_failing_component_rejects_power_actions() -> None:
    world, _ = make()
    _, _, hosts = rack_nodes(world)
    world.faults.install(FaultPlan(failing=frozenset({hosts[0].serial})))
    outcome = world.power_command(hosts[0], PowerAction.FORCE_OFF)
    assert outcome.status == ResultStatus.INTERNAL_ERROR
    assert world.power(hosts[0]) == Power.ON
    assert world.power_command(hosts[1], PowerAction.FORCE_OFF).ok


def test_flapping_reads_lie_but_state_does_not_change() -> None:
    world, _ = make()
    _, _, hosts = rack_nodes(world)
    world.faults.install(FaultPlan(flapping=frozenset({hosts[0].id}), flap_rate=1.0))
    assert world.observed_power(hosts[0]) == Power.OFF
    assert world.power(hosts[0]) == Power.ON
    assert world.observed_power(hosts[1]) == Power.ON


def test_desired_power_already_set_is_an_invalid_argument() -> None:
    world, _ = make()
    host = world.hosts[0]
    with pytest.raises(SimError, match="already set as On") as err:
        world.set_desired_power(host, True)
    assert err.value.code == "INVALID_ARGUMENT"
    world.set_desired_power(host, False)
    assert host.desired_power is False
    assert host.desired_power_version == 2


# --- Firmware ------------------------------------------------------------------------


def test_firmware_job_progresses_and_updates_versions() -> None:
    world, clock = make()
    switch = world.switches[0]
    targets = world.firmware_targets(switch, [], "")
    assert targets == dict(DESIRED_FIRMWARE[Family.NVSWITCH])
    assert world.start_firmware(switch, targets, "").ok
    seen = []
    for _ in range(12):
        job = world.job(switch)
        assert job is not None
        seen.append(job.state(clock.now()))
        clock.advance(1.0)
    assert seen[0] == JobState.QUEUED
    assert JobState.IN_PROGRESS in seen
    assert JobState.VERIFYING in seen
    assert seen[-1] == JobState.COMPLETED
    assert world.firmware(switch) == dict(DESIRED_FIRMWARE[Family.NVSWITCH])


def test_versions_change_only_on_completion() -> None:
    world, clock = make()
    shelf = world.shelves[0]
    world.start_firmware(shelf, {"pmc": "9.9"}, "9.9")
    clock.advance(9.0)  # verifying
    assert world.firmware(shelf)["pmc"] == SHIPPED_FIRMWARE[Family.POWERSHELF]["pmc"]
    clock.advance(1.0)
    assert world.firmware(shelf)["pmc"] == "9.9"


def test_a_second_update_while_one_runs() -> None:
    world, _ = make()
    host = world.hosts[0]
    assert world.start_firmware(host, {"bmc": "2"}, "").ok
    job = host.job
    assert world.start_firmware(host, {"bmc": "2"}, "").ok  # same request: absorbed
    assert host.job is job
    clash = world.start_firmware(host, {"bmc": "3"}, "")
    assert clash.status == ResultStatus.ALREADY_EXISTS


def test_failing_and_stuck_firmware_jobs() -> None:
    world, clock = make()
    bad, stuck = world.switches[0], world.switches[1]
    world.faults.install(
        FaultPlan(failing=frozenset({bad.id}), stuck_firmware=frozenset({stuck.serial}))
    )
    for node in (bad, stuck):
        world.start_firmware(node, {"bmc": "x"}, "")
    clock.advance(60.0)
    bad_job, stuck_job = world.job(bad), world.job(stuck)
    assert bad_job is not None
    assert stuck_job is not None
    assert bad_job.state(clock.now()) == JobState.FAILED
    assert bad_job.failure
    assert stuck_job.state(clock.now()) == JobState.IN_PROGRESS
    assert world.firmware(bad)["bmc"] != "x"


def test_firmware_on_an_unpowered_rack_is_unavailable() -> None:
    world, _ = make()
    shelves, switches, _ = rack_nodes(world)
    for s in shelves:
        world.power_command(s, PowerAction.FORCE_OFF)
    assert world.start_firmware(switches[0], {"bmc": "x"}, "").status == ResultStatus.UNAVAILABLE
    assert world.start_firmware(shelves[0], {"pmc": "x"}, "").ok


def test_firmware_targets_from_target_version() -> None:
    world, _ = make()
    host = world.hosts[0]
    desired = DESIRED_FIRMWARE[Family.COMPUTE]
    assert world.firmware_targets(host, ["bmc"], "") == {"bmc": desired["bmc"]}
    assert world.firmware_targets(host, ["bmc", "gpu"], "7.0") == {"bmc": "7.0", "gpu": "7.0"}
    sot = json.dumps({"bmc": "8.0", "cec": "1.0"})
    assert world.firmware_targets(host, [], sot) == {"bmc": "8.0", "cec": "1.0"}
    assert world.firmware_targets(host, ["bios"], sot) == {"bios": desired["bios"]}
    with pytest.raises(SimError, match="names no firmware part"):
        world.firmware_targets(host, [], json.dumps({"nvos": "1"}))


def test_host_reprovisioning_in_a_firmware_window() -> None:
    world, clock = make()
    host = world.hosts[0]
    now = clock.now()
    world.set_firmware_window(host, now + 100.0, now + 1000.0)
    world.set_autoupdate(host, True)
    assert world.job(host) is None  # window not open yet
    assert world.machine_state(host) == "Ready"
    clock.advance(102.0)  # 2 s into the window: past "queued"
    assert world.machine_state(host).startswith("HostReprovision/")
    assert not host.update_complete
    clock.advance(10.0)
    assert world.machine_state(host) == "Ready"
    assert host.update_complete
    assert world.firmware(host) == dict(DESIRED_FIRMWARE[Family.COMPUTE])
    # Up to date: a new window starts nothing.
    world.set_firmware_window(host, clock.now(), clock.now() + 10)
    job = world.job(host)
    assert job is not None
    assert job.state(clock.now()) == JobState.COMPLETED


def test_failed_host_reprovisioning_shows_in_the_machine_state() -> None:
    world, clock = make()
    host = world.hosts[0]
    world.faults.install(FaultPlan(failing=frozenset({host.id})))
    world.set_autoupdate(host, True)
    world.set_firmware_window(host, clock.now(), clock.now() + 100)
    clock.advance(50.0)
    assert world.machine_state(host) == "HostReprovision/FailedFirmwareUpgrade"


def test_a_window_must_be_ordered() -> None:
    world, clock = make()
    with pytest.raises(SimError, match="before"):
        world.set_firmware_window(world.hosts[0], clock.now(), clock.now())


# --- Ingestion and expected inventory -------------------------------------------------


def test_ingested_site_has_expected_inventory_and_machines() -> None:
    world, _ = make(racks=2)
    assert len(world.expected[NodeKind.HOST]) == 36
    assert len(world.expected[NodeKind.SWITCH]) == 18
    assert len(world.expected[NodeKind.SHELF]) == 16
    assert len(world.machine_ids()) == 36
    assert len(world.machine_ids(include_dpus=True)) == 36 * 3
    assert world.ingestion_state(world.hosts[0]) == IngestionState.MACHINE_CREATED


def test_bring_up_of_an_uningested_rack() -> None:
    world, clock = make(racks=2, uningested=1)
    _, switches, hosts = rack_nodes(world, 1)
    host = hosts[0]
    assert world.find(host.id) is None
    assert world.find(switches[0].id) is None
    assert len(world.machine_ids()) == 18
    assert world.power(host) == Power.OFF
    assert world.ingestion_state(host) == IngestionState.NOT_DISCOVERED

    world.add_expected(
        Expected(kind=NodeKind.HOST, mac=host.bmc.mac.upper(), serial=host.serial, pause=True)
    )
    world.add_expected(Expected(kind=NodeKind.SWITCH, mac=switches[0].bmc.mac, serial="x"))
    assert world.ingestion_state(host) == IngestionState.NOT_DISCOVERED
    clock.advance(1.0)  # discovery latency
    assert world.ingestion_state(host) == IngestionState.WAITING_FOR_INGESTION
    assert world.find(switches[0].id) is not None  # switches link on discovery

    world.allow_ingestion(world.endpoint(host.bmc.ip) or host)
    assert world.ingestion_state(host) == IngestionState.MACHINE_NOT_CREATED
    assert world.power(host) == Power.POWERING_ON  # "...AndPowerOn"
    clock.advance(5.0)
    assert world.ingestion_state(host) == IngestionState.MACHINE_CREATED
    assert world.find(host.id) is host
    assert host.id in world.machine_ids()
    assert world.power(host) == Power.ON


def test_bmc_endpoint_lookup_accepts_machine_ids_unless_strict() -> None:
    world, _ = make()
    host = world.hosts[0]
    assert world.endpoint(host.bmc.ip) is host
    assert world.endpoint(host.dpus[0].bmc.ip) is host
    assert world.endpoint(host.id) is host
    strict = World(world.site, SimSettings(strict_bmc_endpoints=True), FakeClock())
    assert strict.endpoint(host.id) is None


def test_expected_entries_are_unique_by_mac_and_serial() -> None:
    world, _ = make()
    host = world.hosts[0]
    with pytest.raises(SimError, match="already exists") as err:
        world.add_expected(Expected(kind=NodeKind.HOST, mac=host.bmc.mac, serial="new"))
    assert err.value.code == "ALREADY_EXISTS"
    with pytest.raises(SimError, match="serial"):
        world.add_expected(
            Expected(kind=NodeKind.HOST, mac="02:00:00:00:00:99", serial=host.serial)
        )
    world.add_expected(Expected(kind=NodeKind.HOST, mac="02:00:00:00:00:99", serial="brand-new"))
    entry = world.expected[NodeKind.HOST]["02:00:00:00:00:99"]
    assert entry.node is None
    assert entry.expected_id


# --- Health ----------------------------------------------------------------------------


def test_leak_alerts_drive_the_leak_queries() -> None:
    world, _ = make()
    _, switches, hosts = rack_nodes(world)
    world.set_leak(hosts[3])
    world.set_leak(switches[1])
    leaking_on = world.machine_ids(power_state="on", alert=LEAK_ALERT_ID)
    assert leaking_on == [hosts[3].id]
    assert world.switch_ids(alert=LEAK_ALERT_ID) == [switches[1].id]
    world.power_command(hosts[3], PowerAction.FORCE_OFF)
    assert world.machine_ids(power_state="on", alert=LEAK_ALERT_ID) == []
    assert world.machine_ids(power_state="off", alert=LEAK_ALERT_ID) == [hosts[3].id]
    world.set_leak(hosts[3], False)
    assert world.machine_ids(alert=LEAK_ALERT_ID) == []
    with pytest.raises(SimError):
        world.set_leak(world.shelves[0])


def test_leaks_listed_in_the_fault_plan_are_raised_at_start() -> None:
    site = generate_site(1)
    host = site.racks[0].of_type(ComponentType.COMPUTE)[0]
    world = World(site, SETTINGS, FakeClock(), Injector(FaultPlan(leaks=frozenset({host.serial}))))
    assert world.machine_ids(alert=LEAK_ALERT_ID) == [host.core_id]


def test_machine_ids_filter_by_rack() -> None:
    world, _ = make()
    rack = list(world.racks)[1]
    ids = world.machine_ids(rack_id=rack)
    assert ids == [h.id for h in world.racks[rack].hosts]
    assert world.machine_ids(rack_id="nope") == []
    assert len(world.switch_ids(rack_id=rack)) == 9


def test_health_overrides_merge_or_replace() -> None:
    world, _ = make()
    host = world.hosts[0]
    world.set_alert(host, "hw.fan", "fan failed")
    world.insert_override(host, "flow-power-control", [Alert("Maintenance", "m")], replace=False)
    assert {a.id for a in world.alerts(host)} == {"hw.fan", "Maintenance"}
    world.insert_override(host, "ops", [Alert("Only", "o")], replace=True)
    assert [a.id for a in world.alerts(host)] == ["Only"]
    world.remove_override(host, "ops")
    world.remove_override(host, "flow-power-control")
    assert [a.id for a in world.alerts(host)] == ["hw.fan"]
    with pytest.raises(SimError) as err:
        world.remove_override(host, "flow-power-control")
    assert err.value.code == "NOT_FOUND"


def test_controller_states_are_settable() -> None:
    world, _ = make()
    host, switch = world.hosts[0], world.switches[0]
    assert json.loads(switch.controller_state) == {"state": "ready"}
    world.set_controller_state(host, "Assigned/Provisioning")
    world.set_controller_state(switch, {"state": "error", "cause": "x"})
    assert world.machine_state(host) == "Assigned/Provisioning"
    assert world.machine_state(host.dpus[0]) == "Assigned/Provisioning"
    assert json.loads(switch.controller_state) == {"state": "error", "cause": "x"}


# --- DPU reprovisioning and instances --------------------------------------------------


def test_dpu_reprovisioning_waits_for_the_host_reboot() -> None:
    world, clock = make()
    host = world.hosts[0]
    dpus = world.trigger_reprovision(host, "set", "AdminCli", True)
    assert dpus == host.dpus
    assert {d.id for d, _ in world.waiting_for_reprovisioning()} == {d.id for d in host.dpus}
    clock.advance(3600.0)
    assert len(world.waiting_for_reprovisioning()) == 2  # nothing happens without a reboot
    world.power_command(host, PowerAction.POWER_CYCLE)
    clock.advance(2.0 + 3.0 - 0.1)
    assert len(world.waiting_for_reprovisioning()) == 2
    clock.advance(0.1)
    assert world.waiting_for_reprovisioning() == []
    assert world.firmware(host.dpus[0]) == dict(DESIRED_FIRMWARE[Family.DPU])


def test_dpu_reprovisioning_can_be_cleared() -> None:
    world, _ = make()
    host = world.hosts[0]
    world.trigger_reprovision(host, "set", "AdminCli", False)
    world.trigger_reprovision(host.dpus[0], "clear", "AdminCli", False)
    assert [d.id for d, _ in world.waiting_for_reprovisioning()] == [host.dpus[1].id]
    with pytest.raises(SimError):
        world.trigger_reprovision(world.switches[0], "set", "AdminCli", False)


def test_instance_reset_applies_updates_only_when_asked() -> None:
    world, clock = make()
    host = world.hosts[0]
    iid = world.assign_instance(host)
    assert world.assign_instance(host) == iid
    world.trigger_reprovision(host, "set", "AdminCli", True)
    assert world.instance_power_reset(iid, apply_updates=False).ok
    clock.advance(60.0)
    assert len(world.waiting_for_reprovisioning()) == 2
    assert world.instance_power_reset(iid, apply_updates=True).ok
    clock.advance(60.0)
    assert world.waiting_for_reprovisioning() == []
    with pytest.raises(SimError):
        world.instance_power_reset("nope", apply_updates=False)


def test_describe_and_lookup_by_any_key() -> None:
    world, _ = make()
    host = world.hosts[0]
    for key in (host.id, host.serial, host.bmc.ip, host.bmc.mac.upper()):
        assert world.node(key) is host
    with pytest.raises(SimError):
        world.node("missing")
    d = world.describe(host)
    assert d["power"] == "on"
    assert d["state"] == "Ready"
    assert d["dpus"] == [x.id for x in host.dpus]


def test_core_power_manager_drives_a_host_to_its_desired_state() -> None:
    world, clock = make()
    _, _, hosts = rack_nodes(world)
    host = hosts[0]
    world.set_desired_power(host, False)  # desired Off, nothing commanded yet
    clock.advance(29.0)
    assert world.power(host) is Power.ON  # the power manager has not acted yet
    clock.advance(1.0)
    assert world.power(host) is Power.POWERING_OFF
    clock.advance(SETTINGS.power_latency)
    assert world.power(host) is Power.OFF


def test_power_manager_cannot_power_a_host_without_input_power() -> None:
    world, clock = make()
    shelves, _, hosts = rack_nodes(world)
    for shelf in shelves:
        world.power_command(shelf, PowerAction.FORCE_OFF)
    clock.advance(60.0)
    assert world.power(hosts[0]) is Power.OFF  # desired On, but the rack is unfed
