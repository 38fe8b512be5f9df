"""Ingest end to end: a rack Core has never seen is declared as a Rack with
BMC MACs and a credentials Secret but no Core ids; an ingest TaskSpec
registers every component with the simulated Core, with the Secret's
credentials and the rack's Core id, and repeating it changes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from operator_fixtures import Env, operator_stack

from nicoflow._proto.nico import forge_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, phase
from nicoflow.devstack.postgres import Postgres

NEW_RACK = 1  # index of the rack the simulator has not ingested
SECRET = "rack-bmc-credentials"


def _strip_core_ids(body: dict[str, Any], namespace: str) -> None:
    spec = body["spec"]
    for comp in spec["components"]:
        comp.pop("coreId", None)
    spec["credentialsSecretRef"] = {"name": SECRET, "namespace": namespace}


@pytest.fixture(scope="module")
def env(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    original = FlowStack.apply_racks

    def apply_racks(stack: FlowStack) -> None:
        # the new rack as a person declares it: no Core ids yet
        _strip_core_ids(stack.rack_bodies[NEW_RACK], stack.namespaces[0])
        original(stack)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FlowStack, "apply_racks", apply_racks)
        with operator_stack(
            control_plane,
            postgres,
            tmp_path_factory.mktemp("ingest"),
            racks=2,
            seed=29,
            sim_args=("--latency-power", "0s", "--uningested", "1"),
        ) as e:
            yield e


@pytest.fixture(scope="module")
def core(env: Env) -> Iterator[forge_pb2_grpc.ForgeStub]:
    with grpc.insecure_channel(env.flow.core_address) as channel:
        yield forge_pb2_grpc.ForgeStub(channel)


def _components(env: Env, rack: str) -> list[dict[str, Any]]:
    body = next(b for b in env.flow.rack_bodies if b["metadata"]["name"] == rack)
    comps: list[dict[str, Any]] = body["spec"]["components"]
    return comps


def _host_mac(comp: dict[str, Any]) -> str:
    return str(next(b["macAddress"] for b in comp["bmcs"] if b["type"] == "host")).lower()


def _secret(env: Env, name: str, *, labelled: bool = True) -> None:
    data = {"username": b"flow-admin", "password": b"s3cret", "nvosUsername": b"nvos"}
    labels = {"flow.nico.io/bmc-credentials": "true"} if labelled else {}
    env.flow.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": env.ns, "labels": labels},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


def test_missing_credentials_secret_fails_naming_it(env: Env) -> None:
    rack = env.racks[NEW_RACK]
    env.submit("ingest-no-secret", "ingest", [rack])
    spec = env.wait("ingest-no-secret", timeout=120)
    assert phase(spec) == "Failed"
    task = env.task(env.task_name("ingest-no-secret", rack))
    assert phase(task) == "Failed"
    assert f"{env.ns}/{SECRET} not found" in str(task["status"]), task["status"]
    assert not env.control.ledger(method="AddExpectedMachine")


def test_a_secret_not_labelled_as_credentials_is_not_read(env: Env) -> None:
    rack = env.racks[NEW_RACK]
    _secret(env, SECRET, labelled=False)
    env.submit("ingest-unlabelled", "ingest", [rack])
    spec = env.wait("ingest-unlabelled", timeout=120)
    assert phase(spec) == "Failed"
    task = env.task(env.task_name("ingest-unlabelled", rack))
    assert "not labelled flow.nico.io/bmc-credentials=true" in str(task["status"])
    assert "s3cret" not in json.dumps(task)
    assert not env.control.ledger(method="AddExpectedMachine")


def test_ingest_registers_every_component_with_core(
    env: Env, core: forge_pb2_grpc.ForgeStub
) -> None:
    rack = env.racks[NEW_RACK]
    comps = _components(env, rack)
    _secret(env, SECRET)
    before = {
        e.bmc_mac_address for e in core.GetAllExpectedMachines(empty_pb2.Empty()).expected_machines
    }

    env.submit("ingest-new", "ingest", [rack])
    spec = env.wait("ingest-new", timeout=120)
    task = env.task(env.task_name("ingest-new", rack))
    assert phase(spec) == "Complete", task.get("status")
    assert phase(task) == "Succeeded"
    # the Task addressed the components by BMC MAC: they have no Core id yet
    refs = [r for g in task["spec"]["components"] for r in g["ids"]]
    assert len(refs) == len(comps) == 35
    assert all(r.get("bmcMacAddress") and not r.get("coreId") for r in refs)

    machines = {
        e.bmc_mac_address: e
        for e in core.GetAllExpectedMachines(empty_pb2.Empty()).expected_machines
        if e.bmc_mac_address not in before
    }
    computes = [c for c in comps if c["type"] == "compute"]
    assert set(machines) == {_host_mac(c) for c in computes}
    for c in computes:
        m = machines[_host_mac(c)]
        assert m.chassis_serial_number == c["serialNumber"]
        assert m.rack_id.id == rack
        assert (m.bmc_username, m.bmc_password) == ("flow-admin", "s3cret")
    switches = {
        e.bmc_mac_address: e
        for e in core.GetAllExpectedSwitches(empty_pb2.Empty()).expected_switches
    }
    for c in (c for c in comps if c["type"] == "nvswitch"):
        s = switches[_host_mac(c)]
        assert s.switch_serial_number == c["serialNumber"]
        assert s.nvos_username == "nvos"
    shelves = {
        e.bmc_mac_address: e
        for e in core.GetAllExpectedPowerShelves(empty_pb2.Empty()).expected_power_shelves
    }
    for c in (c for c in comps if c["type"] == "powershelf"):
        assert shelves[_host_mac(c)].shelf_serial_number == c["serialNumber"]

    adds = [e for e in env.control.ledger() if e["method"].startswith("AddExpected")]
    assert len([e for e in adds if e["applied"]]) == 35
    assert env.control.duplicates() == []


def test_ingest_again_changes_nothing(env: Env) -> None:
    rack = env.racks[NEW_RACK]
    seq = env.last_seq()
    env.submit("ingest-again", "ingest", [rack])
    assert phase(env.wait("ingest-again", timeout=120)) == "Complete"
    adds = [
        e for e in env.control.ledger() if e["method"].startswith("AddExpected") and e["seq"] > seq
    ]
    assert len(adds) == 35
    assert not [e for e in adds if e["applied"]]
    assert {e["code"] for e in adds} == {"ALREADY_EXISTS"}


def test_operations_other_than_ingest_need_core_ids(env: Env) -> None:
    rack = env.racks[NEW_RACK]
    env.submit("restart-uningested", "restart", [rack])
    spec = env.wait("restart-uningested", timeout=60)
    assert phase(spec) == "Failed"
    assert "has no NICo Core id yet" in spec["status"]["message"]
