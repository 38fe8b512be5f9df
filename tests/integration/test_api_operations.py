"""Operation and task RPCs over real gRPC, against the real apiserver and
PostgreSQL. The operator does not run here: the tests read the TaskSpec the
server created, and stand in for the operator by creating the Task objects
(with the deterministic names it uses) and archiving rows in task_history."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from api_support import Api, example_rack, running_api, settle_taskspecs
from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import OperationCode
from nicoflow.inventory.queries import archive_task
from nicoflow.kube.resources import LABEL_RACK, LABEL_TASKSPEC, RULES, TASKS, TASKSPECS, task_name


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _rack(api: Api, base: str = "a01", n: int = 0) -> tuple[str, str]:
    name = api.rack_name(base)
    rack = example_rack(name=name, tag=f"{api.tag[:4]}{n:02d}")
    resp = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    return name, resp.id.id


async def _only_taskspec(api: Api) -> dict[str, Any]:
    items = await api.kube.list(TASKSPECS, api.namespace)
    assert len(items) == 1, [i["metadata"]["name"] for i in items]
    return items[0]


def _rack_target(rack_id: str, *types: int) -> pb.OperationTargetSpec:
    return pb.OperationTargetSpec(
        racks=pb.RackTargets(
            targets=[pb.RackTarget(id=pb.UUID(id=rack_id), component_types=list(types))]
        )
    )


async def test_power_off_forced_creates_one_taskspec_and_one_id_per_rack(api: Api) -> None:
    name_a, id_a = await _rack(api, "a01", 0)
    name_b, _ = await _rack(api, "b01", 1)
    resp = await api.stub.PowerOffRack(
        pb.PowerOffRackRequest(
            target_spec=pb.OperationTargetSpec(
                racks=pb.RackTargets(
                    targets=[pb.RackTarget(id=pb.UUID(id=id_a)), pb.RackTarget(name=name_b)]
                )
            ),
            forced=True,
            description="leak drill",
        )
    )
    ts = await _only_taskspec(api)
    meta, spec = ts["metadata"], ts["spec"]
    assert meta["name"].startswith("force-power-off-")
    assert meta["labels"]["flow.nico.io/operation"] == "force_power_off"
    assert spec["operation"] == "force_power_off"
    assert spec["description"] == "leak drill"
    assert spec["targets"] == {"racks": sorted([name_a, name_b])}
    assert spec["conflictStrategy"] == "Reject"
    assert spec["queueTimeoutSeconds"] == 3600
    assert "ruleRef" not in spec

    expected = [
        str(task_id(api.namespace, task_name(meta["name"], r))) for r in sorted([name_a, name_b])
    ]
    assert [t.id for t in resp.task_ids] == expected
    assert json.loads(meta["annotations"]["flow.nico.io/task-ids"]) == dict(
        zip(sorted([name_a, name_b]), expected, strict=True)
    )


async def test_per_rack_component_types_are_kept(api: Api) -> None:
    name_a, id_a = await _rack(api, "a01", 0)
    name_b, id_b = await _rack(api, "b01", 1)
    _, id_c = await _rack(api, "c01", 2)
    resp = await api.stub.PowerResetRack(
        pb.PowerResetRackRequest(
            target_spec=pb.OperationTargetSpec(
                racks=pb.RackTargets(
                    targets=[
                        pb.RackTarget(
                            id=pb.UUID(id=id_a), component_types=[pb.COMPONENT_TYPE_COMPUTE]
                        ),
                        pb.RackTarget(
                            id=pb.UUID(id=id_b), component_types=[pb.COMPONENT_TYPE_COMPUTE]
                        ),
                        pb.RackTarget(
                            id=pb.UUID(id=id_c), component_types=[pb.COMPONENT_TYPE_NVSWITCH]
                        ),
                    ]
                )
            ),
            queue_options=pb.QueueOptions(
                conflict_strategy=pb.CONFLICT_STRATEGY_QUEUE, queue_timeout_seconds=0
            ),
            override_readiness_check=True,
        )
    )
    assert len(resp.task_ids) == 3
    spec = (await _only_taskspec(api))["spec"]
    assert spec["operation"] == "restart"
    assert spec["conflictStrategy"] == "Queue"
    assert spec["queueTimeoutSeconds"] == 3600
    assert spec["options"] == {"overrideReadinessCheck": True}
    targets = spec["targets"]
    # the larger group is named as racks + componentTypes, the other spelled out
    assert targets["racks"] == sorted([name_a, name_b])
    assert targets["componentTypes"] == ["compute"]
    switches = await api.stub.GetComponents(
        pb.GetComponentsRequest(target_spec=_rack_target(id_c, pb.COMPONENT_TYPE_NVSWITCH))
    )
    assert sorted(c["id"] for c in targets["components"]) == sorted(
        c.info.id.id for c in switches.components
    )


async def test_component_targets_and_firmware_options(api: Api) -> None:
    name, rack_id = await _rack(api)
    comps = await api.stub.GetComponents(
        pb.GetComponentsRequest(target_spec=_rack_target(rack_id, pb.COMPONENT_TYPE_POWERSHELF))
    )
    start = datetime(2031, 1, 2, 3, 0, tzinfo=UTC)
    start_ts, end_ts = Timestamp(), Timestamp()
    start_ts.FromDatetime(start)
    end_ts.FromDatetime(start + timedelta(hours=2))
    resp = await api.stub.UpgradeFirmware(
        pb.UpgradeFirmwareRequest(
            target_spec=pb.OperationTargetSpec(
                components=pb.ComponentTargets(
                    targets=[
                        pb.ComponentTarget(
                            external=pb.ExternalRef(
                                type=pb.COMPONENT_TYPE_COMPUTE, id=f"{name}-compute-04"
                            )
                        ),
                        pb.ComponentTarget(id=comps.components[0].info.id),
                    ]
                )
            ),
            target_version='{"compute": "1.4.0", "powershelf": "2.5.0"}',
            sub_targets=["bmc", "bios"],
            start_time=start_ts,
            end_time=end_ts,
        )
    )
    ts = await _only_taskspec(api)
    assert [t.id for t in resp.task_ids] == [
        str(task_id(api.namespace, task_name(ts["metadata"]["name"], name)))
    ]
    spec = ts["spec"]
    assert spec["operation"] == "upgrade"
    assert spec["targets"]["components"] == [
        {"coreId": f"{name}-compute-04", "type": "compute"},
        {"id": comps.components[0].info.id.id},
    ]
    assert spec["options"] == {
        "targetVersion": '{"compute": "1.4.0", "powershelf": "2.5.0"}',
        "subTargets": ["bmc", "bios"],
        "firmwareWindow": {"startTime": "2031-01-02T03:00:00Z", "endTime": "2031-01-02T05:00:00Z"},
        "overrideReadinessCheck": False,  # the CRD's default
    }


async def test_bring_up_ingest_and_rule_ids(api: Api) -> None:
    _, rack_id = await _rack(api)
    target = _rack_target(rack_id)
    await api.stub.BringUpRack(pb.BringUpRackRequest(target_spec=target))
    await settle_taskspecs(api)  # else the bring-up holds the rack (no operator runs here)
    await api.stub.IngestRack(pb.IngestRackRequest(target_spec=target))
    ops = sorted(t["spec"]["operation"] for t in await api.kube.list(TASKSPECS, api.namespace))
    assert ops == ["bring_up", "ingest"]

    # an OperationRule found by its id label, one named by the id, one for another operation
    by_label, by_name, other = (str(uuid.uuid4()) for _ in range(3))
    created = []
    for obj_name, labels, op in (
        (f"rule-{api.tag}", {"flow.nico.io/rule-id": by_label}, "power_on"),
        (by_name, {}, "power_on"),
        (other, {}, "power_off"),
    ):
        code = OperationCode(op)
        await api.kube.create(
            RULES,
            {
                "apiVersion": "flow.nico.io/v1alpha1",
                "kind": "OperationRule",
                "metadata": {"name": obj_name, "labels": labels},
                "spec": {"operation": op, "definition": builtin_rule(code).to_crd()},
            },
        )
        created.append(obj_name)
    try:
        for rule_id, expected in ((by_label, f"rule-{api.tag}"), (by_name, by_name)):
            await settle_taskspecs(api)
            await api.stub.PowerOnRack(
                pb.PowerOnRackRequest(target_spec=target, rule_id=pb.UUID(id=rule_id))
            )
            specs = await api.kube.list(TASKSPECS, api.namespace)
            refs = [s["spec"].get("ruleRef", {}).get("name") for s in specs]
            assert expected in refs
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.PowerOnRack(
                pb.PowerOnRackRequest(target_spec=target, rule_id=pb.UUID(id=other))
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is for power_off, not power_on" in (err.value.details() or "")
    finally:
        for obj_name in created:
            await api.kube.delete(RULES, obj_name)


# --- tasks --------------------------------------------------------------------------------


def _task_body(api: Api, ts_name: str, rack: str, code: str, comps: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": task_name(ts_name, rack),
            "namespace": api.namespace,
            "labels": {LABEL_RACK: rack, LABEL_TASKSPEC: ts_name},
        },
        "spec": {
            "taskSpecName": ts_name,
            "rack": rack,
            "operation": code,
            "components": [
                {"type": "compute", "ids": [{"name": c, "coreId": f"{rack}-{c}"} for c in comps]}
            ],
            "rule": {
                "name": f"builtin-{code}",
                "source": "builtin",
                "definition": builtin_rule(OperationCode(code)).to_crd(),
            },
        },
    }


_NOW = "2030-05-06T07:08:09Z"


def _running_status() -> dict[str, Any]:
    return {
        "phase": "Running",
        "message": "stage 2 of 2",
        "startTime": _NOW,
        "currentStage": 2,
        "stageCount": 2,
        "stages": [
            {
                "number": 1,
                "phase": "Succeeded",
                "startedAt": _NOW,
                "finishedAt": _NOW,
                "steps": [
                    {
                        "componentType": "compute",
                        "phase": "Succeeded",
                        "components": [
                            {"id": "c1", "name": "compute-01", "phase": "Succeeded"},
                            {"id": "c2", "name": "compute-02", "phase": "Succeeded"},
                        ],
                        "startedAt": _NOW,
                        "finishedAt": _NOW,
                    }
                ],
            },
            {
                "number": 2,
                "phase": "Running",
                "startedAt": _NOW,
                "steps": [
                    {
                        "componentType": "compute",
                        "phase": "Running",
                        "total": 2,
                        "succeeded": 1,
                        "failed": 1,
                        "error": "compute-02: BMC did not answer",
                        "startedAt": _NOW,
                    }
                ],
            },
        ],
    }


async def _submit_power_off(api: Api, rack_id: str) -> tuple[str, str]:
    resp = await api.stub.PowerOffRack(
        pb.PowerOffRackRequest(
            target_spec=_rack_target(rack_id, pb.COMPONENT_TYPE_COMPUTE),
            forced=True,
            description="drain row a",
        )
    )
    ts = await _only_taskspec(api)
    return ts["metadata"]["name"], resp.task_ids[0].id


def _task_lists(cp: ControlPlane) -> float:
    """LIST requests for Task objects in one namespace (as the API made them)
    the apiserver has served so far; operators list all namespaces."""
    total = 0.0
    for line in cp.metrics().splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="tasks"' in line
            and 'verb="LIST"' in line
            and 'scope="namespace"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_live_task_is_listed_read_and_cancelled_by_its_returned_id(
    api: Api, control_plane: ControlPlane
) -> None:
    rack, rack_id = await _rack(api)
    ts_name, tid = await _submit_power_off(api, rack_id)
    body = _task_body(api, ts_name, rack, "force_power_off", ["compute-01", "compute-02"])
    await api.create_task(body)
    await api.kube.patch_status(TASKS, body["metadata"]["name"], _running_status(), api.namespace)
    lists_before = _task_lists(control_plane)

    listed = await api.stub.ListTasks(pb.ListTasksRequest(rack_id=pb.UUID(id=rack_id)))
    assert listed.total == 1
    task = listed.tasks[0]
    assert task.id.id == tid
    assert task.status == pb.TASK_STATUS_RUNNING
    assert task.operation == "ForcePowerOff, forced true"
    assert task.rack_id.id == rack_id
    assert task.description == "drain row a"
    assert task.message == "stage 2 of 2"
    assert task.report == ""  # only with_report
    assert task.HasField("started_at")
    assert not task.HasField("finished_at")
    comps = await api.stub.GetComponents(
        pb.GetComponentsRequest(target_spec=_rack_target(rack_id, pb.COMPONENT_TYPE_COMPUTE))
    )
    wanted = {c.info.id.id for c in comps.components if c.info.name in ("compute-01", "compute-02")}
    assert {u.id for u in task.component_uuids} == wanted

    got = await api.stub.GetTasksByIDs(pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=tid)]))
    assert [t.id.id for t in got.tasks] == [tid]
    report = json.loads(got.tasks[0].report)
    assert report["version"] == 1
    assert [s["status"] for s in report["stages"]] == ["completed", "running"]
    first, second = report["stages"][0]["steps"][0], report["stages"][1]["steps"][0]
    assert first["component_type"] == "Compute"
    # counters filled from the per-component results, or from the step totals
    assert (first["total_components"], first["completed_components"]) == (2, 2)
    assert (second["total_components"], second["completed_components"]) == (2, 1)
    assert second["failed_components"] == 1
    assert second["error"] == "compute-02: BMC did not answer"
    assert first["started_at"] == _NOW

    # by component: only tasks touching it
    one = next(c for c in comps.components if c.info.name == "compute-01")
    other = next(c for c in comps.components if c.info.name == "compute-09")
    hit = await api.stub.ListTasks(pb.ListTasksRequest(component_id=one.info.id))
    assert [t.id.id for t in hit.tasks] == [tid]
    miss = await api.stub.ListTasks(pb.ListTasksRequest(component_id=other.info.id))
    assert miss.total == 0

    cancelled = await api.stub.CancelTask(pb.CancelTaskRequest(task_id=pb.UUID(id=tid)))
    assert cancelled.task.id.id == tid
    obj = await api.kube.get(TASKS, body["metadata"]["name"], api.namespace)
    assert obj["spec"]["cancel"] is True

    # once the operator has cancelled it (and archived it), cancelling again is a no-op
    done = await api.kube.patch_status(
        TASKS,
        body["metadata"]["name"],
        {"phase": "Cancelled", "completionTime": _NOW},
        api.namespace,
    )
    async with api.sessions() as session, session.begin():
        await archive_task(session, done)
    again = await api.stub.CancelTask(pb.CancelTaskRequest(task_id=pb.UUID(id=tid)))
    assert again.task.status == pb.TASK_STATUS_TERMINATED
    assert again.task.HasField("finished_at")
    active = await api.stub.ListTasks(pb.ListTasksRequest(active_only=True))
    assert active.total == 0
    # every query above was answered from the task index: no Task was listed
    assert _task_lists(control_plane) == lists_before


async def test_finished_tasks_cannot_be_cancelled(api: Api) -> None:
    rack, rack_id = await _rack(api)
    ts_name, tid = await _submit_power_off(api, rack_id)
    body = _task_body(api, ts_name, rack, "force_power_off", ["compute-01"])
    await api.create_task(body)
    await api.kube.patch_status(
        TASKS,
        body["metadata"]["name"],
        {"phase": "Succeeded", "completionTime": _NOW},
        api.namespace,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.CancelTask(pb.CancelTaskRequest(task_id=pb.UUID(id=tid)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already completed" in (err.value.details() or "")
    obj = await api.kube.get(TASKS, body["metadata"]["name"], api.namespace)
    assert not obj["spec"].get("cancel")


def _history(
    api: Api, name: str, rack: str, phase: str, finished: str, **kw: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "namespace": api.namespace,
        "task_spec_name": name.rsplit("-", 2)[0],
        "rack_name": rack,
        "operation_code": "restart",
        "phase": phase,
        "message": "Succeeded" if phase == "Succeeded" else "compute-03 failed",
        "created_at": "2030-01-01T00:00:00Z",
        "finished_at": finished,
        **kw,
    }


async def test_archived_tasks_are_found_by_returned_id_and_uid(api: Api) -> None:
    rack, rack_id = await _rack(api)
    ts_name, tid = await _submit_power_off(api, rack_id)
    comps = await api.stub.GetComponents(
        pb.GetComponentsRequest(target_spec=_rack_target(rack_id, pb.COMPONENT_TYPE_COMPUTE))
    )
    comp = comps.components[0].info.id.id
    # the Task of this submission, archived after it finished (its object is gone)
    mine = _history(
        api,
        task_name(ts_name, rack),
        rack,
        "Failed",
        "2030-01-01T01:00:00Z",
        rack_id=rack_id,
        components={"compute": [comp]},
        report={
            "stages": [
                {
                    "number": 1,
                    "phase": "Failed",
                    "startedAt": "2030-01-01T00:10:00Z",
                    "error": "compute-03 failed",
                    "steps": [
                        {
                            "componentType": "compute",
                            "phase": "Failed",
                            "total": 18,
                            "succeeded": 17,
                            "failed": 1,
                            "error": "compute-03 failed",
                        }
                    ],
                }
            ]
        },
    )
    older = [
        _history(
            api,
            f"restart-{i:08x}-{rack}",
            rack,
            "Succeeded",
            f"2029-12-0{i + 1}T00:00:00Z",
            rack_id=rack_id,
        )
        for i in range(3)
    ]
    async with api.sessions() as session, session.begin():
        for record in [mine, *older]:
            await archive_task(session, record)

    got = await api.stub.GetTasksByIDs(
        pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=tid), pb.UUID(id=older[1]["id"])])
    )
    assert [t.id.id for t in got.tasks] == [tid, older[1]["id"]]
    failed = got.tasks[0]
    assert failed.status == pb.TASK_STATUS_FAILED
    assert failed.operation == "Restart, forced false"
    assert failed.rack_id.id == rack_id
    assert [u.id for u in failed.component_uuids] == [comp]
    report = json.loads(failed.report)
    assert report["error"] == "compute-03 failed"
    step = report["stages"][0]["steps"][0]
    assert (step["status"], step["completed_components"], step["failed_components"]) == (
        "failed",
        17,
        1,
    )
    assert got.tasks[1].status == pb.TASK_STATUS_COMPLETED

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.CancelTask(pb.CancelTaskRequest(task_id=pb.UUID(id=tid)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already failed" in (err.value.details() or "")

    # listing pages over the archive, newest finished first, with name-based ids
    first = await api.stub.ListTasks(
        pb.ListTasksRequest(
            rack_id=pb.UUID(id=rack_id), pagination=pb.Pagination(offset=0, limit=2)
        )
    )
    assert first.total == 4
    assert [t.id.id for t in first.tasks] == [
        tid,
        str(task_id(api.namespace, older[2]["name"])),
    ]
    rest = await api.stub.ListTasks(
        pb.ListTasksRequest(
            rack_id=pb.UUID(id=rack_id), pagination=pb.Pagination(offset=2, limit=5)
        )
    )
    assert [t.id.id for t in rest.tasks] == [
        str(task_id(api.namespace, older[1]["name"])),
        str(task_id(api.namespace, older[0]["name"])),
    ]
    by_comp = await api.stub.ListTasks(pb.ListTasksRequest(component_id=pb.UUID(id=comp)))
    assert [t.id.id for t in by_comp.tasks] == [tid]


async def test_archived_copy_wins_over_the_live_object(api: Api) -> None:
    rack, rack_id = await _rack(api)
    ts_name, tid = await _submit_power_off(api, rack_id)
    body = _task_body(api, ts_name, rack, "force_power_off", ["compute-01"])
    created = await api.create_task(body)
    await api.kube.patch_status(
        TASKS, body["metadata"]["name"], {"phase": "Running"}, api.namespace
    )
    # archived under the object's UID with its final state; the object is still there
    async with api.sessions() as session, session.begin():
        await archive_task(
            session,
            _history(
                api,
                body["metadata"]["name"],
                rack,
                "Succeeded",
                "2030-01-01T01:00:00Z",
                id=created["metadata"]["uid"],
                operation_code="force_power_off",
            ),
        )
    listed = await api.stub.ListTasks(pb.ListTasksRequest())
    assert listed.total == 1
    assert listed.tasks[0].id.id == tid
    assert listed.tasks[0].status == pb.TASK_STATUS_COMPLETED
    got = await api.stub.GetTasksByIDs(
        pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=created["metadata"]["uid"])])
    )
    assert got.tasks[0].status == pb.TASK_STATUS_COMPLETED
