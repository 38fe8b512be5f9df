"""The living inventory end to end: the in-process NICo Core simulator over real
gRPC, a migrated PostgreSQL, and (for the leak response) a real apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nicoflow.controller.alerts import Alert, AlertRouter
from nicoflow.controller.inventory_sync import InventorySyncer
from nicoflow.controller.resources import LABEL_LEAK_RESPONSE, RACKS, TASKSPECS
from nicoflow.core.client import CoreClient, CoreClientSettings, RetryPolicy
from nicoflow.core.expected import ANNOTATION_CORE_RACK, LABEL_SOURCE
from nicoflow.core.observe import observe_site
from nicoflow.domain.types import ComponentType, OperationType, PowerState
from nicoflow.inventory import migrate
from nicoflow.inventory.db import make_async_engine, make_async_session_factory
from nicoflow.inventory.mirror import rack_summary, upsert_rack
from nicoflow.inventory.models import (
    Component,
    ComponentDrift,
    ComponentPhase,
    DriftType,
    LeakStatus,
    SyncState,
)
from nicoflow.inventory.models import Rack as RackRow
from nicoflow.inventory.sync import SYNC_JOB, apply_observation
from nicoflow.kube.client import ApiError, KubeClient
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.export import rack_object
from nicoflow.simulator.power import Power
from nicoflow.simulator.server import Simulator
from nicoflow.simulator.site import Rack, Site, generate_site

CT = ComponentType
FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Bench:
    sim: Simulator
    core: CoreClient
    sessions: async_sessionmaker[AsyncSession]

    def rack(self, i: int = 0) -> Rack:
        return self.sim.world.site.racks[i]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    migrate.upgrade(database_url)
    eng = make_async_engine(database_url)
    yield eng
    await eng.dispose()


@contextlib.asynccontextmanager
async def running(engine: AsyncEngine, site: Site) -> AsyncIterator[Bench]:
    async with Simulator(site, clock=FakeClock(), control_port=None) as sim:
        settings = CoreClientSettings(
            target=sim.address, tls=None, allow_insecure=True, timeout=5.0, retry=FAST_RETRY
        )
        async with CoreClient.session(settings) as core:
            yield Bench(sim, core, make_async_session_factory(engine))


@pytest.fixture
async def bench(engine: AsyncEngine) -> AsyncIterator[Bench]:
    async with running(engine, generate_site(2, seed=11)) as b:
        yield b


def rack_body(rack: Rack, name: str | None = None) -> dict[str, Any]:
    body = rack_object(rack)
    body["metadata"].update(
        name=name or rack.name, uid=f"uid-{name or rack.name}", generation=1, resourceVersion="1"
    )
    return body


def spec_component(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in body["spec"]["components"] if c["name"] == name)
    return found


async def load(bench: Bench, *bodies: dict[str, Any]) -> None:
    async with bench.sessions() as session, session.begin():
        for body in bodies:
            await upsert_rack(session, body)


async def sync(bench: Bench, now: datetime = NOW) -> Any:
    obs = await observe_site(bench.core)
    async with bench.sessions() as session, session.begin():
        return await apply_observation(session, obs, now)


async def component(bench: Bench, name: str, rack_serial_of: Rack | None = None) -> Component:
    async with bench.sessions() as session:
        rows = (await session.scalars(select(Component).where(Component.name == name))).all()
    if rack_serial_of is not None:
        serials = {c.serial for c in rack_serial_of.components}
        rows = [r for r in rows if r.serial_number in serials]
    assert len(rows) == 1, [r.serial_number for r in rows]
    return rows[0]


async def drift_rows(bench: Bench) -> list[ComponentDrift]:
    async with bench.sessions() as session:
        return list((await session.scalars(select(ComponentDrift))).all())


async def test_sync_fills_observed_state_for_every_type(bench: Bench) -> None:
    r0, r1 = bench.rack(0), bench.rack(1)
    body = rack_body(r0)
    # The spec does not know a shelf's Core id: sync learns it by serial.
    shelf = next(c for c in r0.components if c.type is CT.POWERSHELF)
    del spec_component(body, shelf.name)["coreId"]
    await load(bench, body, rack_body(r1))
    switch = next(c for c in r0.components if c.type is CT.NVSWITCH)
    bench.sim.world.set_power(bench.sim.world.node(switch.core_id), Power.OFF)
    tray = next(c for c in r0.components if c.type is CT.COMPUTE)
    bench.sim.world.set_controller_state(bench.sim.world.node(tray.core_id), "Assigned/Ready")

    result = await sync(bench)

    assert result.errors == {}
    for ctype, n in ((CT.COMPUTE, 36), (CT.NVSWITCH, 18), (CT.POWERSHELF, 16)):
        assert result.types[ctype].observed == n
        assert result.types[ctype].matched == n
    assert result.types[CT.POWERSHELF].external_ids_written == 1
    assert result.drift_total == 0
    assert await drift_rows(bench) == []

    s = await component(bench, shelf.name, r0)
    assert s.external_id == shelf.core_id
    assert s.power_state is PowerState.ON
    assert s.actual_firmware is not None
    assert s.actual_firmware["version"] == shelf.firmware["pmc"]
    assert s.status_phase is ComponentPhase.READY
    assert s.blocked_operations == []
    assert s.observed_at == NOW

    assert s.nvos_ip is None  # shelves run no NVOS

    sw = await component(bench, switch.name, r0)
    assert switch.nvos_ip is not None
    assert sw.nvos_ip == switch.nvos_ip
    assert sw.power_state is PowerState.OFF
    assert sw.leak_status is LeakStatus.NOT_DETECTED
    assert sw.actual_firmware is not None
    assert sw.actual_firmware["version"] == switch.firmware["bmc"]

    t = await component(bench, tray.name, r0)
    assert t.status_phase is ComponentPhase.IN_USE
    assert t.status_reason == "Assigned/Ready"
    assert sorted(t.blocked_operations) == [
        OperationType.FIRMWARE_CONTROL.value,
        OperationType.POWER_CONTROL.value,
    ]
    assert t.power_state is PowerState.ON

    async with bench.sessions() as session:
        state = await session.get(SyncState, SYNC_JOB)
    assert state is not None
    assert state.last_succeeded_at == NOW
    assert state.last_error is None


async def test_drift_for_every_component_type(bench: Bench) -> None:
    r0 = bench.rack(0)
    body = rack_body(r0)
    by_type = {t: [c for c in r0.components if c.type is t] for t in CT if r0.of_type(t)}
    comps = body["spec"]["components"]
    # compute: one tray Flow does not know (unexpected), one misplaced (mismatch)
    unknown_tray, misplaced_tray = by_type[CT.COMPUTE][0], by_type[CT.COMPUTE][1]
    comps.remove(spec_component(body, unknown_tray.name))
    spec_component(body, misplaced_tray.name)["position"]["slotId"] = 40
    # nvswitch: one with the wrong serial (mismatch), one Core has never heard of (missing),
    # one Flow does not know (unexpected)
    wrong_serial, dropped_switch = by_type[CT.NVSWITCH][0], by_type[CT.NVSWITCH][1]
    spec_component(body, wrong_serial.name)["serialNumber"] = "NVS-WRONG"
    comps.remove(spec_component(body, dropped_switch.name))
    ghost = copy.deepcopy(spec_component(body, by_type[CT.NVSWITCH][2].name))
    ghost.update(name="nvswitch-ghost", serialNumber="NVS-GHOST", coreId="sw-ghost")
    ghost["bmcs"] = [{"type": "host", "macAddress": "02:ff:00:00:00:01"}]
    comps.append(ghost)
    # powershelf: firmware changed under Flow (mismatch), one missing, one unexpected
    shelves = by_type[CT.POWERSHELF]
    comps.remove(spec_component(body, shelves[1].name))
    ghost_shelf = copy.deepcopy(spec_component(body, shelves[2].name))
    ghost_shelf.update(name="powershelf-ghost", serialNumber="PS-GHOST", coreId="ps-ghost")
    ghost_shelf["bmcs"] = [{"type": "host", "macAddress": "02:ff:00:00:00:02"}]
    comps.append(ghost_shelf)
    await load(bench, body)
    bench.sim.world.set_firmware(bench.sim.world.node(shelves[0].core_id), {"pmc": "9.9.9"})
    # rack 1 is not in Flow at all: all its components are unexpected too.

    result = await sync(bench)
    rows = await drift_rows(bench)

    def find(ctype: CT, kind: DriftType, ext: str) -> ComponentDrift:
        hits = [
            r
            for r in rows
            if r.component_type is ctype and r.drift_type is kind and r.external_id == ext
        ]
        assert len(hits) == 1, (ctype, kind, ext, [(r.drift_type, r.external_id) for r in rows])
        return hits[0]

    find(CT.COMPUTE, DriftType.UNEXPECTED, unknown_tray.core_id)
    slot = find(CT.COMPUTE, DriftType.MISMATCH, misplaced_tray.core_id).diffs
    assert slot == [
        {
            "field_name": "slot_id",
            "expected_value": "40",
            "actual_value": str(misplaced_tray.position.slot_id),
        }
    ]
    serial = find(CT.NVSWITCH, DriftType.MISMATCH, wrong_serial.core_id).diffs
    assert serial == [
        {
            "field_name": "serial_number",
            "expected_value": "NVS-WRONG",
            "actual_value": wrong_serial.serial,
        }
    ]
    missing = find(CT.NVSWITCH, DriftType.MISSING, "sw-ghost")
    assert missing.component_id is not None
    unexpected = find(CT.NVSWITCH, DriftType.UNEXPECTED, dropped_switch.core_id)
    assert unexpected.component_id is None
    assert {
        "field_name": "serial_number",
        "expected_value": "<missing>",
        "actual_value": dropped_switch.serial,
    } in unexpected.diffs
    fw = find(CT.POWERSHELF, DriftType.MISMATCH, shelves[0].core_id).diffs
    assert fw == [
        {
            "field_name": "firmware_version",
            "expected_value": shelves[0].firmware["pmc"],
            "actual_value": "9.9.9",
        }
    ]
    find(CT.POWERSHELF, DriftType.MISSING, "ps-ghost")
    find(CT.POWERSHELF, DriftType.UNEXPECTED, shelves[1].core_id)
    # rack 1 is unknown to Flow: 18 + 9 + 8 more unexpected
    assert result.types[CT.COMPUTE].unexpected == 1 + 18
    assert result.types[CT.NVSWITCH].unexpected == 1 + 9
    assert result.types[CT.POWERSHELF].unexpected == 1 + 8
    ghost_row = await component(bench, "nvswitch-ghost")
    assert ghost_row.status_reason == "not reported by NICo Core"
    assert ghost_row.power_state is PowerState.UNKNOWN


async def test_a_failed_core_call_leaves_inventory_and_drift_untouched(bench: Bench) -> None:
    r0 = bench.rack(0)
    body = rack_body(r0)
    tray = next(c for c in r0.components if c.type is CT.COMPUTE)
    body["spec"]["components"].remove(spec_component(body, tray.name))
    await load(bench, body)
    first = await sync(bench)
    assert first.types[CT.COMPUTE].unexpected == 1 + 18
    before = {(r.component_type, r.drift_type, r.external_id) for r in await drift_rows(bench)}
    other = next(c for c in r0.components if c.type is CT.COMPUTE and c is not tray)
    before_tray = await component(bench, other.name, r0)

    bench.sim.set_faults({"errors": [{"method": "FindMachineIds", "code": "UNAVAILABLE"}]})
    bench.sim.world.set_power(bench.sim.world.node(other.core_id), Power.OFF)
    later = datetime(2025, 6, 1, 12, 5, tzinfo=UTC)
    result = await sync(bench, later)

    assert set(result.errors) == {CT.COMPUTE}
    assert "UNAVAILABLE" in result.errors[CT.COMPUTE]
    assert CT.COMPUTE not in result.types
    assert result.types[CT.NVSWITCH].matched == 9  # the other types still sync
    after = {(r.component_type, r.drift_type, r.external_id) for r in await drift_rows(bench)}
    assert after == before
    tray_row = await component(bench, other.name, r0)
    assert tray_row.power_state is PowerState.ON  # not the OFF Core would now report
    assert tray_row.observed_at == before_tray.observed_at == NOW
    assert tray_row.status_phase is before_tray.status_phase
    async with bench.sessions() as session:
        state = await session.get(SyncState, SYNC_JOB)
        per_type = await session.get(SyncState, f"{SYNC_JOB}/compute")
        switches = await session.get(SyncState, f"{SYNC_JOB}/nvswitch")
    assert state is not None
    assert per_type is not None
    assert switches is not None
    assert state.last_succeeded_at == NOW
    assert state.last_error is not None
    assert "FindMachineIds" in state.last_error
    assert per_type.last_error is not None
    assert per_type.last_succeeded_at == NOW
    assert switches.last_error is None
    assert switches.last_succeeded_at == later


async def served(kube: KubeClient, namespace: str, within: float = 60.0) -> None:
    """Wait until the apiserver serves our resources: right after `crds_installed`
    re-applied a changed CRD it answers 429 (storage re-initializing) for a while,
    which the syncer would rightly treat as a failed pass."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await kube.list(TASKSPECS, namespace)
            await kube.list(RACKS)
            return
        except ApiError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def test_a_leak_shows_in_the_rack_status_and_the_sync_requests_nothing(
    bench: Bench, control_plane: Any, crds_installed: list[str], namespace: str
) -> None:
    """The inventory pass records a leak; the response is the leak watch's."""
    r0 = bench.rack(0)
    rack_name = f"{namespace}-leak"
    body = rack_body(r0, rack_name)
    await load(bench, body)
    clock_values = iter(datetime(2025, 6, 1, 12, m, tzinfo=UTC) for m in range(10))
    clock: Callable[[], datetime] = lambda: next(clock_values)  # noqa: E731

    async with KubeClient.from_env(str(control_plane.kubeconfig)) as kube:
        await served(kube, namespace)
        created = await kube.create(
            RACKS, dict(rack_object(r0).items()) | {"metadata": {"name": rack_name}}
        )
        assert created["metadata"]["name"] == rack_name
        syncer = InventorySyncer(
            bench.sessions,
            bench.core,
            kube,
            AlertRouter([Recorder()]),
            clock,
            60.0,
            namespace=namespace,
        )
        await syncer.sync_once()
        tray = next(c for c in r0.components if c.type is CT.COMPUTE)
        bench.sim.world.set_leak(bench.sim.world.node(tray.core_id))
        results = [await syncer.sync_once() for _ in range(3)]
        assert [len(r.new_leaks) for r in results] == [1, 0, 0]
        specs = await kube.list(TASKSPECS, namespace, label_selector=f"{LABEL_LEAK_RESPONSE}=true")
        assert specs == []

        rack = await kube.get(RACKS, rack_name)
        status = rack["status"]
        assert status["leak"]["state"] == "Detected"
        assert status["leak"]["components"] == [tray.name]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["LeakDetected"]["status"] == "True"
        assert conditions["InventorySynced"]["reason"] == "Observed"
        assert status["power"]["on"] == 35
        assert {f["type"] for f in status["firmware"]} == {"compute", "nvswitch", "powershelf"}
        await kube.delete(RACKS, rack_name)


