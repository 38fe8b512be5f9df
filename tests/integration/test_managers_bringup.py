"""Bring-up and expected inventory through the component managers against the
in-process NICo Core simulator: expectations injected into Core, the BMC
discovered, ingestion allowed, the machine created."""

from __future__ import annotations

from typing import Any

import pytest
from sim_managers import CT, DISCOVERY_LATENCY, INGESTION_LATENCY, POWER_LATENCY, bench, keyed

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import (
    BringUpTaskInfo,
    ExpectationInfo,
    ManagerError,
    Target,
    UnsupportedCapability,
)
from nicoflow.core.managers.results import BringUpState, PowerStatus
from nicoflow.simulator.power import Power
from nicoflow.simulator.world import Node

BU = BringUpState


def machine_entry(node: Node, rack_id: str) -> dict[str, Any]:
    return {
        "bmc_mac_address": node.bmc.mac,
        "bmc_username": "root",
        "bmc_password": "secret",
        "chassis_serial_number": node.serial,
        "fallback_dpu_serial_numbers": [d.serial for d in node.dpus],
        "rack_id": rack_id,
        "default_pause_ingestion_and_poweron": True,
    }


@pytest.mark.parametrize("compute", ["nicolegacy", "nico"])
async def test_compute_bring_up_from_expectation_to_machine(compute: str) -> None:
    async with bench(compute=compute, racks=2, uningested=1) as b:
        world = b.sim.world
        rack_id = b.rack(1).rack.core_id
        nodes = b.nodes(CT.COMPUTE, 3, rack=1)
        # Before ingestion Core knows these trays only by their BMC address.
        by_ip = Target(CT.COMPUTE, tuple(n.bmc.ip for n in nodes))
        by_id = Target(CT.COMPUTE, tuple(n.id for n in nodes))
        manager = b.manager(CT.COMPUTE)

        async def states(target: Target = by_ip) -> set[BringUpState]:
            status = await manager.get_bring_up_status(target)
            assert list(status) == list(target.component_ids)
            return {r.state for r in status.values()}

        assert await states() == {BU.NOT_DISCOVERED}
        unresolved = await manager.get_bring_up_status(by_id)
        assert {(r.state, r.error) for r in unresolved.values()} == {
            (BU.UNKNOWN, "cannot resolve the BMC address in NICo Core")
        }
        known = (await b.core.get_all_expected_machines()).expected_machines
        before = {e.bmc_mac_address for e in known}

        entries = [machine_entry(n, rack_id) for n in nodes]
        results = await manager.inject_expectation(
            by_ip, ExpectationInfo("task-bu/inject", entries)
        )
        assert set(results) == {n.bmc.mac for n in nodes}
        assert all(r.ok for r in results.values())
        listed = {
            e.bmc_mac_address: e
            for e in (await b.core.get_all_expected_machines()).expected_machines
        }
        assert set(listed) - before == {n.bmc.mac.lower() for n in nodes}
        for n in nodes:
            got = listed[n.bmc.mac.lower()]
            assert (got.chassis_serial_number, got.rack_id.id) == (n.serial, rack_id)
            assert list(got.fallback_dpu_serial_numbers) == [d.serial for d in n.dpus]
            assert got.default_pause_ingestion_and_poweron is True

        # Core explores the BMCs, then holds ingestion for permission.
        assert await states() == {BU.NOT_DISCOVERED}
        b.advance(DISCOVERY_LATENCY)
        assert await states() == {BU.WAITING_FOR_INGESTION}
        assert {world.power(n) for n in nodes} == {Power.OFF}

        mark = b.last_seq()
        results = await manager.bring_up_control(by_ip, BringUpTaskInfo("task-bu/allow"))
        assert list(results) == list(by_ip.component_ids)
        assert all(r.ok for r in results.values())
        allowed = b.writes(mark)
        assert [(e.method, e.request_id) for e in allowed] == [
            ("AllowIngestionAndPowerOn", f"task-bu/allow/{n.bmc.ip}/allow-ingestion") for n in nodes
        ]
        assert await states() == {BU.INGESTION_MACHINE_NOT_CREATED}
        assert {world.power(n) for n in nodes} == {Power.POWERING_ON}

        b.advance(INGESTION_LATENCY)
        assert await states() == {BU.INGESTION_MACHINE_CREATED}
        # Once created, the machines answer by Core ID too.
        assert await states(by_id) == {BU.INGESTION_MACHINE_CREATED}
        found = await b.core.find_machine_ids(forge_pb2.MachineSearchConfig())
        listed_ids = {m.id for m in found.machine_ids}
        assert set(by_id.component_ids) <= listed_ids
        b.advance(POWER_LATENCY)
        status = await manager.get_power_status(by_id)
        assert {r.state for r in status.values()} == {PowerStatus.ON}

        # Repeating the injection is harmless: Core already expects them.
        mark = b.last_seq()
        again = await manager.inject_expectation(by_ip, ExpectationInfo("task-bu/inject", entries))
        assert all(r.ok for r in again.values())
        repeats = b.writes(mark)
        assert {(e.method, e.code) for e in repeats} == {("AddExpectedMachine", "ALREADY_EXISTS")}
        keyed(b.writes(), "task-bu")


