"""`flow simulator` as a subprocess, spoken to over real gRPC and its control API."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from nicoflow._proto.nico import common_pb2, forge_pb2, forge_pb2_grpc, site_explorer_pb2
from nicoflow.domain.types import ComponentType
from nicoflow.simulator.site import dump_site, generate_site

FLOW = [sys.executable, "-c", "from nicoflow.cli.main import main; main()"]
SPC = common_pb2


def flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOW, *args], capture_output=True, text=True, check=True, timeout=120)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    racks: list[dict[str, Any]]

    @property
    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.info["grpc"])

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, self.info["control"] + path, json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def ids(self, rack: int, kind: str) -> list[str]:
        comps = self.racks[rack]["spec"]["components"]
        return [c["coreId"] for c in comps if c["type"] == kind]


def start(tmp: Path, *args: str) -> Running:
    export = tmp / "racks.yaml"
    proc = subprocess.Popen(
        [
            *FLOW,
            "simulator",
            "--racks",
            "3",
            "--port",
            "0",
            "--control-port",
            "0",
            "--dev-mode",
            "--export-racks",
            str(export),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("flow simulator did not print its ready line within 60 s")
    info = json.loads(proc.stdout.readline())
    assert info["event"] == "ready"
    return Running(proc, info, list(yaml.safe_load_all(export.read_text())))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start(tmp_path_factory.mktemp("sim"), "--latency-power", "200ms")
    yield running
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(15) == 0


@pytest.fixture
def forge(sim: Running) -> Iterator[forge_pb2_grpc.ForgeStub]:
    with sim.channel as ch:
        yield forge_pb2_grpc.ForgeStub(ch)
    sim.control("PUT", "/v1/faults", {})


def test_ready_line_names_the_addresses(sim: Running) -> None:
    assert sim.info["grpc"].startswith("127.0.0.1:")
    assert sim.info["control"].startswith("http://127.0.0.1:")
    assert sim.info["counts"] == {
        "compute": 54,
        "nvswitch": 27,
        "powershelf": 24,
        "dpu": 108,
        "racks": 3,
    }
    assert [r["metadata"]["name"] for r in sim.racks] == ["rack-a01", "rack-a02", "rack-a03"]


def test_reflection_lists_forge_and_health(sim: Running) -> None:
    with sim.channel as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"forge.Forge", "grpc.health.v1.Health"} <= services
        forge_service = DescriptorPool(db).FindServiceByName("forge.Forge")
        assert "ComponentPowerControl" in {m.name for m in forge_service.methods}
        health = health_pb2_grpc.HealthStub(ch)
        resp = health.Check(health_pb2.HealthCheckRequest(service="forge.Forge"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_power_shelves_off_take_the_trays_down(
    sim: Running, forge: forge_pb2_grpc.ForgeStub
) -> None:
    shelves = sim.ids(1, "powershelf")
    trays = sim.ids(1, "compute")
    resp = forge.ComponentPowerControl(
        forge_pb2.ComponentPowerControlRequest(
            power_shelf_ids=forge_pb2.PowerShelfIdList(
                ids=[common_pb2.PowerShelfId(id=i) for i in shelves]
            ),
            action=SPC.SYSTEM_POWER_CONTROL_FORCE_OFF,
        ),
        metadata=[("x-request-id", "shelves-off")],
        timeout=10,
    )
    assert len(resp.results) == 8
    assert {r.status for r in resp.results} == {forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS}
    inv = forge.GetComponentInventory(
        forge_pb2.GetComponentInventoryRequest(
            machine_ids=common_pb2.MachineIdList(
                machine_ids=[common_pb2.MachineId(id=i) for i in trays]
            )
        ),
        timeout=10,
    )
    assert [e.report.systems[0].power_state for e in inv.entries] == [site_explorer_pb2.Off] * 18
    on = forge.ComponentPowerControl(
        forge_pb2.ComponentPowerControlRequest(
            machine_ids=common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id=trays[0])]),
            action=SPC.SYSTEM_POWER_CONTROL_ON,
        ),
        timeout=10,
    )
    assert on.results[0].status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_UNAVAILABLE
    rack = sim.control("GET", "/v1/racks/rack-a02")
    assert rack["fed"] is False
    # Another rack is untouched.
    other = sim.control("GET", "/v1/racks/rack-a01")
    assert {c["power"] for c in other["components"]} == {"on"}


def test_a_repeated_request_id_is_a_duplicate(
    sim: Running, forge: forge_pb2_grpc.ForgeStub
) -> None:
    switch = sim.ids(2, "nvswitch")[0]
    req = forge_pb2.ComponentPowerControlRequest(
        switch_ids=forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=switch)]),
        action=SPC.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART,
    )
    for _ in range(2):
        forge.ComponentPowerControl(
            req, metadata=[("x-request-id", "task-x/restart/1")], timeout=10
        )
    dups = sim.control("GET", "/v1/ledger/duplicates")["duplicates"]
    mine = [d for d in dups if d["request_id"] == "task-x/restart/1"]
    assert len(mine) == 1
    assert mine[0]["component_id"] == switch
    assert len(mine[0]["calls"]) == 2
    entries = sim.control("GET", "/v1/ledger?request_id=task-x/restart/1")["entries"]
    assert [e["action"] for e in entries] == ["graceful_restart", "graceful_restart"]


def test_injected_unavailable_rate(sim: Running, forge: forge_pb2_grpc.ForgeStub) -> None:
    sim.control(
        "PATCH",
        "/v1/faults",
        {"errors": [{"method": "FindMachineIds", "rate": 0.5, "code": "UNAVAILABLE"}], "seed": 3},
    )
    codes = []
    for _ in range(100):
        try:
            forge.FindMachineIds(forge_pb2.MachineSearchConfig(), timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert 25 <= codes.count(grpc.StatusCode.UNAVAILABLE) <= 75
    injected = sim.control("GET", "/v1/faults/injected")["injected"]
    assert injected == {"FindMachineIds": codes.count(grpc.StatusCode.UNAVAILABLE)}
    # A refused write lands in the ledger as not applied.
    sim.control(
        "PUT",
        "/v1/faults",
        {"errors": [{"method": "AdminPowerControl", "code": "UNAVAILABLE", "times": 1}]},
    )
    host = sim.ids(0, "compute")[5]
    req = forge_pb2.AdminPowerControlRequest(
        machine_id=host, action=forge_pb2.AdminPowerControlRequest.ForceRestart
    )
    with pytest.raises(grpc.RpcError) as err:
        forge.AdminPowerControl(req, metadata=[("x-request-id", "adm-1")], timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    forge.AdminPowerControl(req, metadata=[("x-request-id", "adm-1")], timeout=10)
    entries = sim.control("GET", "/v1/ledger?request_id=adm-1")["entries"]
    assert [(e["code"], e["applied"]) for e in entries] == [("UNAVAILABLE", False), ("OK", True)]
    dups = sim.control("GET", "/v1/ledger/duplicates")["duplicates"]
    assert not [d for d in dups if d["request_id"] == "adm-1"]
    sim.control("PUT", "/v1/faults", {})
    forge.FindMachineIds(forge_pb2.MachineSearchConfig(), timeout=10)


def test_leak_set_through_the_control_api(sim: Running, forge: forge_pb2_grpc.ForgeStub) -> None:
    host = sim.ids(2, "compute")[7]
    sim.control("POST", f"/v1/components/{host}/leak", {"leaking": True})
    try:
        found = forge.FindMachineIds(
            forge_pb2.MachineSearchConfig(
                only_with_power_state="on",
                only_with_health_alert="hardware-health.tray-leak-detection",
            ),
            timeout=10,
        )
        assert [m.id for m in found.machine_ids] == [host]
    finally:
        sim.control("POST", f"/v1/components/{host}/leak", {"leaking": False})


def test_methods_outside_the_subset_are_unimplemented(sim: Running) -> None:
    with sim.channel as ch:
        call = ch.unary_unary("/forge.Forge/FindInterfaces")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "FindInterfaces" in (err.value.details() or "")


def test_control_api_errors(sim: Running) -> None:
    base = sim.info["control"]
    assert httpx.get(f"{base}/v1/components/nope", timeout=5).status_code == 404
    assert httpx.get(f"{base}/v1/nothing", timeout=5).status_code == 404
    assert httpx.post(f"{base}/v1/ledger", timeout=5).status_code == 405
    bad = httpx.put(f"{base}/v1/faults", json={"errors": [{"code": "NOPE"}]}, timeout=5)
    assert bad.status_code == 400
    assert "unknown gRPC code" in bad.json()["error"]


def test_export_is_deterministic_for_a_seed(sim: Running, tmp_path: Path) -> None:
    a = flow("simulator", "export", "--racks", "2", "--seed", "5", "--format", "rack-json").stdout
    b = flow("simulator", "export", "--racks", "2", "--seed", "5", "--format", "rack-json").stdout
    c = flow("simulator", "export", "--racks", "2", "--seed", "6", "--format", "rack-json").stdout
    assert a == b
    assert a != c
    assert len(json.loads(a)) == 2
    # The running simulator (seed 0) exported the same Racks `export` writes.
    out = tmp_path / "racks.yaml"
    flow("simulator", "export", "--racks", "3", "--format", "k8s", "-o", str(out))
    assert list(yaml.safe_load_all(out.read_text())) == sim.racks


def test_site_and_fault_files(tmp_path: Path) -> None:
    site = generate_site(1, seed=42)
    dump_site(site, tmp_path / "site.json")
    broken = site.racks[0].of_type(ComponentType.NVSWITCH)[1]
    (tmp_path / "faults.yaml").write_text(
        yaml.safe_dump({"failing": [broken.serial], "latency": {"Version": "50ms"}})
    )
    running = start(
        tmp_path,
        "--site",
        str(tmp_path / "site.json"),
        "--faults",
        str(tmp_path / "faults.yaml"),
        "--error",
        "Version:1:PERMISSION_DENIED",
        "--latency",
        "FindSwitchIds=20ms",
    )
    try:
        assert running.info["counts"]["racks"] == 1
        assert running.ids(0, "nvswitch")[1] == broken.core_id
        faults = running.control("GET", "/v1/faults")
        assert faults["latency"] == {"Version": 0.05, "FindSwitchIds": 0.02}
        assert faults["errors"][0]["code"] == "PERMISSION_DENIED"
        with running.channel as ch:
            resp = forge_pb2_grpc.ForgeStub(ch).ComponentPowerControl(
                forge_pb2.ComponentPowerControlRequest(
                    switch_ids=forge_pb2.SwitchIdList(
                        ids=[common_pb2.SwitchId(id=i) for i in running.ids(0, "nvswitch")[:2]]
                    ),
                    action=SPC.SYSTEM_POWER_CONTROL_FORCE_OFF,
                ),
                timeout=10,
            )
            with pytest.raises(grpc.RpcError) as err:
                forge_pb2_grpc.ForgeStub(ch).Version(forge_pb2.VersionRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [r.status for r in resp.results] == [
            forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS,
            forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INTERNAL_ERROR,
        ]
    finally:
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(15) == 0
