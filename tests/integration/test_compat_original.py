"""Compatibility with the original service's clients: requests built exactly
as its CLI and Go client build them (tests/integration/original_client.py)
go to `flow serve`, and the answers are checked field by field, the way an
unchanged client reads them.

The operator does not run here; where an answer depends on a Task, the test
creates the Task object the operator would create (deterministic name)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from api_support import Api, running_api
from original_client import (
    component_add,
    component_update,
    ingest,
    power_control,
    rack_create,
    rule_batch,
    targets,
    upgrade_firmware,
)

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.controller.racks import forget
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import OperationCode
from nicoflow.inventory.queries import archive_task
from nicoflow.kube.resources import (
    LABEL_RACK,
    LABEL_TASKSPEC,
    RACKS,
    RULES,
    TASKS,
    TASKSPECS,
    task_name,
)
from nicoflow.service.rules import ANNOTATION_RULE_NAME

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        try:
            yield a
        finally:
            # rules are cluster-scoped: leave none of this test's behind
            for item in await a.kube.list(RULES):
                shown = (item["metadata"].get("annotations") or {}).get(ANNOTATION_RULE_NAME, "")
                if a.tag in shown:
                    with contextlib.suppress(Exception):
                        await a.kube.delete(RULES, item["metadata"]["name"])


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


# Components in the order the file lists them (deliberately not by type or slot).
LAYOUT = (
    ("compute", "compute-02", 12, 1),
    ("compute", "compute-01", 11, 0),
    ("nvswitch", "nvswitch-01", 20, 0),
    ("powershelf", "powershelf-01", 1, 0),
)


def rack_doc(
    api: Api, name: str, n: int, *, core_ids: bool = True, layout: Any = LAYOUT
) -> dict[str, Any]:
    """A rack file as `flow rack create -f` reads it."""
    tag = f"{api.tag[:4]}{n:02d}"
    components = []
    for i, (ctype, cname, slot, tray) in enumerate(layout):
        components.append(
            {
                "type": ctype,
                "info": {
                    "name": cname,
                    "manufacturer": "NVIDIA",
                    "model": f"{ctype} tray",
                    "serial_number": f"{cname}-{i}-{tag}".replace(" ", "_"),
                },
                "firmware_version": "1.2.3",
                "component_id": f"{name}-{cname}-{i}".replace(" ", "_") if core_ids else "",
                "position": {"slot_id": slot, "tray_index": tray, "host_id": 0},
                "bmcs": [
                    {
                        "type": "host",
                        "mac": f"02:{tag[0:2]}:{tag[2:4]}:{tag[4:6]}:{i:02x}:01",
                        "ip": f"10.9.{n}.{i + 1}",
                    }
                ],
            }
        )
    return {
        "info": {
            "name": name,
            "manufacturer": "NVIDIA",
            "model": "GB200 NVL72",
            "serial_number": f"NVL72-{tag}",
            "description": "compat rack",
        },
        "location": {"region": "us-west", "datacenter": "dc1", "room": "r1", "position": "a/1"},
        "components": components,
    }


def core_id(rack: str, name: str) -> str:
    """The NICo Core id rack_doc gives a component of LAYOUT."""
    index = [n for _, n, _, _ in LAYOUT].index(name)
    return f"{rack}-{name}-{index}"


async def create_rack(api: Api, doc: dict[str, Any]) -> str:
    return (await api.stub.CreateExpectedRack(rack_create(doc))).id.id


def operator_task(
    api: Api, taskspec: str, rack: str, code: str, comps: list[tuple[str, str]]
) -> dict[str, Any]:
    """The Task the operator would create for `rack` (components (type, name))."""
    groups: dict[str, list[dict[str, str]]] = {}
    for ctype, cname in comps:
        groups.setdefault(ctype, []).append({"name": cname, "coreId": core_id(rack, cname)})
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": task_name(taskspec, rack),
            "namespace": api.namespace,
            "labels": {LABEL_RACK: rack, LABEL_TASKSPEC: taskspec},
        },
        "spec": {
            "taskSpecName": taskspec,
            "rack": rack,
            "operation": code,
            "components": [{"type": t, "ids": ids} for t, ids in groups.items()],
            "rule": {
                "name": f"builtin-{code}",
                "source": "builtin",
                "definition": builtin_rule(OperationCode(code)).to_crd(),
            },
        },
    }


async def run_as_operator(api: Api, phase: str) -> list[str]:
    """Stand in for the operator: every unresolved TaskSpec gets its Tasks
    (racks from the task-ids annotation), in `phase`. The Task names."""
    made = []
    for ts in await api.kube.list(TASKSPECS, api.namespace):
        if (ts.get("status") or {}).get("racks") is not None:
            continue
        name, code = ts["metadata"]["name"], ts["spec"]["operation"]
        racks = json.loads(ts["metadata"]["annotations"]["flow.nico.io/task-ids"])
        excluded = ts["spec"]["targets"].get("excludeRacks") or []
        entries = []
        for rack in sorted(set(racks) - set(excluded)):
            body = operator_task(api, name, rack, code, [("compute", "compute-01")])
            await api.create_task(body)
            await api.kube.patch_status(
                TASKS, body["metadata"]["name"], {"phase": phase}, api.namespace
            )
            entries.append({"name": body["metadata"]["name"], "rack": rack, "phase": phase})
            made.append(body["metadata"]["name"])
        await api.kube.patch_status(
            TASKSPECS, name, {"racks": len(entries), "tasks": entries}, api.namespace
        )
    return made


async def call(api: Api, method: str, request: Any) -> Any:
    return await getattr(api.stub, method)(request)


# --- item 2: rules from the original's YAML batch ----------------------------------------------

RULES_YAML = """
version: v1
rules:
  - name: staged-force-on-{tag}
    description: shelves, then switches, then compute with a pause
    operation_type: power_control
    operation: force_power_on
    steps:
      - component_type: powershelf
        stage: 1
        max_parallel: 0
        timeout: 15m
        retry: {{max_attempts: 3, initial_interval: 5s, backoff_coefficient: 2.0}}
        main_operation: {{name: PowerControl}}
        post_operation:
          - name: VerifyPowerStatus
            timeout: 5m
            poll_interval: 10s
            parameters: {{expected_status: "on"}}
      - component_type: nvswitch
        stage: 2
        main_operation: {{name: PowerControl}}
      - component_type: compute
        stage: 3
        max_parallel: 4
        pre_operation:
          - name: Sleep
            parameters: {{duration: 10s}}
        main_operation: {{name: PowerControl}}
  - name: gentle-restart-{tag}
    operation_type: power_control
    operation: force_restart
    steps:
      - component_type: compute
        stage: 1
        main_operation: {{name: PowerControl, parameters: {{operation: force_power_off}}}}
        post_operation:
          - name: Sleep
            parameters: {{duration: 1m30s}}
      - component_type: compute
        stage: 2
        main_operation: {{name: PowerControl, parameters: {{operation: force_power_on}}}}
