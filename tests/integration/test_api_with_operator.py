"""The operation RPCs of the Flow API end to end: `flow serve` turns each
request into a TaskSpec, the operator runs its Tasks through the simulator,
and the task RPCs report the outcome."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from nicoflow._proto.flow.v1 import flow_pb2, flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack
from nicoflow.devstack.postgres import Postgres

NS = "api-e2e"
DONE = {
    flow_pb2.TASK_STATUS_COMPLETED,
    flow_pb2.TASK_STATUS_FAILED,
    flow_pb2.TASK_STATUS_TERMINATED,
}


@pytest.fixture(scope="module")
def flow(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowStack]:
    db = f"t_apiop_{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", NS)
    stack = FlowStack(
        control_plane,
        postgres.create_database(db),
        tmp_path_factory.mktemp("apiop"),
        racks=2,
        seed=41,
        sim_args=("--latency-power", "0s", "--latency-firmware", "2s"),
        namespaces=(NS,),
    )
    with stack:
        yield stack
    control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    postgres.drop_database(db)


@pytest.fixture(scope="module")
def stub(flow: FlowStack) -> Iterator[flow_pb2_grpc.FlowStub]:
    service = flow.start_api(namespace=NS)
    with grpc.insecure_channel(str(service.ready_info["grpc"])) as channel:
        yield flow_pb2_grpc.FlowStub(channel)
    service.stop()


def racks(flow: FlowStack) -> flow_pb2.OperationTargetSpec:
    return flow_pb2.OperationTargetSpec(
        racks=flow_pb2.RackTargets(targets=[flow_pb2.RackTarget(name=n) for n in flow.rack_names])
    )


def wait_tasks(
    stub: flow_pb2_grpc.FlowStub, reply: flow_pb2.SubmitTaskResponse, timeout: float = 180
) -> list[flow_pb2.Task]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = list(
            stub.GetTasksByIDs(flow_pb2.GetTasksByIDsRequest(task_ids=reply.task_ids)).tasks
        )
        if len(tasks) == len(reply.task_ids) and all(t.status in DONE for t in tasks):
            return tasks
        assert time.monotonic() < deadline, tasks
        time.sleep(1)


def test_forced_power_off_then_power_on(flow: FlowStack, stub: flow_pb2_grpc.FlowStub) -> None:
    assert flow.control is not None
    off = stub.PowerOffRack(flow_pb2.PowerOffRackRequest(target_spec=racks(flow), forced=True))
    assert len(off.task_ids) == 2
    tasks = wait_tasks(stub, off)
    assert {t.status for t in tasks} == {flow_pb2.TASK_STATUS_COMPLETED}, tasks
    assert all("PowerOff" in t.operation and "forced" in t.operation for t in tasks)
    for name in flow.rack_names:
        powered = {c["power"] for c in flow.control.rack(name)["components"] if c["kind"] != "dpu"}
        assert powered == {"off"}
    on = stub.PowerOnRack(flow_pb2.PowerOnRackRequest(target_spec=racks(flow)))
    tasks = wait_tasks(stub, on)
    assert {t.status for t in tasks} == {flow_pb2.TASK_STATUS_COMPLETED}, tasks
    for name in flow.rack_names:
        powered = {c["power"] for c in flow.control.rack(name)["components"] if c["kind"] != "dpu"}
        assert powered == {"on"}
    report = tasks[0].report
    assert '"stages"' in report


def test_firmware_upgrade_of_switches(flow: FlowStack, stub: flow_pb2_grpc.FlowStub) -> None:
    target = flow_pb2.OperationTargetSpec(
        racks=flow_pb2.RackTargets(
            targets=[
                flow_pb2.RackTarget(
                    name=flow.rack_names[0], component_types=[flow_pb2.COMPONENT_TYPE_NVSWITCH]
                )
            ]
        )
    )
    reply = stub.UpgradeFirmware(
        flow_pb2.UpgradeFirmwareRequest(target_spec=target, sub_targets=["bmc"])
    )
    (task,) = wait_tasks(stub, reply)
    assert task.status == flow_pb2.TASK_STATUS_COMPLETED, task.message
    assert flow.control is not None
    applied = [e for e in flow.control.ledger(method="UpdateComponentFirmware") if e["applied"]]
    assert len(applied) == 9  # the nine switch trays of the rack


def test_bring_up_of_ingested_racks(flow: FlowStack, stub: flow_pb2_grpc.FlowStub) -> None:
    reply = stub.BringUpRack(flow_pb2.BringUpRackRequest(target_spec=racks(flow)))
    tasks = wait_tasks(stub, reply, timeout=240)
    assert {t.status for t in tasks} == {flow_pb2.TASK_STATUS_COMPLETED}, [t.message for t in tasks]


def test_task_list_and_cancel_of_a_finished_task(
    flow: FlowStack, stub: flow_pb2_grpc.FlowStub
) -> None:
    listed = stub.ListTasks(flow_pb2.ListTasksRequest())
    assert listed.total >= 4
    finished = listed.tasks[0]
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelTask(flow_pb2.CancelTaskRequest(task_id=finished.id))
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_ingest_registers_expected_components(
    flow: FlowStack, stub: flow_pb2_grpc.FlowStub
) -> None:
    reply = stub.IngestRack(flow_pb2.IngestRackRequest(target_spec=racks(flow)))
    tasks = wait_tasks(stub, reply, timeout=120)
    assert {t.status for t in tasks} == {flow_pb2.TASK_STATUS_COMPLETED}, [t.message for t in tasks]
