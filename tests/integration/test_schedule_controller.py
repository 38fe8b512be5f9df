"""ScheduleController in-process against a real kube-apiserver, with a clock the
test moves: each schedule kind fires at its times (also across a DST change),
overlap Skip vs Queue, suspend/resume with a starting deadline, trigger-now,
history limits, and no double firing across a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nicoflow.controller.resources import SCHEDULES, TASKS, TASKSPECS
from nicoflow.controller.schedules import (
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_TRIGGER_NOW,
    LABEL_SCHEDULE,
    ScheduleController,
)
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain import schedules as timing
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.types import OperationCode
from nicoflow.kube.client import KubeClient

pytestmark = pytest.mark.usefixtures("crds_installed")

Json = dict[str, Any]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.value = start

    def now(self) -> datetime:
        return self.value

    def set(self, value: datetime) -> None:
        self.value = value


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_env(str(control_plane.kubeconfig)) as client:
        yield client


def schedule_body(name: str, schedule: Json, **spec: Any) -> Json:
    return {
        "apiVersion": SCHEDULES.api_version,
        "kind": SCHEDULES.kind,
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "taskSpecTemplate": {
                "metadata": {"labels": {"team": "fleet"}},
                "spec": {"operation": "power_on", "targets": {"racks": ["rack-a"]}},
            },
            **spec,
        },
    }


async def create_schedule(kube: KubeClient, ns: str, body: Json) -> Json:
    return await kube.create(SCHEDULES, body, ns)


def created_at(obj: Json) -> datetime:
    return timing.parse_timestamp(obj["metadata"]["creationTimestamp"])


async def step(ctl: ScheduleController) -> list[str]:
    """What the watch would deliver, then one tick."""
    await ctl.resync()
    return await ctl.tick()


async def fired(kube: KubeClient, ns: str, schedule: str) -> dict[str, Json]:
    items = await kube.list(TASKSPECS, ns, label_selector=f"{LABEL_SCHEDULE}={schedule}")
    return {ts["metadata"]["name"]: ts for ts in items}


def scheduled_times(taskspecs: dict[str, Json]) -> list[str]:
    return sorted(
        ts["metadata"]["annotations"][ANNOTATION_SCHEDULED_TIME] for ts in taskspecs.values()
    )


def stamp(value: datetime) -> str:
    return timing.format_timestamp(value)


async def status_of(kube: KubeClient, ns: str, name: str) -> Json:
    status: Json = (await kube.get(SCHEDULES, name, ns)).get("status") or {}
    return status


def condition(status: Json, ctype: str) -> Json:
    return next(c for c in status.get("conditions") or [] if c["type"] == ctype)


async def set_phase(kube: KubeClient, ns: str, name: str, phase: str) -> None:
    status: Json = {"phase": phase}
    if phase in ("Complete", "Failed", "Cancelled"):
        status["completionTime"] = stamp(datetime.now(UTC))
    await kube.patch_status(TASKSPECS, name, status, ns)


async def test_interval_fires_on_the_creation_grid_without_drift(
    kube: KubeClient, namespace: str
) -> None:
    obj = await create_schedule(
        kube, namespace, schedule_body("every10", {"interval": "10m"}, overlapPolicy="Queue")
    )
    c = created_at(obj)
    clock = Clock(c)
    ctl = ScheduleController(kube, clock.now)

    clock.set(c + timedelta(minutes=5))
    assert await step(ctl) == []
    # late by 40s, then 50s, then a whole minute: the grid stays at c + k*10m
    for k, late in ((1, 40), (2, 50), (3, 60)):
        clock.set(c + timedelta(minutes=10 * k, seconds=late))
        created = await step(ctl)
        assert created == [timing.taskspec_name("every10", c + timedelta(minutes=10 * k))]
        assert await step(ctl) == []  # once per scheduled time
    taskspecs = await fired(kube, namespace, "every10")
    assert scheduled_times(taskspecs) == [stamp(c + timedelta(minutes=10 * k)) for k in (1, 2, 3)]
    one = next(iter(taskspecs.values()))
    assert one["metadata"]["labels"]["team"] == "fleet"
    assert one["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert one["spec"]["conflictStrategy"] == "Queue"
    status = await status_of(kube, namespace, "every10")
    assert status["lastScheduleTime"] == stamp(c + timedelta(minutes=30))
    assert status["nextScheduleTime"] == stamp(c + timedelta(minutes=40))
    assert {a["name"] for a in status["active"]} == set(taskspecs)
    assert condition(status, "Ready")["status"] == "True"


async def test_cron_across_the_new_york_fall_back(kube: KubeClient, namespace: str) -> None:
    await create_schedule(
        kube,
        namespace,
        schedule_body(
            "nightly",
            {"cron": "30 1 * * *", "timeZone": "America/New_York"},
            overlapPolicy="Queue",
        ),
    )
    # the schedule has been running since before the DST change
    await kube.patch_status(
        SCHEDULES, "nightly", {"lastScheduleTime": "2024-11-01T05:30:00Z"}, namespace
    )
    clock = Clock(datetime(2024, 11, 1, 12, tzinfo=UTC))
    ctl = ScheduleController(kube, clock.now)

    expected_fires = {
        # 01:31 EDT on Nov 2
        datetime(2024, 11, 2, 5, 31, tzinfo=UTC): "2024-11-02T05:30:00Z",
        # 01:31 EDT on Nov 3, the first pass of the repeated hour
        datetime(2024, 11, 3, 5, 31, tzinfo=UTC): "2024-11-03T05:30:00Z",
        # 01:31 EST, the second pass: 01:30 has fired already today
        datetime(2024, 11, 3, 6, 31, tzinfo=UTC): None,
        # 01:31 EST on Nov 4
        datetime(2024, 11, 4, 6, 31, tzinfo=UTC): "2024-11-04T06:30:00Z",
    }
    for now, when in expected_fires.items():
        clock.set(now)
        created = await step(ctl)
        assert created == (
            [timing.taskspec_name("nightly", timing.parse_timestamp(when))] if when else []
        )
    taskspecs = await fired(kube, namespace, "nightly")
    assert scheduled_times(taskspecs) == [w for w in expected_fires.values() if w]
    status = await status_of(kube, namespace, "nightly")
    assert status["nextScheduleTime"] == "2024-11-05T06:30:00Z"


async def test_one_time_fires_once_and_completes(kube: KubeClient, namespace: str) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    await create_schedule(kube, namespace, schedule_body("once", {"at": stamp(at)}))
    clock = Clock(at - timedelta(minutes=1))
    ctl = ScheduleController(kube, clock.now)
    assert await step(ctl) == []
    assert (await status_of(kube, namespace, "once"))["nextScheduleTime"] == stamp(at)
    clock.set(at + timedelta(seconds=10))
    assert await step(ctl) == [timing.taskspec_name("once", at)]
    clock.set(at + timedelta(hours=5))
    assert await step(ctl) == []
    assert len(await fired(kube, namespace, "once")) == 1
    status = await status_of(kube, namespace, "once")
    assert condition(status, "Completed")["reason"] == "Fired"
    assert condition(status, "Ready")["reason"] == "NoFutureTimes"
    assert status.get("nextScheduleTime") is None


async def test_overlap_skip_waits_for_the_previous_run_and_queue_does_not(
    kube: KubeClient, namespace: str
) -> None:
    skip = await create_schedule(kube, namespace, schedule_body("skipper", {"interval": "1m"}))
    queue = await create_schedule(
        kube, namespace, schedule_body("queuer", {"interval": "1m"}, overlapPolicy="Queue")
    )
    cs, cq = created_at(skip), created_at(queue)
    clock = Clock(max(cs, cq))
    ctl = ScheduleController(kube, clock.now)

    clock.set(max(cs, cq) + timedelta(minutes=1, seconds=5))
    first = await step(ctl)
    assert sorted(first) == sorted(
        [
            timing.taskspec_name("skipper", cs + timedelta(minutes=1)),
            timing.taskspec_name("queuer", cq + timedelta(minutes=1)),
        ]
    )
    for name in first:
        await set_phase(kube, namespace, name, "Running")

    clock.set(clock.now() + timedelta(minutes=1))
    second = await step(ctl)
    assert second == [timing.taskspec_name("queuer", cq + timedelta(minutes=2))]
    status = await status_of(kube, namespace, "skipper")
    assert condition(status, "Skipped")["status"] == "True"
    assert status["lastSkippedTime"] == stamp(cs + timedelta(minutes=2))
    queued = (await fired(kube, namespace, "queuer"))[second[0]]
    assert queued["spec"]["conflictStrategy"] == "Queue"
    skip_first = timing.taskspec_name("skipper", cs + timedelta(minutes=1))
    assert (await fired(kube, namespace, "skipper"))[skip_first]["spec"]["conflictStrategy"] == (
        "Reject"
    )

    # the skipped time is not fired late once the previous run finishes...
    for name in first:
        await set_phase(kube, namespace, name, "Complete")
    assert await step(ctl) == []
    # ...the next scheduled time fires
    clock.set(clock.now() + timedelta(minutes=1))
    third = await step(ctl)
    assert timing.taskspec_name("skipper", cs + timedelta(minutes=3)) in third
    status = await status_of(kube, namespace, "skipper")
    assert condition(status, "Skipped")["status"] == "False"
    assert status["lastSuccessfulTime"]


async def test_suspend_resume_and_starting_deadline(kube: KubeClient, namespace: str) -> None:
    obj = await create_schedule(
        kube,
        namespace,
        schedule_body("paused", {"interval": "1m"}, suspend=True, startingDeadlineSeconds=30),
    )
    c = created_at(obj)
    clock = Clock(c)
    ctl = ScheduleController(kube, clock.now)
    for minutes in (1, 2):
        clock.set(c + timedelta(minutes=minutes, seconds=1))
        assert await step(ctl) == []
    status = await status_of(kube, namespace, "paused")
    assert condition(status, "Suspended")["status"] == "True"
    assert status.get("nextScheduleTime") is None

    await kube.patch(SCHEDULES, "paused", {"spec": {"suspend": False}}, namespace)
    # resumed 45s after the latest scheduled time: past the 30s deadline
    clock.set(c + timedelta(minutes=2, seconds=45))
    assert await step(ctl) == []
    status = await status_of(kube, namespace, "paused")
    assert condition(status, "Missed")["status"] == "True"
    assert condition(status, "Suspended")["status"] == "False"
    assert status["lastSkippedTime"] == stamp(c + timedelta(minutes=2))
    # within the deadline of the next one
    clock.set(c + timedelta(minutes=3, seconds=20))
    assert await step(ctl) == [timing.taskspec_name("paused", c + timedelta(minutes=3))]
    assert condition(await status_of(kube, namespace, "paused"), "Missed")["status"] == "False"
    assert len(await fired(kube, namespace, "paused")) == 1


async def test_trigger_now_fires_once_per_token(kube: KubeClient, namespace: str) -> None:
    # suspended and far from its time: only triggers fire
    await create_schedule(
        kube, namespace, schedule_body("manual", {"cron": "0 3 1 1 *"}, suspend=True)
    )
    clock = Clock(datetime.now(UTC))
    ctl = ScheduleController(kube, clock.now)
    assert await step(ctl) == []

    async def annotate(token: str) -> None:
        patch = {"metadata": {"annotations": {ANNOTATION_TRIGGER_NOW: token}}}
        await kube.patch(SCHEDULES, "manual", patch, namespace)

    await annotate("one")
    assert await step(ctl) == [timing.trigger_name("manual", "one")]
    assert await step(ctl) == []
    # a restarted controller sees the token in status
    assert await step(ScheduleController(kube, clock.now)) == []
    assert (await status_of(kube, namespace, "manual"))["lastTriggerToken"] == "one"

    await annotate("two")
    assert await step(ctl) == [timing.trigger_name("manual", "two")]
    assert sorted(await fired(kube, namespace, "manual")) == sorted(
        [timing.trigger_name("manual", "one"), timing.trigger_name("manual", "two")]
    )
    # the API's trigger fires on each call
    made = await ctl.trigger(namespace, "manual")
    assert len(made) == 1
    assert made[0] in await fired(kube, namespace, "manual")


async def test_history_limits_prune_the_oldest_finished(kube: KubeClient, namespace: str) -> None:
    obj = await create_schedule(
        kube,
        namespace,
        schedule_body(
            "hist",
            {"interval": "1m"},
            overlapPolicy="Queue",
            successfulHistoryLimit=2,
            failedHistoryLimit=1,
        ),
    )
    c = created_at(obj)
    clock = Clock(c)
    ctl = ScheduleController(kube, clock.now)
    names = []
    for k in range(1, 7):
        clock.set(c + timedelta(minutes=k, seconds=2))
        names += await step(ctl)
    assert len(names) == 6
    # oldest first: 3 succeeded, 2 failed, the newest still running
    for name, phase in zip(
        names, ["Complete"] * 3 + ["Failed", "Cancelled", "Running"], strict=True
    ):
        await set_phase(kube, namespace, name, phase)
    assert await step(ctl) == []
    remaining = await fired(kube, namespace, "hist")
    assert sorted(remaining) == sorted([names[1], names[2], names[4], names[5]])
    status = await status_of(kube, namespace, "hist")
    assert [a["name"] for a in status["active"]] == [names[5]]


async def test_no_double_firing_across_a_restart(kube: KubeClient, namespace: str) -> None:
    obj = await create_schedule(
        kube, namespace, schedule_body("restart", {"interval": "1m"}, overlapPolicy="Queue")
    )
    c = created_at(obj)
    clock = Clock(c + timedelta(minutes=1, seconds=3))
    first = ScheduleController(kube, clock.now)
    assert len(await step(first)) == 1

    # a new instance at the same instant creates nothing
    assert await step(ScheduleController(kube, clock.now)) == []

    # killed between create and status write: status forgot the firing
    await kube.patch(
        SCHEDULES,
        "restart",
        {"status": {"lastScheduleTime": None}},
        namespace,
        subresource="status",
    )
    again = ScheduleController(kube, clock.now)
    assert await step(again) == []
    assert len(await fired(kube, namespace, "restart")) == 1
    status = await status_of(kube, namespace, "restart")
    assert status["lastScheduleTime"] == stamp(c + timedelta(minutes=1))
    out = json.dumps(status)
    assert "restart-" in out  # the TaskSpec is listed as active


async def test_run_loop_wakes_on_watch_events_and_stops(kube: KubeClient, namespace: str) -> None:
    await create_schedule(kube, namespace, schedule_body("looped", {"cron": "0 3 1 1 *"}))
    ctl = ScheduleController(kube, namespaces=(namespace,))
    stop = asyncio.Event()
    runner = asyncio.create_task(ctl.run(stop))
    try:
        patch = {"metadata": {"annotations": {ANNOTATION_TRIGGER_NOW: "go"}}}
        updated = await kube.patch(SCHEDULES, "looped", patch, namespace)
        ctl.observe("MODIFIED", updated)  # what kopf's event handler passes on
        want = timing.trigger_name("looped", "go")
        for _ in range(100):
            if want in await fired(kube, namespace, "looped"):
                break
            await asyncio.sleep(0.1)
        assert want in await fired(kube, namespace, "looped")
        assert ctl.seconds_to_next() <= 30.0
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=5)
    assert runner.done()


# --- resuming, triggers and per-rack overlap (the original's semantics) -----------------------


async def test_resume_never_fires_a_time_missed_while_suspended(
    kube: KubeClient, namespace: str
) -> None:
    """A nightly power-off paused in the morning and resumed at noon must not
    power the racks off at noon: the next run is the next scheduled time."""
    obj = await create_schedule(kube, namespace, schedule_body("nightly-off", {"interval": "1m"}))
    c = created_at(obj)
    clock = Clock(c + timedelta(minutes=1, seconds=2))
    ctl = ScheduleController(kube, clock.now)
    assert await step(ctl) == [timing.taskspec_name("nightly-off", c + timedelta(minutes=1))]
    await set_phase(
        kube, namespace, timing.taskspec_name("nightly-off", c + timedelta(minutes=1)), "Complete"
    )

    await kube.patch(SCHEDULES, "nightly-off", {"spec": {"suspend": True}}, namespace)
    clock.set(c + timedelta(minutes=1, seconds=30))
    assert await step(ctl) == []  # sees the suspension
    clock.set(c + timedelta(minutes=3, seconds=30))  # two scheduled times pass
    assert await step(ctl) == []

    await kube.patch(SCHEDULES, "nightly-off", {"spec": {"suspend": False}}, namespace)
    clock.set(c + timedelta(minutes=3, seconds=40))
    assert await step(ctl) == []  # nothing missed is run at once
    status = await status_of(kube, namespace, "nightly-off")
    assert status["lastSkippedTime"] == stamp(c + timedelta(minutes=3))
    assert condition(status, "Missed")["reason"] == "Suspended"
    assert status["nextScheduleTime"] == stamp(c + timedelta(minutes=4))
    assert await step(ctl) == []
    clock.set(c + timedelta(minutes=4, seconds=1))
    assert await step(ctl) == [timing.taskspec_name("nightly-off", c + timedelta(minutes=4))]
    assert len(await fired(kube, namespace, "nightly-off")) == 2


async def test_resume_annotation_counts_even_when_the_pause_was_never_seen(
    kube: KubeClient, namespace: str
) -> None:
    """Paused and resumed through the API while no operator ran: the API's
    resumed-at annotation still keeps the missed times from firing."""
    obj = await create_schedule(
        kube, namespace, schedule_body("blink", {"interval": "1m"}, suspend=True)
    )
    c = created_at(obj)
    resumed = c + timedelta(minutes=2, seconds=30)
    patch = {
        "metadata": {"annotations": {"flow.nico.io/resumed-at": stamp(resumed)}},
        "spec": {"suspend": False},
    }
    await kube.patch(SCHEDULES, "blink", patch, namespace)
    clock = Clock(resumed + timedelta(seconds=5))
    ctl = ScheduleController(kube, clock.now)
    assert await step(ctl) == []
    assert (await status_of(kube, namespace, "blink"))["lastSkippedTime"] == stamp(
        c + timedelta(minutes=2)
    )
    clock.set(c + timedelta(minutes=3, seconds=1))
    assert await step(ctl) == [timing.taskspec_name("blink", c + timedelta(minutes=3))]


def _task(namespace: str, taskspec: str, rack: str, phase: str) -> Json:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": f"{taskspec}-{rack}",
            "namespace": namespace,
            "labels": {"flow.nico.io/rack": rack, "flow.nico.io/taskspec": taskspec},
        },
        "spec": {
            "taskSpecName": taskspec,
            "rack": rack,
            "operation": "power_on",
            "components": [{"type": "compute", "ids": [{"name": "compute-01", "coreId": "m1"}]}],
            "rule": {
                "name": "builtin-power_on",
                "source": "builtin",
                "definition": builtin_rule(OperationCode.POWER_ON).to_crd(),
            },
        },
    }


async def test_overlap_skip_is_per_rack(kube: KubeClient, namespace: str) -> None:
    """One stuck rack must not hold back the schedule's other racks."""
    body = schedule_body("fleet", {"interval": "1m"})
    body["spec"]["taskSpecTemplate"]["spec"]["targets"]["racks"] = ["rack-a", "rack-b", "rack-c"]
    obj = await create_schedule(kube, namespace, body)
    c = created_at(obj)
    clock = Clock(c + timedelta(minutes=1, seconds=2))
    ctl = ScheduleController(kube, clock.now)
    first = timing.taskspec_name("fleet", c + timedelta(minutes=1))
    assert await step(ctl) == [first]
    assert "excludeRacks" not in (await kube.get(TASKSPECS, first, namespace))["spec"]["targets"]

    # the operator resolved it: rack-b still runs, the others are done
    for rack, phase in (("rack-a", "Succeeded"), ("rack-b", "Running"), ("rack-c", "Failed")):
        task = await kube.create(TASKS, _task(namespace, first, rack, phase), namespace)
        await kube.patch_status(TASKS, task["metadata"]["name"], {"phase": phase}, namespace)
    await kube.patch_status(
        TASKSPECS,
        first,
        {
            "phase": "Running",
            "racks": 3,
            "tasks": [
                {"name": f"{first}-{r}", "rack": r, "phase": p}
                for r, p in (("rack-a", "Succeeded"), ("rack-b", "Running"), ("rack-c", "Failed"))
            ],
        },
        namespace,
    )

    clock.set(c + timedelta(minutes=2, seconds=2))
    second = timing.taskspec_name("fleet", c + timedelta(minutes=2))
    assert await step(ctl) == [second]
    ts = await kube.get(TASKSPECS, second, namespace)
    assert ts["spec"]["targets"]["excludeRacks"] == ["rack-b"]
    assert ts["spec"]["targets"]["racks"] == ["rack-a", "rack-b", "rack-c"]
    status = await status_of(kube, namespace, "fleet")
    assert status["lastScheduleTime"] == stamp(c + timedelta(minutes=2))
    assert condition(status, "Skipped")["reason"] == "RacksStillBusy"
    assert "rack-b" in condition(status, "Skipped")["message"]

    # the second TaskSpec has not resolved yet: the next firing cannot tell
    # which racks it holds, so it waits
    clock.set(c + timedelta(minutes=3, seconds=2))
    assert await step(ctl) == []
    assert condition(await status_of(kube, namespace, "fleet"), "Skipped")["reason"] == (
        "PreviousUnfinished"
    )