"""


async def test_rules_from_the_original_yaml_batch_are_created_as_sent(api: Api) -> None:
    """The original CLI sends "0s" for every unset duration and a Sleep's
    duration as integer nanoseconds; every rule of a batch is a default."""
    batch = rule_batch(RULES_YAML.format(tag=api.tag))
    sent = json.loads(batch[0].request.rule_definition_json)
    assert sent["steps"][2]["pre_operation"][0]["parameters"]["duration"] == 10_000_000_000
    assert sent["steps"][1]["timeout"] == "0s"

    ids = []
    for rule in batch:
        resp = await api.stub.CreateOperationRule(rule.request)
        ids.append(resp.id.id)
    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=ids[0])))
    assert got.id.id == ids[0]
    assert got.name == f"staged-force-on-{api.tag}"
    assert got.description == "shelves, then switches, then compute with a pause"
    assert got.operation_type == pb.OPERATION_TYPE_POWER_CONTROL
    assert got.operation_code == "force_power_on"
    assert got.is_default
    assert got.HasField("created_at")
    assert got.HasField("updated_at")
    steps = json.loads(got.rule_definition_json)["steps"]
    assert [(s["component_type"], s["stage"]) for s in steps] == [
        ("powershelf", 1),
        ("nvswitch", 2),
        ("compute", 3),
    ]
    shelves, switches, compute = steps
    assert shelves["timeout"] == "15m0s"
    assert shelves["retry"]["initial_interval"] == "5s"
    assert shelves["retry"]["max_attempts"] == 3
    assert shelves["post_operation"][0]["timeout"] == "5m0s"
    assert shelves["post_operation"][0]["poll_interval"] == "10s"
    assert "timeout" not in switches  # "0s" was "use the default"
    assert "timeout" not in shelves["main_operation"]
    assert compute["max_parallel"] == 4
    assert compute["pre_operation"][0]["parameters"]["duration"] == "10s"
    second = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=ids[1])))
    post = json.loads(second.rule_definition_json)["steps"][0]["post_operation"][0]
    assert post["parameters"]["duration"] == "1m30s"

    listed = await api.stub.ListOperationRules(
        pb.ListOperationRulesRequest(
            operation_type=pb.OPERATION_TYPE_POWER_CONTROL, is_default=True
        )
    )
    assert set(ids) <= {r.id.id for r in listed.rules}


async def test_overwrite_as_the_original_cli_does_it_replaces_the_rule(api: Api) -> None:
    """`rule create --from-yaml --overwrite` finds the rule of the same
    operation type and code, deletes it, and creates the new one: the create
    must succeed, or the operation is left without its rule."""
    [first] = rule_batch(RULES_YAML.format(tag=api.tag))[1:]
    old_id = (await api.stub.CreateOperationRule(first.request)).id.id

    changed = RULES_YAML.format(tag=api.tag).replace("1m30s", "45s")
    [replacement] = rule_batch(changed)[1:]
    # findExistingRule: list everything, match type and code
    listed = await api.stub.ListOperationRules(pb.ListOperationRulesRequest())
    [existing] = [
        r
        for r in listed.rules
        if r.operation_type == replacement.operation_type
        and r.operation_code == replacement.operation
        and api.tag in r.name
    ]
    assert existing.id.id == old_id
    await api.stub.DeleteOperationRule(pb.DeleteOperationRuleRequest(rule_id=existing.id))
    new_id = (await api.stub.CreateOperationRule(replacement.request)).id.id

    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=new_id)))
    assert got.is_default
    post = json.loads(got.rule_definition_json)["steps"][0]["post_operation"][0]
    assert post["parameters"]["duration"] == "45s"
    code, _ = await _code(
        api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=old_id)))
    )
    assert code == grpc.StatusCode.NOT_FOUND


# --- item 5: a conflicting request is refused at submission ----------------------------------


async def test_a_conflicting_request_gets_no_task_id(api: Api) -> None:
    """`flow power control --rack-names R --type compute --op force-off`, twice:
    the second finds the first still running and is refused with no id."""
    rack = api.rack_name("a01")
    await create_rack(api, rack_doc(api, rack, 1))
    first = power_control("force-off", targets(rack_names=[rack], ctype="compute"))
    resp = await call(api, first.method, first.request)
    [tid] = [t.id for t in resp.task_ids]
    [running] = await run_as_operator(api, "Running")

    again = power_control("force-off", targets(rack_names=[rack], ctype="compute"))
    code, message = await _code(call(api, again.method, again.request))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith("failed to create any tasks")
    assert tid in message  # which task it conflicts with, by the id the client holds
    assert running in message
    assert len(await api.kube.list(TASKSPECS, api.namespace)) == 1  # nothing was made

    # a request that conflicts with nothing on the rack still goes through
    shelves = power_control("on", targets(rack_names=[rack], ctype="nvswitch"))
    assert len((await call(api, shelves.method, shelves.request)).task_ids) == 1


async def test_unresolved_submissions_count_and_a_full_queue_is_refused(api: Api) -> None:
    rack = api.rack_name("a01")
    rack_id = await create_rack(api, rack_doc(api, rack, 1))
    first = power_control("force-restart", targets(rack_ids=[rack_id]))
    await call(api, first.method, first.request)
    # the operator has not split it yet: a second one right away is refused all the same
    code, _ = await _code(call(api, first.method, first.request))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    await run_as_operator(api, "Running")

    queued = pb.PowerResetRackRequest(
        target_spec=targets(rack_ids=[rack_id]),
        forced=True,
        queue_options=pb.QueueOptions(conflict_strategy=pb.CONFLICT_STRATEGY_QUEUE),
    )
    for _ in range(5):
        assert len((await api.stub.PowerResetRack(queued)).task_ids) == 1
        await run_as_operator(api, "Waiting")
    code, message = await _code(api.stub.PowerResetRack(queued))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full (5/5)" in message


async def test_a_busy_rack_is_left_out_and_the_others_get_ids(api: Api) -> None:
    busy, free = api.rack_name("a01"), api.rack_name("b01")
    await create_rack(api, rack_doc(api, busy, 1))
    await create_rack(api, rack_doc(api, free, 2))
    first = power_control("force-off", targets(rack_names=[busy]))
    await call(api, first.method, first.request)
    await run_as_operator(api, "Running")

    both = power_control("force-off", targets(rack_names=[busy, free]))
    resp = await call(api, both.method, both.request)
    [spec] = [
        ts
        for ts in await api.kube.list(TASKSPECS, api.namespace)
        if (ts.get("status") or {}).get("racks") is None
    ]
    assert spec["spec"]["targets"]["excludeRacks"] == [busy]
    assert [t.id for t in resp.task_ids] == [
        str(task_id(api.namespace, task_name(spec["metadata"]["name"], free)))
    ]


# --- item 3: ingest registers racks NICo Core has never seen ----------------------------------


async def test_ingest_by_rack_names_accepts_racks_core_does_not_know(api: Api) -> None:
    known, new = api.rack_name("a01"), api.rack_name("b01")
    await create_rack(api, rack_doc(api, known, 1))
    await create_rack(api, rack_doc(api, new, 2, core_ids=False))
    resp = await api.stub.IngestRack(ingest(targets(rack_names=[new]), "first ingest"))
    assert len(resp.task_ids) == 1
    await run_as_operator(api, "Succeeded")
    both = await api.stub.IngestRack(ingest(targets(rack_names=[known, new]), "again"))
    assert len(both.task_ids) == 2  # the rack Core does not know is not silently left out


# --- item 1: DeleteRack, then PurgeRack ------------------------------------------------------


async def test_purge_after_delete_works_once_the_operator_saw_the_deletion(api: Api) -> None:
    """`flow rack delete --id`, then `flow rack purge --id`. The operator sees
    the Rack object go in between (its finalizer) and must keep the rows."""
    rack = api.rack_name("a01")
    rack_id = await create_rack(api, rack_doc(api, rack, 1))
    listed = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
    )
    comp_id = listed.rack.components[0].info.id
    await api.stub.DeleteRack(pb.DeleteRackRequest(id=pb.UUID(id=rack_id)))
    await forget(api.sessions, rack)  # what the operator does on the object's deletion
    code, _ = await _code(
        api.stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    await api.stub.PurgeRack(pb.PurgeRackRequest(id=pb.UUID(id=rack_id)))
    code, _ = await _code(api.stub.PurgeRack(pb.PurgeRackRequest(id=pb.UUID(id=rack_id))))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await _code(api.stub.GetComponentInfoByID(pb.GetComponentInfoByIDRequest(id=comp_id)))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_rack_object_deleted_with_kubectl_can_be_purged(api: Api) -> None:
    rack = api.rack_name("a01")
    rack_id = await create_rack(api, rack_doc(api, rack, 1))
    await api.kube.delete(RACKS, rack)
    await forget(api.sessions, rack)
    code, message = await _code(
        api.stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "deleted" in message
    code, _ = await _code(api.stub.DeleteRack(pb.DeleteRackRequest(id=pb.UUID(id=rack_id))))
    assert code == grpc.StatusCode.NOT_FOUND  # already deleted, as in the original
    await api.stub.PurgeRack(pb.PurgeRackRequest(id=pb.UUID(id=rack_id)))


# --- item 6: the Task fields a client reads ------------------------------------------------


async def test_task_fields_as_the_original_wrote_them_live_and_archived(api: Api) -> None:
    rack = api.rack_name("a01")
    rack_id = await create_rack(api, rack_doc(api, rack, 1))
    rule = await api.stub.CreateOperationRule(
        pb.CreateOperationRuleRequest(
            name=f"drain {api.tag}",
            operation_type=pb.OPERATION_TYPE_POWER_CONTROL,
            operation_code="force_power_off",
            rule_definition_json=builtin_rule(OperationCode.FORCE_POWER_OFF).to_json(),
        )
    )
    # a Go client library caller setting a description and a rule
    resp = await api.stub.PowerOffRack(
        pb.PowerOffRackRequest(
            target_spec=targets(rack_names=[rack], ctype="compute"),
            forced=True,
            description="drain row a",
            rule_id=rule.id,
        )
    )
    [tid] = [t.id for t in resp.task_ids]
    [ts] = await api.kube.list(TASKSPECS, api.namespace)
    rule_obj = ts["spec"]["ruleRef"]["name"]
    # the Task as the operator makes it: description copied, the rule it ran
    body = operator_task(
        api, ts["metadata"]["name"], rack, "force_power_off", [("compute", "compute-01")]
    )
    body["spec"]["description"] = "drain row a"
    body["spec"]["rule"]["name"] = rule_obj
    body["spec"]["rule"]["source"] = "explicit"
    created = await api.create_task(body)
    name = created["metadata"]["name"]
    await api.kube.patch_status(TASKS, name, {"phase": "Waiting"}, api.namespace)

    [waiting] = (
        await api.stub.GetTasksByIDs(pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=tid)]))
    ).tasks
    assert waiting.operation == "ForcePowerOff, forced true"
    assert waiting.description == "drain row a"
    assert waiting.applied_rule_id.id == rule.id.id
    assert waiting.executor_type == pb.TASK_EXECUTOR_TYPE_UNKNOWN  # not dispatched yet
    assert waiting.rack_id.id == rack_id

    stages = [
        {
            "number": 1,
            "phase": "Succeeded",
            "startedAt": "2030-01-01T00:00:00Z",
            "finishedAt": "2030-01-01T00:01:00Z",
            "steps": [
                {"componentType": "compute", "phase": "Succeeded", "total": 1, "succeeded": 1}
            ],
        }
    ]
    done = {
        "phase": "Succeeded",
        "message": "Succeeded",
        "startTime": "2030-01-01T00:00:00Z",
        "completionTime": "2030-01-01T00:01:00Z",
        "stages": stages,
    }
    finished = await api.kube.patch_status(TASKS, name, done, api.namespace)
    # archived, and the TaskSpec (with its description) gone
    async with api.sessions() as session, session.begin():
        await archive_task(session, finished)
    await api.kube.delete(TASKSPECS, ts["metadata"]["name"], api.namespace)
    await api.kube.delete(TASKS, name, api.namespace)

    [task] = (
        await api.stub.GetTasksByIDs(pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=tid)]))
    ).tasks
    assert task.id.id == tid
    assert task.status == pb.TASK_STATUS_COMPLETED
    assert task.operation == "ForcePowerOff, forced true"
    assert task.description == "drain row a"
    assert task.applied_rule_id.id == rule.id.id
    assert task.executor_type == pb.TASK_EXECUTOR_TYPE_TEMPORAL
    assert task.message == "Succeeded"
    assert [c.id for c in task.component_uuids]  # by inventory id
    report = json.loads(task.report)
    # the original's report leaves empty fields out
    assert report == {
        "version": 1,
        "stages": [
            {
                "number": 1,
                "status": "completed",
                "steps": [
                    {
                        "component_type": "Compute",
                        "status": "completed",
                        "total_components": 1,
                        "completed_components": 1,
                    }
                ],
                "started_at": "2030-01-01T00:00:00Z",
                "finished_at": "2030-01-01T00:01:00Z",
            }
        ],
    }


async def test_operation_texts_of_firmware_and_ingest(api: Api) -> None:
    rack = api.rack_name("a01")
    await create_rack(api, rack_doc(api, rack, 1))
    await api.stub.UpgradeFirmware(upgrade_firmware(targets(rack_names=[rack], ctype="compute")))
    await run_as_operator(api, "Running")
    listed = await api.stub.ListTasks(pb.ListTasksRequest())
    assert [t.operation for t in listed.tasks] == ["FirmwareUpgrade, target version "]
    for task in await api.kube.list(TASKS, api.namespace):
        await api.kube.patch_status(
            TASKS, task["metadata"]["name"], {"phase": "Succeeded"}, api.namespace
        )
    await api.stub.IngestRack(ingest(targets(rack_names=[rack])))
    await run_as_operator(api, "Pending")
    ops = {t.operation for t in (await api.stub.ListTasks(pb.ListTasksRequest())).tasks}
    assert "rack ingest" in ops


# --- item 4: the original's names -----------------------------------------------------------

NAMED = (
    ("compute", "GPU Tray 1", 12, 1),
    ("compute", "GPU Tray 1", 11, 0),  # the original was unique on manufacturer + serial only
    ("nvswitch", "NVLink Switch A", 20, 0),
    ("powershelf", "Shelf #1", 1, 0),
)


async def test_names_that_are_not_kubernetes_names_are_kept(api: Api) -> None:
    doc = rack_doc(api, "R1", 1, layout=NAMED)
    doc["info"]["name"] = f"R1 {api.tag}"
    rack_id = await create_rack(api, doc)
    got = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
    )
    assert got.rack.info.name == f"R1 {api.tag}"
    assert [c.info.name for c in got.rack.components] == [n for _, n, _, _ in NAMED]
    listed = await api.stub.GetListOfRacks(
        pb.GetListOfRacksRequest(
            filters=[
                pb.Filter(
                    rack_field=pb.RACK_FILTER_FIELD_NAME,
                    query_info=pb.StringQueryInfo(patterns=[f"R1 {api.tag}"]),
                )
            ]
        )
    )
    assert [r.info.id.id for r in listed.racks] == [rack_id]
    comps = await api.stub.GetComponents(
        pb.GetComponentsRequest(
            filters=[
                pb.Filter(
                    component_field=pb.COMPONENT_FILTER_FIELD_NAME,
                    query_info=pb.StringQueryInfo(patterns=["GPU Tray 1"]),
                )
            ]
        )
    )
    assert comps.total == 2

    # by its name, as `flow power control --rack-names` sends it
    off = power_control("force-off", targets(rack_names=[f"R1 {api.tag}"], ctype="compute"))
    assert len((await call(api, off.method, off.request)).task_ids) == 1

    # a third tray of the same name
    added = await api.stub.AddComponent(
        component_add(
            name="GPU Tray 1",
            ctype="compute",
            manufacturer="NVIDIA",
            serial_number=f"extra-{api.tag}",
            rack_id=rack_id,
        )
    )
    assert added.component.info.name == "GPU Tray 1"

    # an NVL domain named as the original's users name them
    domain = f"NVL Wire 3 {api.tag}"
    made = await api.stub.CreateNVLDomain(
        pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=pb.Identifier(name=domain)))
    )
    await api.stub.AttachRacksToNVLDomain(
        pb.AttachRacksToNVLDomainRequest(
            nvl_domain_identifier=pb.Identifier(name=domain),
            rack_identifiers=[pb.Identifier(name=f"R1 {api.tag}")],
        )
    )
    members = await api.stub.GetRacksForNVLDomain(
        pb.GetRacksForNVLDomainRequest(nvl_domain_identifier=pb.Identifier(name=domain))
    )
    assert [r.info.name for r in members.racks] == [f"R1 {api.tag}"]
    domains = await api.stub.GetListOfNVLDomains(
        pb.GetListOfNVLDomainsRequest(info=pb.StringQueryInfo(patterns=[domain]))
    )
    assert [(d.identifier.id.id, d.identifier.name) for d in domains.nvl_domains] == [
        (made.id.id, domain)
    ]
    code, _ = await _code(api.stub.CreateExpectedRack(rack_create(doc)))
    assert code == grpc.StatusCode.ALREADY_EXISTS  # names stay unique


# --- item 7: order -----------------------------------------------------------------------------


async def test_components_come_back_in_input_order_rack_by_rack(api: Api) -> None:
    a, b = api.rack_name("a01"), api.rack_name("b01")
    a_id = await create_rack(api, rack_doc(api, a, 1))
    b_id = await create_rack(api, rack_doc(api, b, 2))
    given = [n for _, n, _, _ in LAYOUT]
    got = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=a_id), with_components=True)
    )
    assert [c.info.name for c in got.rack.components] == given

    # `flow component expected --rack-names B,A`
    both = await api.stub.GetComponents(
        pb.GetComponentsRequest(target_spec=targets(rack_names=[b, a]))
    )
    assert [(c.rack_id.id, c.info.name) for c in both.components] == [
        *((b_id, n) for n in given),
        *((a_id, n) for n in given),
    ]
    everything = await api.stub.GetComponents(pb.GetComponentsRequest())
    assert [(c.rack_id.id, c.info.name) for c in everything.components] == [
        *((a_id, n) for n in given),
        *((b_id, n) for n in given),
    ]


# --- rack, component and operation requests of the CLI, read back field by field -----------


async def test_inventory_requests_of_the_cli_read_back_field_by_field(api: Api) -> None:
    rack = api.rack_name("a01")
    doc = rack_doc(api, rack, 1)
    request = rack_create(doc)  # the CLI generated the ids
    resp = await api.stub.CreateExpectedRack(request)
    assert resp.id.id == request.rack.info.id.id
    got = await api.stub.GetRackInfoBySerial(
        pb.GetRackInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(
                manufacturer="NVIDIA", serial_number=doc["info"]["serial_number"]
            ),
            with_components=True,
        )
    )
    info = got.rack.info
    assert (info.id.id, info.name, info.manufacturer, info.serial_number) == (
        resp.id.id,
        rack,
        "NVIDIA",
        doc["info"]["serial_number"],
    )
    assert (info.model, info.description) == ("GB200 NVL72", "compat rack")
    assert got.rack.location == pb.Location(
        region="us-west", datacenter="dc1", room="r1", position="a/1"
    )
    sent = {c.info.id.id: c for c in request.rack.components}
    for comp in got.rack.components:
        want = sent[comp.info.id.id]
        assert comp.type == want.type
        assert (comp.info.name, comp.info.manufacturer, comp.info.model) == (
            want.info.name,
            want.info.manufacturer,
            want.info.model,
        )
        assert comp.info.serial_number == want.info.serial_number
        assert comp.firmware_version == "1.2.3"
        assert comp.position == want.position
        assert comp.component_id == want.component_id
        assert comp.rack_id.id == resp.id.id
        assert [(b.type, b.mac_address, b.ip_address) for b in comp.bmcs] == [
            (b.type, b.mac_address, b.ip_address) for b in want.bmcs
        ]

    # GetExpectedComponentsByRackNames(..., compute): a type filter named "Compute"
    computes = await api.stub.GetComponents(
        pb.GetComponentsRequest(
            target_spec=targets(rack_names=[rack], ctype="compute"),
            filters=[
                pb.Filter(
                    component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
                    query_info=pb.StringQueryInfo(patterns=["Compute"]),
                )
            ],
        )
    )
    assert [c.info.name for c in computes.components] == ["compute-02", "compute-01"]
    assert computes.total == 2

    # `flow component update --id X --firmware-version 2.0 --slot-id 3 --bmcs '[...]'`
    target = computes.components[1]
    mac = f"02:{api.tag[0:2]}:ee:ee:ee:01"
    patched = await api.stub.PatchComponent(
        component_update(
            target.info.id.id,
            firmware_version="2.0",
            slot_id=3,
            bmcs_json=json.dumps([{"type": "HOST", "mac": mac.upper(), "ip": "10.7.7.7"}]),
        )
    )
    comp = patched.component
    assert comp.firmware_version == "2.0"
    assert comp.position == pb.RackPosition(slot_id=3, tray_idx=0, host_id=0)
    assert (mac, "10.7.7.7") in [(b.mac_address, b.ip_address) for b in comp.bmcs]
    assert comp.info.name == "compute-01"

    # `flow firmware upgrade --component-ids <machine>`: ExternalRef COMPUTE targets
    upgrade = await api.stub.UpgradeFirmware(
        upgrade_firmware(targets(component_ids=[core_id(rack, "compute-01")]))
    )
    assert len(upgrade.task_ids) == 1
    # `flow component delete`, then `flow component purge`
    await api.stub.DeleteComponent(pb.DeleteComponentRequest(id=target.info.id))
    await api.stub.PurgeComponent(pb.PurgeComponentRequest(id=target.info.id))
    code, _ = await _code(
        api.stub.GetComponentInfoByID(pb.GetComponentInfoByIDRequest(id=target.info.id))
    )
    assert code == grpc.StatusCode.NOT_FOUND
