"""The leak watch against the Core simulator over gRPC and a real apiserver —
and no database at all: the leak response needs neither PostgreSQL nor the
inventory pass. Time is a fake clock moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nicoflow.controller.alerts import Alert, AlertRouter
from nicoflow.controller.leak_response import (
    ANNOTATION_ROUND,
    LeakResponder,
    leak_taskspec_name,
)
from nicoflow.controller.leak_watch import LeakWatch
from nicoflow.controller.resources import LABEL_LEAK_RESPONSE, RACKS, TASKSPECS
from nicoflow.core.client import CoreClient, CoreClientSettings, RetryPolicy
from nicoflow.domain.leaks import LeakAction
from nicoflow.domain.types import ComponentType
from nicoflow.kube.client import EVENTS, ApiError, KubeClient
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.export import rack_object
from nicoflow.simulator.power import Power
from nicoflow.simulator.server import Simulator
from nicoflow.simulator.site import generate_site

CT = ComponentType
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(generate_site(1, seed=29), clock=FakeClock(), control_port=None) as s:
        yield s


@pytest.fixture
async def core(sim: Simulator) -> AsyncIterator[CoreClient]:
    settings = CoreClientSettings(
        target=sim.address,
        tls=None,
        allow_insecure=True,
        timeout=5.0,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02),
    )
    async with CoreClient.session(settings) as client:
        yield client


@pytest.fixture
async def kube(control_plane: Any, crds_installed: list[str]) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_env(str(control_plane.kubeconfig)) as client:
        yield client


async def leak_specs(kube: KubeClient, namespace: str) -> dict[str, dict[str, Any]]:
    found = await kube.list(TASKSPECS, namespace, label_selector=f"{LABEL_LEAK_RESPONSE}=true")
    return {b["metadata"]["name"]: b for b in found}


async def finish(kube: KubeClient, namespace: str, name: str, at: datetime) -> None:
    """What the operator does when the Task ran: the TaskSpec records completion."""
    await kube.patch_status(
        TASKSPECS,
        name,
        {
            "phase": "Complete",
            "completionTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "racks": 1,
            "succeeded": 1,
        },
        namespace,
    )


async def rack_named(kube: KubeClient, sim: Simulator, name: str) -> None:
    for _ in range(60):
        try:
            await kube.create(
                RACKS, rack_object(sim.world.site.racks[0]) | {"metadata": {"name": name}}
            )
            return
        except ApiError as exc:  # right after a CRD was (re)applied: 429 for a while
            if exc.status != 429:
                raise
            await asyncio.sleep(0.5)


async def test_a_tray_gets_one_power_off_and_one_more_when_powered_on_again(
    sim: Simulator, core: CoreClient, kube: KubeClient, namespace: str
) -> None:
    rack_name = f"{namespace}-repower"
    await rack_named(kube, sim, rack_name)
    recorder = Recorder()
    clock = Clock()
    world = sim.world
    tray = world.racks[world.site.racks[0].core_id].hosts[0]

    def watch() -> LeakWatch:
        # a new one stands for an operator restart: nothing carried over in memory
        return LeakWatch(
            core, kube, LeakResponder(kube, AlertRouter([recorder]), namespace), clock=clock
        )

    async def check_at(minutes: float, w: LeakWatch) -> LeakAction:
        clock.now = T0 + timedelta(minutes=minutes)
        await w.check_once()
        return w.responder.last_decisions[tray.id].action

    world.set_leak(tray)
    since = datetime.fromtimestamp(world.alerts(tray)[0].since, UTC)
    first = leak_taskspec_name(tray.id, since)
    second = leak_taskspec_name(tray.id, since, 1)

    w = watch()
    assert await check_at(0, w) is LeakAction.FIRST
    assert await check_at(1, w) is LeakAction.WAIT  # round 0 not finished: nothing new
    assert list(await leak_specs(kube, namespace)) == [first]
    world.set_power(tray, Power.OFF)
    await finish(kube, namespace, first, T0 + timedelta(minutes=2))
    assert await check_at(3, w) is LeakAction.NONE  # dark: done
    assert await check_at(4, watch()) is LeakAction.NONE  # also after a restart
    assert list(await leak_specs(kube, namespace)) == [first]

    world.set_power(tray, Power.ON)  # someone powers the leaking tray back on
    assert await check_at(5, watch()) is LeakAction.REPOWERED
    assert await check_at(6, w) is LeakAction.WAIT
    assert await check_at(7, watch()) is LeakAction.WAIT
    specs = await leak_specs(kube, namespace)
    assert sorted(specs) == sorted([first, second])
    again = specs[second]
    assert again["metadata"]["annotations"][ANNOTATION_ROUND] == "1"
    assert again["spec"]["operation"] == "force_power_off"
    assert again["spec"]["targets"]["components"] == [{"coreId": tray.id, "type": "compute"}]
    # the Rack's name and the tray's were found from the Rack object
    assert again["metadata"]["labels"]["flow.nico.io/rack"] == rack_name
    assert tray.component.name in again["spec"]["description"]

    world.set_power(tray, Power.OFF)
    await finish(kube, namespace, second, T0 + timedelta(minutes=8))
    assert await check_at(9, watch()) is LeakAction.NONE
    assert len(await leak_specs(kube, namespace)) == 2

    events = await kube.list(EVENTS, "default", field_selector=f"involvedObject.name={rack_name}")
    reasons = [e["reason"] for e in events if e["reason"].startswith("Leak")]
    assert sorted(reasons) == ["LeakDetected", "LeakRepowered"]
    critical = [a for a in recorder.alerts if a.severity.value == "critical"]
    assert [a.summary for a in critical] == [
        f"Coolant leak on {tray.component.name}: forcing power off",
        f"{tray.component.name} re-powered while leaking: forcing power off again",
    ]
    await kube.delete(RACKS, rack_name)


async def test_a_round_that_timed_out_in_a_queue_does_not_stop_the_response(
    sim: Simulator, core: CoreClient, kube: KubeClient, namespace: str
) -> None:
    # before, a leak TaskSpec cancelled by its queue timeout read as "a person
    # cancelled it" and held the response for good
    clock = Clock()
    tray = sim.world.racks[sim.world.site.racks[0].core_id].hosts[1]
    w = LeakWatch(core, kube, LeakResponder(kube, AlertRouter([]), namespace), clock=clock)
    sim.world.set_leak(tray)
    await w.check_once()
    (name,) = await leak_specs(kube, namespace)
    await kube.patch_status(
        TASKSPECS,
        name,
        {"phase": "Cancelled", "completionTime": "2025-06-01T12:01:00Z", "racks": 1},
        namespace,
    )
    clock.now = T0 + timedelta(minutes=3)
    await w.check_once()
    decision = w.responder.last_decisions[tray.id]
    assert decision.action is LeakAction.STILL_ON, decision
    assert len(await leak_specs(kube, namespace)) == 2

    # a person asking to cancel holds it, and is named
    second = next(n for n in await leak_specs(kube, namespace) if n != name)
    await kube.patch(TASKSPECS, second, {"spec": {"cancel": True}}, namespace)
    clock.now = T0 + timedelta(minutes=5)
    await w.check_once()
    held = w.responder.last_decisions[tray.id]
    assert held.action is LeakAction.HELD
    assert "cancelled by a person" in held.reason


async def test_a_switch_leak_keeps_its_incident_across_checks_and_restarts(
    sim: Simulator, core: CoreClient, kube: KubeClient, namespace: str
) -> None:
    # Core gives no alert time for switches: the incident starts when first
    # seen, and a restarted watch continues it from the leak TaskSpec
    clock = Clock()
    switch = sim.world.racks[sim.world.site.racks[0].core_id].switches[0]
    sim.world.set_leak(switch)

    def watch() -> LeakWatch:
        return LeakWatch(core, kube, LeakResponder(kube, AlertRouter([]), namespace), clock=clock)

    w = watch()
    (leak,) = await w.check_once()
    assert leak.type is CT.NVSWITCH
    clock.now = T0 + timedelta(minutes=2)
    (again,) = await w.check_once()
    (after_restart,) = await watch().check_once()
    assert leak.since == again.since == after_restart.since == T0
    assert len(await leak_specs(kube, namespace)) == 1


async def test_one_failing_question_still_answers_the_other_type(
    sim: Simulator, core: CoreClient, kube: KubeClient, namespace: str
) -> None:
    clock = Clock()
    rack = sim.world.racks[sim.world.site.racks[0].core_id]
    sim.world.set_leak(rack.hosts[2])
    sim.world.set_leak(rack.switches[1])
    sim.set_faults({"errors": [{"method": "FindMachineIds", "code": "INTERNAL"}]})
    w = LeakWatch(core, kube, LeakResponder(kube, AlertRouter([]), namespace), clock=clock)
    leaks = await w.check_once()
    assert [leak.core_id for leak in leaks] == [rack.switches[1].id]
    assert len(await leak_specs(kube, namespace)) == 1
