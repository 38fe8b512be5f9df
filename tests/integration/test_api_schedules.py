"""Task schedule RPCs over real gRPC, against the real apiserver and
PostgreSQL: schedules become TaskSchedule objects in the server's namespace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from api_support import Api, example_rack, running_api
from google.protobuf.field_mask_pb2 import FieldMask

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.controller.schedules import ScheduleController
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain import schedules as timing
from nicoflow.domain.schedules import trigger_name
from nicoflow.domain.task_ids import task_id
from nicoflow.kube.resources import ANNOTATION_RESUMED_AT, SCHEDULES, task_name
from nicoflow.service.schedules import ANNOTATION_TRIGGER_NOW

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _rack(api: Api, base: str, n: int) -> str:
    rack = example_rack(name=api.rack_name(base), tag=f"{api.tag[:4]}{n:02d}")
    return (await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))).id.id


def _racks(*ids: str, types: tuple[int, ...] = ()) -> pb.OperationTargetSpec:
    return pb.OperationTargetSpec(
        racks=pb.RackTargets(
            targets=[pb.RackTarget(id=pb.UUID(id=i), component_types=list(types)) for i in ids]
        )
    )


def _reset(target: pb.OperationTargetSpec) -> pb.ScheduledOperation:
    return pb.ScheduledOperation(
        power_reset=pb.PowerResetRackRequest(target_spec=target, forced=True)
    )


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


async def test_schedule_lifecycle(api: Api) -> None:
    a, b = await _rack(api, "a01", 1), await _rack(api, "b01", 2)
    created = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Nightly Reset",
                spec=pb.ScheduleSpec(
                    type=pb.SCHEDULE_SPEC_TYPE_CRON, spec="0 2 * * *", timezone="Europe/Berlin"
                ),
                overlap_policy=pb.OVERLAP_POLICY_QUEUE,
            ),
            operation=_reset(_racks(a)),
        )
    )
    sid = created.id.id
    assert created.name == "Nightly Reset"
    assert created.enabled
    assert created.operation_type == "POWER_RESET"
    assert created.description == "Power Reset (forced)"
    assert created.spec.timezone == "Europe/Berlin"
    [obj] = await api.kube.list(SCHEDULES, api.namespace)
    spec = obj["spec"]
    assert spec["schedule"] == {"cron": "0 2 * * *", "timeZone": "Europe/Berlin"}
    assert spec["overlapPolicy"] == "Queue"
    template = spec["taskSpecTemplate"]["spec"]
    assert template["operation"] == "force_restart"
    assert template["conflictStrategy"] == "Queue"
    assert template["targets"] == {"racks": [api.rack_name("a01")]}

    code, message = await _code(api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Nightly Reset",
                spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="6h"),
            ),
            operation=_reset(_racks(b)),
        )
    ))  # fmt: skip
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "Nightly Reset" in message

    second = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="once",
                spec=pb.ScheduleSpec(
                    type=pb.SCHEDULE_SPEC_TYPE_ONE_TIME, spec="2031-01-02T03:04:05+01:00"
                ),
            ),
            operation=pb.ScheduledOperation(power_on=pb.PowerOnRackRequest(target_spec=_racks(b))),
        )
    )
    assert second.spec.spec == "2031-01-02T02:04:05Z"

    listed = await api.stub.ListTaskSchedules(pb.ListTaskSchedulesRequest())
    assert [s.id.id for s in listed.task_schedules] == [sid, second.id.id]
    only_b = await api.stub.ListTaskSchedules(pb.ListTaskSchedulesRequest(rack_id=pb.UUID(id=b)))
    assert [s.name for s in only_b.task_schedules] == ["once"]
    assert only_b.total == 1

    paused = await api.stub.PauseTaskSchedule(pb.PauseTaskScheduleRequest(id=pb.UUID(id=sid)))
    assert not paused.enabled
    enabled = await api.stub.ListTaskSchedules(pb.ListTaskSchedulesRequest(enabled_only=True))
    assert [s.name for s in enabled.task_schedules] == ["once"]
    resumed = await api.stub.ResumeTaskSchedule(pb.ResumeTaskScheduleRequest(id=pb.UUID(id=sid)))
    assert resumed.enabled

    updated = await api.stub.UpdateTaskSchedule(
        pb.UpdateTaskScheduleRequest(
            id=pb.UUID(id=sid),
            schedule=pb.ScheduleConfig(
                name="Hourly Reset",
                spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="1h30m"),
            ),
            update_mask=FieldMask(paths=["schedule.name", "schedule.spec"]),
        )
    )
    assert updated.name == "Hourly Reset"
    assert (updated.spec.type, updated.spec.spec) == (pb.SCHEDULE_SPEC_TYPE_INTERVAL, "1h30m")
    code, message = await _code(
        api.stub.UpdateTaskSchedule(
            pb.UpdateTaskScheduleRequest(
                id=pb.UUID(id=sid), update_mask=FieldMask(paths=["operation"])
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "operation" in message

    # scopes: add b with compute only, then reconcile to a alone
    scopes = await api.stub.AddTaskScheduleScope(
        pb.AddTaskScheduleScopeRequest(
            schedule_id=pb.UUID(id=sid), target_spec=_racks(b, types=(pb.COMPONENT_TYPE_COMPUTE,))
        )
    )
    by_rack = {s.rack_id.id: s for s in scopes.scopes}
    assert set(by_rack) == {a, b}
    assert list(by_rack[b].types.types) == [pb.COMPONENT_TYPE_COMPUTE]
    assert by_rack[a].WhichOneof("component_filter") is None
    [obj] = [
        o
        for o in await api.kube.list(SCHEDULES, api.namespace)
        if o["metadata"]["labels"]["flow.nico.io/schedule-id"] == sid
    ]
    targets = obj["spec"]["taskSpecTemplate"]["spec"]["targets"]
    assert targets["racks"] == [api.rack_name("a01")]
    assert len(targets["components"]) == 18

    code, message = await _code(
        api.stub.AddTaskScheduleScope(pb.AddTaskScheduleScopeRequest(schedule_id=pb.UUID(id=sid)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "target_spec" in message

    listed_scopes = await api.stub.ListTaskScheduleScopes(
        pb.ListTaskScheduleScopesRequest(schedule_id=pb.UUID(id=sid))
    )
    assert len(listed_scopes.scopes) == 2
    await api.stub.RemoveTaskScheduleScope(
        pb.RemoveTaskScheduleScopeRequest(scope_id=by_rack[b].id)
    )
    code, message = await _code(
        api.stub.RemoveTaskScheduleScope(pb.RemoveTaskScheduleScopeRequest(scope_id=by_rack[a].id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "last scope" in message

    reconciled = await api.stub.UpdateTaskScheduleScope(
        pb.UpdateTaskScheduleScopeRequest(schedule_id=pb.UUID(id=sid), desired_scope=_racks(b))
    )
    assert (reconciled.added, reconciled.removed, reconciled.updated) == (1, 1, 0)
    assert [s.rack_id.id for s in reconciled.scopes] == [b]

    # conflicts: the "once" schedule and this one both scope rack b now
    conflicts = await api.stub.CheckScheduleConflicts(
        pb.CheckScheduleConflictsRequest(
            operation=pb.ScheduledOperation(power_on=pb.PowerOnRackRequest(target_spec=_racks(b))),
            exclude_schedule_id=pb.UUID(id=sid),
        )
    )
    assert [c.name for c in conflicts.conflicts] == ["once"]
    code, _ = await _code(api.stub.CheckScheduleConflicts(pb.CheckScheduleConflictsRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # trigger: annotation with a fresh token; ids are the TaskSpec's future Tasks
    fired = await api.stub.TriggerTaskSchedule(pb.TriggerTaskScheduleRequest(id=pb.UUID(id=sid)))
    [obj] = [
        o
        for o in await api.kube.list(SCHEDULES, api.namespace)
        if o["metadata"]["labels"]["flow.nico.io/schedule-id"] == sid
    ]
    token = obj["metadata"]["annotations"][ANNOTATION_TRIGGER_NOW]
    spec_name = trigger_name(obj["metadata"]["name"], token)
    assert [t.id for t in fired.task_ids] == [
        str(task_id(api.namespace, task_name(spec_name, api.rack_name("b01"))))
    ]

    await api.stub.DeleteTaskSchedule(pb.DeleteTaskScheduleRequest(id=pb.UUID(id=sid)))
    code, message = await _code(
        api.stub.GetTaskSchedule(pb.GetTaskScheduleRequest(id=pb.UUID(id=sid)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert sid in message


async def test_bad_schedule_requests(api: Api) -> None:
    a = await _rack(api, "a01", 1)
    for spec, words in [
        (pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="soon"), "duration"),
        (pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_CRON, spec="* *"), "cron"),
        (
            pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_CRON, spec="0 2 * * *", timezone="PST"),
            "IANA",
        ),
        (pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_ONE_TIME, spec="tomorrow"), "RFC 3339"),
        (pb.ScheduleSpec(spec="1h"), "type"),
    ]:
        code, message = await _code(api.stub.CreateTaskSchedule(
            pb.CreateTaskScheduleRequest(
                schedule=pb.ScheduleConfig(name="bad", spec=spec), operation=_reset(_racks(a))
            )
        ))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
        assert words in message
    code, message = await _code(api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="bad", spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="1h")
            )
        )
    ))  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "operation" in message
    missing = pb.UUID(id="11111111-1111-1111-1111-111111111111")
    for call in (
        api.stub.GetTaskSchedule(pb.GetTaskScheduleRequest(id=missing)),
        api.stub.PauseTaskSchedule(pb.PauseTaskScheduleRequest(id=missing)),
        api.stub.ResumeTaskSchedule(pb.ResumeTaskScheduleRequest(id=missing)),
        api.stub.DeleteTaskSchedule(pb.DeleteTaskScheduleRequest(id=missing)),
        api.stub.TriggerTaskSchedule(pb.TriggerTaskScheduleRequest(id=missing)),
        api.stub.ListTaskScheduleScopes(pb.ListTaskScheduleScopesRequest(schedule_id=missing)),
        api.stub.UpdateTaskScheduleScope(
            pb.UpdateTaskScheduleScopeRequest(schedule_id=missing, desired_scope=_racks(a))
        ),
        api.stub.RemoveTaskScheduleScope(pb.RemoveTaskScheduleScopeRequest(scope_id=missing)),
    ):
        code, message = await _code(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert missing.id in message
    code, message = await _code(
        api.stub.ListTaskSchedules(
            pb.ListTaskSchedulesRequest(pagination=pb.Pagination(offset=0, limit=0))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in message


# --- what the original's clients read back ---------------------------------------------------


async def _one_schedule_object(api: Api, sid: str) -> dict[str, Any]:
    [obj] = [
        o
        for o in await api.kube.list(SCHEDULES, api.namespace)
        if o["metadata"]["labels"]["flow.nico.io/schedule-id"] == sid
    ]
    return obj


async def test_create_answers_next_run_and_trigger_sets_last_run_and_last_task(api: Api) -> None:
    a = await _rack(api, "a01", 1)
    before = datetime.now(UTC).replace(microsecond=0)
    created = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Six-hourly",
                spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="6h"),
            ),
            operation=pb.ScheduledOperation(power_on=pb.PowerOnRackRequest(target_spec=_racks(a))),
        )
    )
    # a client reads when it runs next straight from the create response
    assert created.HasField("next_run_at")
    nxt = created.next_run_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(hours=6) - timedelta(seconds=2) <= nxt
    assert nxt <= datetime.now(UTC) + timedelta(hours=6)
    assert not created.HasField("last_run_at")
    sid = created.id.id
    [scope] = (
        await api.stub.ListTaskScheduleScopes(
            pb.ListTaskScheduleScopesRequest(schedule_id=pb.UUID(id=sid))
        )
    ).scopes
    assert not scope.HasField("last_task_id")

    fired = await api.stub.TriggerTaskSchedule(pb.TriggerTaskScheduleRequest(id=pb.UUID(id=sid)))
    got = await api.stub.GetTaskSchedule(pb.GetTaskScheduleRequest(id=pb.UUID(id=sid)))
    assert got.HasField("last_run_at")
    assert got.last_run_at.ToDatetime(tzinfo=UTC) >= before

    # the controller fires the trigger: the scope's last task is the one the trigger returned
    ctl = ScheduleController(api.kube, namespaces=(api.namespace,))
    await ctl.resync()
    assert len(await ctl.tick()) == 1
    [scope] = (
        await api.stub.ListTaskScheduleScopes(
            pb.ListTaskScheduleScopesRequest(schedule_id=pb.UUID(id=sid))
        )
    ).scopes
    assert scope.last_task_id.id == fired.task_ids[0].id
    obj = await _one_schedule_object(api, sid)
    assert obj["status"]["lastTriggerTime"]


async def test_resume_recomputes_the_next_run_and_fires_nothing_missed(api: Api) -> None:
    """The dangerous case: resuming a paused schedule must not run a missed
    time at once (a forced power-off due while paused would power the racks
    off on the spot). The one-time schedule here falls due while paused, with
    no operator running to see the pause."""
    a = await _rack(api, "a01", 1)
    hourly = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Hourly Off",
                spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec="1h"),
            ),
            operation=pb.ScheduledOperation(
                power_off=pb.PowerOffRackRequest(target_spec=_racks(a), forced=True)
            ),
        )
    )
    hid = pb.UUID(id=hourly.id.id)
    paused = await api.stub.PauseTaskSchedule(pb.PauseTaskScheduleRequest(id=hid))
    assert not paused.HasField("next_run_at")
    resumed = await api.stub.ResumeTaskSchedule(pb.ResumeTaskScheduleRequest(id=hid))
    assert resumed.enabled
    assert resumed.next_run_at == hourly.next_run_at  # the next time after now

    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    once = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Soon Off",
                spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_ONE_TIME, spec=soon),
            ),
            operation=pb.ScheduledOperation(
                power_off=pb.PowerOffRackRequest(target_spec=_racks(a), forced=True)
            ),
        )
    )
    oid = pb.UUID(id=once.id.id)
    await api.stub.PauseTaskSchedule(pb.PauseTaskScheduleRequest(id=oid))
    await asyncio.sleep(3)  # its time passes while paused
    await api.stub.ResumeTaskSchedule(pb.ResumeTaskScheduleRequest(id=oid))
    obj = await _one_schedule_object(api, once.id.id)
    resumed_at = timing.parse_timestamp(obj["metadata"]["annotations"][ANNOTATION_RESUMED_AT])

    # an operator evaluating the schedules right after the resume runs nothing
    ctl = ScheduleController(api.kube, lambda: resumed_at, namespaces=(api.namespace,))
    await ctl.resync()
    assert await ctl.tick() == []
    status = (await _one_schedule_object(api, once.id.id))["status"]
    assert status["lastSkippedTime"] == soon
    got = await api.stub.GetTaskSchedule(pb.GetTaskScheduleRequest(id=oid))
    assert not got.HasField("next_run_at")
    assert not got.HasField("last_run_at")

    # resuming an enabled schedule changes nothing
    before = (await _one_schedule_object(api, hourly.id.id))["metadata"]["annotations"]
    await api.stub.ResumeTaskSchedule(pb.ResumeTaskScheduleRequest(id=hid))
    after = (await _one_schedule_object(api, hourly.id.id))["metadata"]["annotations"]
    assert after[ANNOTATION_RESUMED_AT] == before[ANNOTATION_RESUMED_AT]


async def test_a_triggered_one_time_schedule_is_consumed(api: Api) -> None:
    a = await _rack(api, "a01", 1)
    at = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await api.stub.CreateTaskSchedule(
        pb.CreateTaskScheduleRequest(
            schedule=pb.ScheduleConfig(
                name="Once", spec=pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_ONE_TIME, spec=at)
            ),
            operation=pb.ScheduledOperation(power_on=pb.PowerOnRackRequest(target_spec=_racks(a))),
        )
    )
    assert created.next_run_at.ToDatetime(tzinfo=UTC) == timing.parse_timestamp(at)
    sid = pb.UUID(id=created.id.id)
    await api.stub.TriggerTaskSchedule(pb.TriggerTaskScheduleRequest(id=sid))
    got = await api.stub.GetTaskSchedule(pb.GetTaskScheduleRequest(id=sid))
    assert not got.enabled
    assert not got.HasField("next_run_at")
    code, message = await _code(api.stub.TriggerTaskSchedule(pb.TriggerTaskScheduleRequest(id=sid)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "already fired" in message