async def test_switch_and_shelf_expectations_link_after_discovery() -> None:
    async with bench(racks=2, uningested=1) as b:
        rack_id = b.rack(1).rack.core_id
        switches = b.nodes(CT.NVSWITCH, 2, rack=1)
        shelves = b.nodes(CT.POWERSHELF, 2, rack=1)
        sw_target = Target(CT.NVSWITCH, tuple(n.id for n in switches))
        shelf_target = Target(CT.POWERSHELF, tuple(n.id for n in shelves))

        # Not known to Core yet: unknown, with Core's reason.
        status = await b.manager(CT.NVSWITCH).get_power_status(sw_target)
        assert {r.state for r in status.values()} == {PowerStatus.UNKNOWN}
        assert all("not found" in r.error for r in status.values())

        sw_entries = [
            {
                "bmc_mac_address": n.bmc.mac,
                "bmc_username": "admin",
                "bmc_password": "secret",
                "switch_serial_number": n.serial,
                "bmc_ip_address": n.bmc.ip,
                "rack_id": rack_id,
                "nvos_username": "nvos",
                "nvos_password": "secret",
            }
            for n in switches
        ]
        shelf_entries = [
            {
                "bmc_mac_address": n.bmc.mac,
                "bmc_username": "admin",
                "bmc_password": "secret",
                "shelf_serial_number": n.serial,
                # The original payload's name for the shelf's BMC address.
                "ip_address": n.bmc.ip,
                "rack_id": rack_id,
            }
            for n in shelves
        ]
        sw = await b.manager(CT.NVSWITCH).inject_expectation(
            sw_target, ExpectationInfo("task-x/switches", sw_entries)
        )
        sh = await b.manager(CT.POWERSHELF).inject_expectation(
            shelf_target, ExpectationInfo("task-x/shelves", shelf_entries)
        )
        assert all(r.ok for r in (*sw.values(), *sh.values()))
        assert {e.request_id for e in b.writes(method="AddExpectedSwitch")} == {
            f"task-x/switches/{n.bmc.mac}" for n in switches
        }
        assert {e.request_id for e in b.writes(method="AddExpectedPowerShelf")} == {
            f"task-x/shelves/{n.bmc.mac}" for n in shelves
        }

        expected_sw = {
            e.switch_serial_number: e
            for e in (await b.core.get_all_expected_switches()).expected_switches
        }
        for n in switches:
            e = expected_sw[n.serial]
            assert (e.bmc_ip_address, e.rack_id.id, e.nvos_username) == (n.bmc.ip, rack_id, "nvos")
        expected_sh = {
            e.shelf_serial_number: e
            for e in (await b.core.get_all_expected_power_shelves()).expected_power_shelves
        }
        assert {expected_sh[n.serial].bmc_ip_address for n in shelves} == {
            n.bmc.ip for n in shelves
        }

        linked = {
            e.switch_serial_number: e
            for e in (await b.core.get_all_expected_switches_linked()).expected_switches
        }
        assert all(not linked[n.serial].HasField("switch_id") for n in switches)
        b.advance(DISCOVERY_LATENCY)
        linked = {
            e.switch_serial_number: e
            for e in (await b.core.get_all_expected_switches_linked()).expected_switches
        }
        assert [linked[n.serial].switch_id.id for n in switches] == list(sw_target.component_ids)
        linked_sh = {
            e.shelf_serial_number: e
            for e in (await b.core.get_all_expected_power_shelves_linked()).expected_power_shelves
        }
        assert [linked_sh[n.serial].power_shelf_id.id for n in shelves] == list(
            shelf_target.component_ids
        )
        # Now Core drives them.
        status = await b.manager(CT.NVSWITCH).get_power_status(sw_target)
        assert {r.state for r in status.values()} == {PowerStatus.ON}


async def test_invalid_expectations_and_unsupported_bring_up() -> None:
    async with bench() as b:
        target = b.target(CT.COMPUTE, 1)
        node = b.nodes(CT.COMPUTE, 1)[0]
        manager = b.manager(CT.COMPUTE)
        with pytest.raises(ManagerError, match="invalid ExpectedMachine expectation"):
            await manager.inject_expectation(
                target,
                ExpectationInfo("k", [{"bmc_mac_address": node.bmc.mac, "serial": "typo"}]),
            )
        with pytest.raises(ManagerError, match="needs bmc_mac_address"):
            await manager.inject_expectation(
                target, ExpectationInfo("k", [{"chassis_serial_number": "x"}])
            )
        with pytest.raises(UnsupportedCapability, match="nvswitch/nico does not support"):
            await b.manager(CT.NVSWITCH).bring_up_control(
                b.target(CT.NVSWITCH, 1), BringUpTaskInfo("k")
            )
        assert len(b.sim.ledger) == 0

        # A BMC address Core has never seen: a per-component failure.
        stranger = "10.250.0.9"
        results = await manager.bring_up_control(
            Target(CT.COMPUTE, (stranger, node.id)), BringUpTaskInfo("task-s")
        )
        assert not results[stranger].ok
        assert "NOT_FOUND" in results[stranger].error
        # An ingested machine's gate is already open: accepted, nothing changes.
        assert results[node.id].ok
        assert b.sim.world.power(node) == Power.ON
