"""The committed protobuf stubs match proto/ (regenerate with hack/gen_protos.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh() -> None:
    env = dict(os.environ)
    # protoc finds its mypy plugins next to the interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_forge_service_has_every_rpc_flow_uses() -> None:
    from nicoflow._proto.nico import forge_pb2

    service = forge_pb2.DESCRIPTOR.services_by_name["Forge"]
    assert service.full_name == "forge.Forge"
    names = {m.name for m in service.methods}
    expected = {
        "ComponentPowerControl", "GetComponentInventory", "UpdateComponentFirmware",
        "GetComponentFirmwareStatus", "ListComponentFirmwareVersions", "Version",
        "FindMachineIds", "FindMachinesByIds", "GetPowerOptions", "UpdatePowerOption",
        "AdminPowerControl", "SetFirmwareUpdateTimeWindow", "MachineSetAutoUpdate",
        "GetDesiredFirmwareVersions", "FindExploredEndpointsByIds", "GetMachinePositionInfo",
        "AllowIngestionAndPowerOn", "DetermineMachineIngestionState",
        "InsertHealthReportOverride", "RemoveHealthReportOverride", "InsertMachineHealthReport",
        "RemoveMachineHealthReport", "TriggerDpuReprovisioning", "ListDpuWaitingForReprovisioning",
        "FindInstanceByMachineID", "InvokeInstancePower", "GetAllExpectedRacks",
        "GetAllExpectedMachines", "GetAllExpectedSwitches", "GetAllExpectedPowerShelves",
        "AddExpectedMachine", "AddExpectedSwitch", "AddExpectedPowerShelf",
        "GetAllExpectedSwitchesLinked", "GetAllExpectedPowerShelvesLinked", "FindSwitchIds",
        "FindSwitchesByIds", "FindPowerShelvesByIds",
    }  # fmt: skip
    assert expected <= names


def test_wire_numbers_of_key_fields() -> None:
    """Spot checks against NICo Core's numbering (a renumbering breaks the wire)."""
    from nicoflow._proto.nico import forge_pb2, site_explorer_pb2

    def num(msg: type, field: str) -> int:
        return int(msg.DESCRIPTOR.fields_by_name[field].number)  # type: ignore[attr-defined]

    assert num(forge_pb2.ComponentPowerControlRequest, "bypass_state_controller") == 5
    assert num(forge_pb2.UpdateComponentFirmwareRequest, "bypass_state_controller") == 8
    assert num(forge_pb2.UpdateComponentFirmwareRequest, "racks") == 5
    assert num(forge_pb2.Machine, "update_complete") == 42
    assert num(forge_pb2.Machine, "associated_dpu_machine_ids") == 26
    assert num(forge_pb2.Switch, "nvos_info") == 15
    assert num(forge_pb2.PowerShelf, "rack_id") == 10
    assert num(forge_pb2.ExpectedMachine, "bmc_ip_address") == 14
    assert num(forge_pb2.DpuReprovisioningRequest, "machine_id") == 5
    assert num(forge_pb2.InstancePowerRequest, "instance_id") == 5
    assert num(site_explorer_pb2.EndpointExplorationReport, "firmware_versions") == 19
    assert num(site_explorer_pb2.ComputerSystem, "power_state") == 13