async def test_overlap_skip_skips_the_firing_when_every_rack_is_busy(
    kube: KubeClient, namespace: str
) -> None:
    obj = await create_schedule(kube, namespace, schedule_body("solo", {"interval": "1m"}))
    c = created_at(obj)
    clock = Clock(c + timedelta(minutes=1, seconds=2))
    ctl = ScheduleController(kube, clock.now)
    first = timing.taskspec_name("solo", c + timedelta(minutes=1))
    assert await step(ctl) == [first]
    task = await kube.create(TASKS, _task(namespace, first, "rack-a", "Running"), namespace)
    await kube.patch_status(TASKS, task["metadata"]["name"], {"phase": "Running"}, namespace)
    await kube.patch_status(
        TASKSPECS,
        first,
        {
            "phase": "Running",
            "racks": 1,
            "tasks": [{"name": f"{first}-rack-a", "rack": "rack-a", "phase": "Running"}],
        },
        namespace,
    )
    clock.set(c + timedelta(minutes=2, seconds=2))
    assert await step(ctl) == []
    status = await status_of(kube, namespace, "solo")
    assert status["lastSkippedTime"] == stamp(c + timedelta(minutes=2))
    assert "rack-a" in condition(status, "Skipped")["message"]


async def test_trigger_is_recorded_and_consumes_a_one_time_schedule(
    kube: KubeClient, namespace: str
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    await create_schedule(kube, namespace, schedule_body("once", {"at": stamp(at)}))
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    ctl = ScheduleController(kube, clock.now)
    assert await step(ctl) == []
    patch = {"metadata": {"annotations": {ANNOTATION_TRIGGER_NOW: "now"}}}
    await kube.patch(SCHEDULES, "once", patch, namespace)
    assert await step(ctl) == [timing.trigger_name("once", "now")]
    status = await status_of(kube, namespace, "once")
    assert status["lastTriggerTime"] == stamp(clock.now())
    assert condition(status, "Completed")["reason"] == "Triggered"
    assert status.get("nextScheduleTime") is None
    # its own time does not run it a second time
    clock.set(at + timedelta(seconds=1))
    assert await step(ctl) == []
    assert len(await fired(kube, namespace, "once")) == 1