async def test_unexpected_components_count_in_the_rack_that_holds_them(bench: Bench) -> None:
    r0, r1 = bench.rack(0), bench.rack(1)
    trays0 = r0.of_type(CT.COMPUTE)
    # rack 0 (Core id known to Flow) forgets one tray: Core places it in rack 0.
    body0 = rack_body(r0)
    body0["spec"]["components"].remove(spec_component(body0, trays0[0].name))
    # rack 1 has no Core id in Flow, so Core's word cannot place anything there; its
    # spec names tray X under tray Y's Core id (and lists no Y), so Core's X is unknown
    # to Flow - but rack 1's layout lists X's serial, which places it.
    trays1 = r1.of_type(CT.COMPUTE)
    x, y = trays1[0], trays1[1]
    body1 = rack_body(r1)
    del body1["spec"]["coreId"]
    spec_component(body1, x.name)["coreId"] = y.core_id
    body1["spec"]["components"].remove(spec_component(body1, y.name))
    await load(bench, body0, body1)

    result = await sync(bench)

    assert result.types[CT.COMPUTE].unexpected == 2
    async with bench.sessions() as session:
        ids = dict((await session.execute(select(RackRow.name, RackRow.id))).all())
        s0 = await rack_summary(session, r0.name)
        s1 = await rack_summary(session, r1.name)
    placed = {
        r.external_id: r.rack_id
        for r in await drift_rows(bench)
        if r.drift_type is DriftType.UNEXPECTED
    }
    assert placed == {trays0[0].core_id: ids[r0.name], x.core_id: ids[r1.name]}
    assert s0 is not None
    assert s1 is not None
    assert (s0.drift_unexpected, s0.drift_missing, s0.drift_mismatch) == (1, 0, 0)
    # rack 1 also has the serial mismatch of X-under-Y's-id
    assert (s1.drift_unexpected, s1.drift_mismatch) == (1, 1)

    # A rack that goes away leaves its unexpected components unplaced, still listed.
    async with bench.sessions() as session, session.begin():
        await session.execute(delete(Component).where(Component.rack_id == ids[r0.name]))
        await session.execute(delete(RackRow).where(RackRow.id == ids[r0.name]))
    left = {r.external_id: r.rack_id for r in await drift_rows(bench)}
    assert left[trays0[0].core_id] is None


class Clock:
    """The syncer's clock, moved by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_racks_core_expects_are_mirrored_into_rack_objects_once(
    engine: AsyncEngine, control_plane: Any, crds_installed: list[str], namespace: str
) -> None:
    # Rack names and Core ids unique to this test: Racks are cluster-scoped.
    base = generate_site(2, seed=13)
    site = dataclasses.replace(
        base,
        racks=tuple(
            dataclasses.replace(r, name=f"{namespace}-{i}", core_id=f"{namespace}-core-{i}")
            for i, r in enumerate(base.racks)
        ),
    )
    async with running(engine, site) as bench:
        r0, r1 = bench.rack(0), bench.rack(1)
        async with KubeClient.from_env(str(control_plane.kubeconfig)) as kube:
            await served(kube, namespace)
            # rack 0 is the user's (no source label); rack 1 exists only in Core
            mine = await kube.create(RACKS, rack_object(r0))
            await load(bench, rack_body(r0))
            s = InventorySyncer(
                bench.sessions,
                bench.core,
                kube,
                AlertRouter([Recorder()]),
                namespace=namespace,
                mirror_expected_racks=True,
            )
            try:
                await s.sync_once()
                assert s.last_mirrored == (r1.name,)

                created = await kube.get(RACKS, r1.name)
                assert created["metadata"]["labels"] == {LABEL_SOURCE: "core"}
                assert created["metadata"]["annotations"][ANNOTATION_CORE_RACK] == r1.core_id
                spec = created["spec"]
                assert spec["coreId"] == r1.core_id
                assert spec["identity"]["serialNumber"] == r1.serial
                assert spec["location"]["position"] == r1.location.position
                got = {c["name"]: c for c in spec["components"]}
                assert set(got) == {c.name for c in r1.components}
                for c in r1.components:
                    g = got[c.name]
                    assert (g["type"], g["serialNumber"], g["coreId"]) == (
                        c.type.value,
                        c.serial,
                        c.core_id,
                    )
                    assert g["bmcs"] == [
                        {"type": "host", "macAddress": c.bmc.mac, "ipAddress": c.bmc.ip}
                    ]
                    want = {"slotId": c.position.slot_id, "trayIndex": c.position.tray_index}
                    if c.position.host_id is not None:
                        want["hostId"] = c.position.host_id
                    assert g["position"] == want
                # the user's Rack is untouched
                after = await kube.get(RACKS, r0.name)
                assert LABEL_SOURCE not in (after["metadata"].get("labels") or {})
                assert after["spec"] == mine["spec"]

                # A second pass writes nothing: no Rack created or changed.
                before = {r["metadata"]["name"]: r["metadata"]["resourceVersion"]
                          for r in await kube.list(RACKS)}  # fmt: skip
                await s.sync_once()
                assert len(s.last_mirrored) == 0
                now = {r["metadata"]["name"]: r["metadata"]["resourceVersion"]
                       for r in await kube.list(RACKS)}  # fmt: skip
                assert now == before

                # The mirrored Rack is one the inventory takes as it is, and Core then
                # matches every one of its components: no drift for it.
                await load(bench, created)
                result = await sync(bench)
                assert result.drift_total == 0
                assert all(c.matched == c.observed for c in result.types.values())
            finally:
                for name in (r0.name, r1.name):
                    with contextlib.suppress(Exception):
                        await kube.delete(RACKS, name)
