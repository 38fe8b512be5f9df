"""The Rack → PostgreSQL mirror and the inventory queries on a real, migrated PostgreSQL,
through the async engine the operator uses."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nicoflow.domain.targets import resolve_targets
from nicoflow.domain.types import ComponentType, OperationType, PowerState, TaskPhase
from nicoflow.inventory import migrate
from nicoflow.inventory.db import make_async_engine, make_async_session_factory
from nicoflow.inventory.mirror import (
    MirrorAction,
    MirrorConflict,
    MirrorError,
    delete_rack,
    rack_summary,
    soft_delete_rack,
    upsert_rack,
)
from nicoflow.inventory.models import (
    BMC,
    Component,
    ComponentDrift,
    ComponentPhase,
    DriftType,
    LeakStatus,
    NVLDomain,
    Rack,
    TaskHistory,
)
from nicoflow.inventory.queries import (
    archive_task,
    component_statuses,
    load_for_targets,
    load_racks,
    task_history,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def example(name: str, *, generation: int = 1, core_ids: bool = True) -> dict[str, Any]:
    """A Rack object as the apiserver would hand it to the operator."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / f"rack-{name}.yaml").read_text())
    body["metadata"].update(uid=f"uid-{name}", generation=generation, resourceVersion="1")
    if core_ids:
        for c in body["spec"]["components"]:
            c["coreId"] = f"{name}-{c['name']}"
    return body


def bump(body: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["metadata"]["generation"] += 1
    new["metadata"]["resourceVersion"] = str(int(new["metadata"]["resourceVersion"]) + 1)
    return new


def spec_component(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in body["spec"]["components"] if c["name"] == name)
    return found


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    migrate.upgrade(database_url)
    eng = make_async_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_async_session_factory(engine)


async def upsert(sessions: async_sessionmaker[AsyncSession], body: dict[str, Any]) -> Any:
    async with sessions() as session, session.begin():
        return await upsert_rack(session, body)


async def count(sessions: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def stamps(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Every updated_at in the inventory, to prove no row was rewritten."""
    async with sessions() as session:
        out: dict[str, Any] = {}
        for model, key in ((Rack, Rack.name), (Component, Component.serial_number)):
            rows = await session.execute(select(key, model.updated_at))
            out.update({f"{model.__name__}:{k}": v for k, v in rows.all()})
        rows = await session.execute(select(BMC.mac_address, BMC.updated_at))
        out.update({f"BMC:{k}": v for k, v in rows.all()})
        return out


async def test_example_rack_is_mirrored(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01")
    spec_components = body["spec"]["components"]
    spec_bmcs = sum(len(c.get("bmcs") or []) for c in spec_components)
    assert (len(spec_components), spec_bmcs) == (35, 71)  # 18 compute x 3, 9 switches, 8 shelves

    result = await upsert(sessions, body)
    assert result.action is MirrorAction.CREATED
    assert (result.components_created, result.bmcs_created) == (35, 71)
    assert await count(sessions, Component) == 35
    assert await count(sessions, BMC) == 71

    async with sessions() as session:
        rack = (await session.scalars(select(Rack))).one()
        assert (rack.name, rack.manufacturer, rack.serial_number) == (
            "gb200-a01",
            "NVIDIA",
            "NVL72-2024-00001",
        )
        assert (rack.model, rack.datacenter, rack.position) == ("GB200 NVL72", "dc1", "row-a/01")
        assert rack.labels == {"site": "dc1", "row": "a", "model": "gb200-nvl72"}
        assert (rack.source_uid, rack.source_generation) == ("uid-gb200-a01", 1)
        domain = (await session.scalars(select(NVLDomain))).one()
        assert domain.name == "nvl-a01"
        assert rack.nvl_domain_id == domain.id
        c01 = (await session.scalars(select(Component).where(Component.name == "compute-01"))).one()
        assert (c01.type, c01.serial_number, c01.external_id) == (
            ComponentType.COMPUTE,
            "CT240120001",
            "gb200-a01-compute-01",
        )
        assert (c01.slot_id, c01.tray_index, c01.host_id) == (7, 0, 0)
        assert c01.firmware_version == "1.3.2-gb200"
        assert c01.rack_id == rack.id
        assert [(b.mac_address, b.type.value, b.ip_address) for b in c01.bmcs] == [
            ("02:6e:66:01:20:01", "host", "10.101.20.1"),
            ("02:6e:66:01:21:01", "dpu", "10.101.21.1"),
            ("02:6e:66:01:22:01", "dpu", "10.101.22.1"),
        ]
        assert {b.credentials_secret_ref for b in c01.bmcs} == {"nico-flow/bmc-credentials-a01"}

    async with sessions() as session:
        summary = await rack_summary(session, "gb200-a01")
    assert summary is not None
    assert summary.counts == {
        ComponentType.COMPUTE: 18,
        ComponentType.NVSWITCH: 9,
        ComponentType.POWERSHELF: 8,
    }
    assert summary.total == 35
    assert (summary.power_on, summary.power_off, summary.power_unknown) == (0, 0, 35)
    assert summary.firmware[ComponentType.COMPUTE].expected == {"1.3.2-gb200": 18}
    assert summary.firmware[ComponentType.COMPUTE].actual == {}


async def test_same_generation_is_a_no_op(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01")
    await upsert(sessions, body)
    before = await stamps(sessions)

    again = await upsert(sessions, copy.deepcopy(body))
    assert again.action is MirrorAction.UNCHANGED
    assert await stamps(sessions) == before

    # A new generation with the same content writes the generation but no component or BMC.
    newer = await upsert(sessions, bump(body))
    assert newer.action is MirrorAction.UPDATED
    assert (newer.components_updated, newer.bmcs_created, newer.bmcs_updated) == (0, 0, 0)
    after = await stamps(sessions)
    assert {k: v for k, v in after.items() if not k.startswith("Rack:")} == {
        k: v for k, v in before.items() if not k.startswith("Rack:")
    }

    # An older generation (a replayed event) changes nothing.
    stale = await upsert(sessions, body)
    assert stale.action is MirrorAction.STALE
    async with sessions() as session:
        assert await session.scalar(select(Rack.source_generation)) == 2


async def test_label_change_without_generation(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01")
    await upsert(sessions, body)
    body["metadata"]["labels"]["row"] = "z"
    result = await upsert(sessions, body)
    assert result.action is MirrorAction.LABELS
    async with sessions() as session:
        assert await session.scalar(select(Rack.labels)) == {
            "site": "dc1",
            "row": "z",
            "model": "gb200-nvl72",
        }


async def test_spec_edits_are_applied(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01")
    await upsert(sessions, body)
    async with sessions() as session:
        ids = dict((await session.execute(select(Component.name, Component.id))).all())

    edited = bump(body)
    comps = edited["spec"]["components"]
    comps[:] = [c for c in comps if c["name"] != "compute-18"]
    spec_component(edited, "compute-01")["firmwareVersion"] = "1.4.0"
    # two switches swap Core ids, a BMC moves from one compute tray to another
    sw1, sw2 = spec_component(edited, "nvswitch-01"), spec_component(edited, "nvswitch-02")
    sw1["coreId"], sw2["coreId"] = sw2["coreId"], sw1["coreId"]
    c2, c3 = spec_component(edited, "compute-02"), spec_component(edited, "compute-03")
    moved = c2["bmcs"].pop()
    c3["bmcs"].append(moved)
    spec_component(edited, "powershelf-01")["bmcs"][0]["ipAddress"] = "10.9.9.9"
    edited["spec"]["nvlDomain"] = "nvl-big"

    result = await upsert(sessions, edited)
    assert result.action is MirrorAction.UPDATED
    assert result.components_deleted == 1
    assert result.components_created == 0
    # compute-01 firmware, two switches' Core ids, and the place in the list of
    # every component after compute-18
    names = [c["name"] for c in body["spec"]["components"]]
    after = len(names) - names.index("compute-18") - 1
    assert result.components_updated == 3 + after

    # the component left the spec: soft-deleted (PurgeComponent removes it), out of the
    # rack, its BMCs and Core id given up
    assert await count(sessions, Component) == 35
    assert await count(sessions, BMC) == 68
    async with sessions() as session:
        gone = await session.scalar(select(Component).where(Component.name == "compute-18"))
        assert gone is not None
        assert gone.deleted_at is not None
        assert (gone.rack_id, gone.external_id, gone.bmcs) == (None, None, [])
        rows = (
            await session.execute(
                select(Component.name, Component.id).where(Component.deleted_at.is_(None))
            )
        ).all()
        now = dict(rows)
        assert len(now) == 34
        assert "compute-18" not in now
        assert all(now[n] == ids[n] for n in now), "kept components keep their inventory id"
        cores = dict(
            (
                await session.execute(
                    select(Component.name, Component.external_id).where(
                        Component.type == ComponentType.NVSWITCH
                    )
                )
            ).all()
        )
        assert cores["nvswitch-01"] == "gb200-a01-nvswitch-02"
        assert cores["nvswitch-02"] == "gb200-a01-nvswitch-01"
        owner = await session.scalar(
            select(Component.name)
            .join(BMC, BMC.component_id == Component.id)
            .where(BMC.mac_address == moved["macAddress"])
        )
        assert owner == "compute-03"
        ip = await session.scalar(
            select(BMC.ip_address)
            .join(Component, BMC.component_id == Component.id)
            .where(Component.name == "powershelf-01")
        )
        assert ip == "10.9.9.9"
        domain = await session.scalar(
            select(NVLDomain.name).join(Rack, Rack.nvl_domain_id == NVLDomain.id)
        )
        assert domain == "nvl-big"


async def test_serial_of_another_rack_is_a_conflict(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a01, a02 = example("gb200-a01"), example("gb200-a02")
    await upsert(sessions, a01)
    await upsert(sessions, a02)
    before = await stamps(sessions)

    stolen = bump(a01)
    spec_component(stolen, "compute-05")["serialNumber"] = spec_component(a02, "compute-07")[
        "serialNumber"
    ]
    with pytest.raises(MirrorConflict, match="already belongs to rack gb200-a02") as info:
        await upsert(sessions, stolen)
    assert info.value.other_rack == "gb200-a02"
    assert "compute-05" in str(info.value)
    assert await stamps(sessions) == before  # the transaction rolled back as a whole

    # The same for a Core id, a BMC MAC and the rack's own serial number.
    stolen = bump(a01)
    spec_component(stolen, "nvswitch-01")["coreId"] = "gb200-a02-nvswitch-01"
    with pytest.raises(MirrorConflict, match=r"core id gb200-a02-nvswitch-01.*rack gb200-a02"):
        await upsert(sessions, stolen)
    stolen = bump(a01)
    mac = spec_component(a02, "powershelf-01")["bmcs"][0]["macAddress"]
    spec_component(stolen, "powershelf-01")["bmcs"][0]["macAddress"] = mac.upper()
    with pytest.raises(MirrorConflict, match=f"MAC {mac}.*rack gb200-a02"):
        await upsert(sessions, stolen)
    stolen = bump(a01)
    stolen["spec"]["identity"]["serialNumber"] = a02["spec"]["identity"]["serialNumber"]
    with pytest.raises(MirrorConflict, match="already belongs to rack gb200-a02"):
        await upsert(sessions, stolen)
    assert await stamps(sessions) == before


async def test_concurrent_claim_is_a_conflict(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Two racks claiming one serial at the same time: the database's unique key decides,
    and the loser gets a MirrorConflict rather than a raw IntegrityError."""
    a01 = example("gb200-a01")
    twin = example("gb200-a01")
    twin["metadata"].update(name="gb200-twin", uid="uid-twin")
    twin["spec"]["identity"]["serialNumber"] = "TWIN-1"
    twin["spec"]["nvlDomain"] = "nvl-twin"
    twin["spec"]["components"] = [
        {**c, "coreId": "twin-" + c["name"], "bmcs": []}
        for c in twin["spec"]["components"]
        if c["name"] == "compute-01"
    ]
    first_wrote = asyncio.Event()

    async def first() -> None:
        async with sessions() as session, session.begin():
            await upsert_rack(session, a01)
            first_wrote.set()
            await asyncio.sleep(0.5)  # still uncommitted while the second one writes

    async def second() -> None:
        await first_wrote.wait()
        async with sessions() as session, session.begin():
            await upsert_rack(session, twin)

    results = await asyncio.gather(first(), second(), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], MirrorConflict)
    assert "claimed the same identity concurrently" in str(results[1])
    assert await count(sessions, Rack) == 1


async def test_invalid_spec_is_a_mirror_error(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01")
    spec_component(body, "compute-02")["serialNumber"] = "CT240120001"  # same as compute-01
    with pytest.raises(MirrorError, match="compute-01 and compute-02 have the same"):
        await upsert(sessions, body)
    body = example("gb200-a01")
    body["spec"]["components"][0]["type"] = "blade"
    with pytest.raises(MirrorError, match=r"invalid spec: components\[0\]\.type"):
        await upsert(sessions, body)
    assert await count(sessions, Rack) == 0


async def test_recreated_object_rewrites(sessions: async_sessionmaker[AsyncSession]) -> None:
    body = example("gb200-a01", generation=5)
    await upsert(sessions, body)
    recreated = example("gb200-a01", generation=1)
    recreated["metadata"]["uid"] = "uid-new"
    recreated["spec"]["components"] = recreated["spec"]["components"][:3]
    result = await upsert(sessions, recreated)
    assert result.action is MirrorAction.UPDATED
    assert result.components_deleted == 32
    async with sessions() as session:
        row = (await session.execute(select(Rack.source_uid, Rack.source_generation))).one()
    assert tuple(row) == ("uid-new", 1)


async def test_soft_delete_keeps_the_rows_until_purged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """What the operator does when a Rack object goes: the original's DeleteRack
    (a later PurgeRack still finds the rows), and a Rack re-created under the
    name brings them back with their ids."""
    await upsert(sessions, example("gb200-a01"))
    async with sessions() as session:
        rack_id = await session.scalar(select(Rack.id).where(Rack.name == "gb200-a01"))
        ids = dict((await session.execute(select(Component.name, Component.id))).all())
    async with sessions() as session, session.begin():
        assert await soft_delete_rack(session, "gb200-a01") is True
    async with sessions() as session, session.begin():
        assert await soft_delete_rack(session, "gb200-a01") is False  # already deleted
    async with sessions() as session:
        row = await session.get(Rack, rack_id)
        assert row is not None
        assert row.deleted_at is not None
        live = await session.scalar(
            select(func.count()).select_from(Component).where(Component.deleted_at.is_(None))
        )
        assert live == 0
        assert await rack_summary(session, "gb200-a01") is None
    assert await count(sessions, Component) == len(ids)  # every row is still there
    again = example("gb200-a01")
    again["metadata"]["uid"] = "uid-a01-again"
    assert (await upsert(sessions, again)).action is MirrorAction.UPDATED
    async with sessions() as session:
        back = dict(
            (
                await session.execute(
                    select(Component.name, Component.id).where(Component.deleted_at.is_(None))
                )
            ).all()
        )
        assert back == ids
        assert await session.scalar(select(Rack.id).where(Rack.deleted_at.is_(None))) == rack_id


async def test_delete_rack(sessions: async_sessionmaker[AsyncSession]) -> None:
    await upsert(sessions, example("gb200-a01"))
    await upsert(sessions, example("gb200-a02"))
    async with sessions() as session, session.begin():
        assert await delete_rack(session, "gb200-a01") is True
    async with sessions() as session, session.begin():
        assert await delete_rack(session, "gb200-a01") is False
    assert await count(sessions, Rack) == 1
    assert await count(sessions, Component) == 35
    assert await count(sessions, BMC) == 71
    async with sessions() as session:
        assert await rack_summary(session, "gb200-a01") is None
        left = await session.scalar(
            select(func.count()).where(Component.serial_number.like("CT2401%"))
        )
        assert left == 0
    # Its serial numbers are free again.
    moved = example("gb200-a01")
    moved["metadata"].update(name="gb200-z99", uid="uid-z99")
    assert (await upsert(sessions, moved)).action is MirrorAction.CREATED


async def test_load_for_targets_and_resolve(sessions: async_sessionmaker[AsyncSession]) -> None:
    a01, a02 = example("gb200-a01"), example("gb200-a02")
    a02["metadata"]["labels"]["row"] = "b"
    spec_component(a02, "compute-04").pop("coreId")
    await upsert(sessions, a01)
    await upsert(sessions, a02)
    third = example("gb200-a01")
    third["metadata"].update(name="solo", uid="uid-solo", labels={"row": "c"})
    third["spec"].update(nvlDomain="nvl-solo", identity={"manufacturer": "X", "serialNumber": "S"})
    third["spec"]["components"] = [
        {**c, "serialNumber": "SOLO-" + c["serialNumber"], "coreId": "solo-" + c["name"],
         "bmcs": []}
        for c in third["spec"]["components"] if c["name"] in ("compute-01", "compute-02")
    ]  # fmt: skip
    await upsert(sessions, third)

    async with sessions() as session:
        everything = await load_racks(session, all_racks=True)
        assert [r.name for r in everything] == ["gb200-a01", "gb200-a02", "solo"]
        assert [len(r.components) for r in everything] == [35, 35, 2]
        named = await load_racks(session, names=["gb200-a02", "nope"])
        assert [r.name for r in named] == ["gb200-a02"]
        assert named[0].labels["row"] == "b"
        assert named[0].nvl_domain == "nvl-a02"
        assert named[0].uid == "uid-gb200-a02"
        assert await load_racks(session) == []

    targets = {
        "rackSelector": {"matchLabels": {"row": "a"}},
        "componentTypes": ["nvswitch"],
        "components": [
            {"serial": spec_component(a02, "compute-04")["serialNumber"]},
            {"coreId": "gb200-a02-powershelf-02", "type": "powershelf"},
            {"coreId": "gb200-a02-nvswitch-01", "type": "compute"},
            {"name": "compute-01", "rack": "solo"},
        ],
    }
    async with sessions() as session:
        racks = await load_for_targets(session, targets)
    # "solo" is reached only through its named component, gb200-a02 through components
    assert [r.name for r in racks] == ["gb200-a01", "gb200-a02", "solo"]
    res = resolve_targets(targets, racks)
    got = {r: [(c.name, c.core_id) for c in comps] for r, comps in res.per_rack.items()}
    assert got == {
        "gb200-a01": [(f"nvswitch-{i:02d}", f"gb200-a01-nvswitch-{i:02d}") for i in range(1, 10)],
        "gb200-a02": [("compute-04", None), ("powershelf-02", "gb200-a02-powershelf-02")],
        "solo": [("compute-01", "solo-compute-01")],
    }
    assert res.errors == [
        (
            "component coreId=gb200-a02-nvswitch-01 (compute)",
            "core id gb200-a02-nvswitch-01 is a nvswitch, not compute",
        )
    ]

    async with sessions() as session:
        only_named = await load_for_targets(session, {"racks": ["gb200-a02"]})
        by_domain = await load_for_targets(session, {"nvlDomains": ["nvl-solo"]})
        nothing = await load_for_targets(session, {"components": [{"serial": "unknown"}]})
    assert [r.name for r in only_named] == ["gb200-a02"]
    assert [r.name for r in by_domain] == ["solo"]
    assert nothing == []
    assert resolve_targets({"components": [{"serial": "unknown"}]}, nothing).errors == [
        ("component serial=unknown", "component with serial unknown not found")
    ]


async def test_summary_counts_observed_state(sessions: async_sessionmaker[AsyncSession]) -> None:
    await upsert(sessions, example("gb200-a01"))
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Component)
            .where(Component.type == ComponentType.COMPUTE)
            .values(
                power_state=PowerState.ON,
                actual_firmware={"version": "1.3.2-gb200"},
                observed_at=now,
            )
        )
        await session.execute(
            update(Component)
            .where(Component.name.in_(["compute-01", "compute-02"]))
            .values(power_state=PowerState.OFF, actual_firmware={"bmc": "1.0", "bios": "2.0"})
        )
        await session.execute(
            update(Component)
            .where(Component.name == "nvswitch-03")
            .values(leak_status=LeakStatus.DETECTED, power_state=PowerState.DISABLED)
        )
        ids = dict((await session.execute(select(Component.name, Component.id))).all())
        session.add_all(
            [
                ComponentDrift(
                    component_id=ids["compute-03"], component_type=ComponentType.COMPUTE,
                    drift_type=DriftType.MISMATCH,
                ),
                ComponentDrift(
                    component_id=ids["compute-04"], component_type=ComponentType.COMPUTE,
                    drift_type=DriftType.MISMATCH,
                ),
                ComponentDrift(
                    component_id=ids["powershelf-01"], component_type=ComponentType.POWERSHELF,
                    drift_type=DriftType.MISSING,
                ),
                # unexpected drift has no component, hence no rack
                ComponentDrift(
                    component_type=ComponentType.COMPUTE, drift_type=DriftType.UNEXPECTED
                ),
            ]
        )  # fmt: skip
    async with sessions() as session:
        s = await rack_summary(session, "gb200-a01")
    assert s is not None
    assert (s.power_on, s.power_off, s.power_unknown) == (16, 2, 17)
    assert s.power_observed_at is not None
    assert s.firmware[ComponentType.COMPUTE].actual == {"1.3.2-gb200": 16, "bios=2.0,bmc=1.0": 2}
    assert s.firmware[ComponentType.NVSWITCH].actual == {}
    assert (s.drift_missing, s.drift_mismatch, s.drift_unexpected) == (1, 2, 0)
    assert s.drift_checked_at is not None
    assert (s.leaks_detected, s.leaking_components) == (1, ("nvswitch-03",))


async def test_component_statuses(sessions: async_sessionmaker[AsyncSession]) -> None:
    await upsert(sessions, example("gb200-a01"))
    async with sessions() as session, session.begin():
        await session.execute(
            update(Component)
            .where(Component.name == "compute-01")
            .values(
                status_phase=ComponentPhase.IN_USE,
                status_reason="assigned to tenant t1",
                blocked_operations=[OperationType.POWER_CONTROL.value],
                observed_at=datetime.now(UTC),
            )
        )
        await session.execute(
            update(Component)
            .where(Component.name == "compute-02")
            .values(status_phase=ComponentPhase.READY, observed_at=datetime.now(UTC))
        )
    async with sessions() as session:
        got = await component_statuses(
            session,
            ["gb200-a01-compute-01", "gb200-a01-compute-02", "gb200-a01-compute-03", "nope"],
        )
        typed = await component_statuses(
            session, ["gb200-a01-compute-01"], component_type=ComponentType.NVSWITCH
        )
    assert got == {
        "gb200-a01-compute-01": ("in_use", "assigned to tenant t1", ("power_control",)),
        "gb200-a01-compute-02": ("ready", None, ()),
    }  # compute-03 was never observed: left out, so the gate reports it as unknown
    assert typed == {}


def task_body(uid: str, phase: str, *, finished: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "message": "done",
        "startTime": "2026-01-01T10:00:00Z",
    }
    if finished:
        status["completionTime"] = finished
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": "restart-a01",
            "namespace": "ops",
            "uid": uid,
            "creationTimestamp": "2026-01-01T09:59:00Z",
        },
        "spec": {
            "taskSpecName": "restart",
            "rack": "gb200-a01",
            "operation": "restart",
            "components": [
                {
                    "type": "compute",
                    "ids": [{"name": "compute-01", "coreId": "gb200-a01-compute-01"}],
                },
                {"type": "nvswitch", "ids": [{"name": "nvswitch-01"}]},
            ],
            "rule": {"name": "builtin-restart", "source": "builtin", "definition": {"steps": []}},
        },
        "status": status,
    }


async def test_archive_task_is_idempotent(sessions: async_sessionmaker[AsyncSession]) -> None:
    await upsert(sessions, example("gb200-a01"))
    uid = str(uuid.uuid4())
    body = task_body(uid, "Succeeded", finished="2026-01-01T10:05:00Z")
    for _ in range(2):
        async with sessions() as session, session.begin():
            await archive_task(session, body)
    assert await count(sessions, TaskHistory) == 1

    async with sessions() as session:
        row = (await session.scalars(select(TaskHistory))).one()
        c01 = await session.scalar(select(Component.id).where(Component.name == "compute-01"))
        rack_id = await session.scalar(select(Rack.id))
    assert row.id == uuid.UUID(uid)
    assert (row.name, row.namespace, row.task_spec_name, row.rack_name) == (
        "restart-a01",
        "ops",
        "restart",
        "gb200-a01",
    )
    assert row.rack_id == rack_id
    assert row.operation_type is OperationType.POWER_CONTROL
    assert row.phase is TaskPhase.SUCCEEDED
    assert row.finished_at == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert row.components["compute"] == [str(c01)]
    assert (row.applied_rule or {}).get("name") == "builtin-restart"

    # A later, different record for the same Task replaces the row.
    record = {
        "id": uid, "name": "restart-a01", "namespace": "ops", "operation_code": "restart",
        "phase": "Failed", "message": "stage 2 failed",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 1, 11, tzinfo=UTC), "rack_name": "gb200-a01",
        "components": {"compute": [str(c01)]},
    }  # fmt: skip
    async with sessions() as session, session.begin():
        await archive_task(session, record)
        await archive_task(session, record)
    async with sessions() as session:
        row = (await session.scalars(select(TaskHistory))).one()
        assert (row.phase, row.message) == (TaskPhase.FAILED, "stage 2 failed")
    with pytest.raises(ValueError, match="unknown task_history fields: colour"):
        async with sessions() as session:
            await archive_task(session, {**record, "colour": "red"})


async def test_task_history_filters(sessions: async_sessionmaker[AsyncSession]) -> None:
    await upsert(sessions, example("gb200-a01"))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    async with sessions() as session:
        c01 = str(await session.scalar(select(Component.id).where(Component.name == "compute-01")))
        c02 = str(await session.scalar(select(Component.id).where(Component.name == "compute-02")))
    uids = [uuid.UUID(int=i + 1) for i in range(5)]
    async with sessions() as session, session.begin():
        for i, uid in enumerate(uids):
            await archive_task(
                session,
                {
                    "id": uid,
                    "name": f"t{i}",
                    "namespace": "ops",
                    "operation_code": "power_on",
                    "phase": "Succeeded",
                    "created_at": base,
                    "finished_at": base + timedelta(minutes=i),
                    "rack_name": "gb200-a01" if i < 4 else "gb200-a02",
                    "components": {"compute": [c01 if i % 2 == 0 else c02]},
                },
            )
    async with sessions() as session:
        newest = await task_history(session, limit=10)
        assert [t.name for t in newest] == ["t4", "t3", "t2", "t1", "t0"]
        page = await task_history(session, limit=2, offset=1)
        assert [t.name for t in page] == ["t3", "t2"]
        on_rack = await task_history(session, rack="gb200-a01")
        assert [t.name for t in on_rack] == ["t3", "t2", "t1", "t0"]
        touched = await task_history(session, component_core_id="gb200-a01-compute-01")
        assert [t.name for t in touched] == ["t4", "t2", "t0"]
        both = await task_history(
            session, rack="gb200-a01", component_core_id="gb200-a01-compute-02"
        )
        assert [t.name for t in both] == ["t3", "t1"]
        assert await task_history(session, component_core_id="unknown") == []
        assert await task_history(session, active_only=True) == []


async def test_a_deleted_racks_bmcs_and_serials_go_to_a_new_rack(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A rack deleted with kubectl and declared again under another name (a
    rename) takes its hardware back: BMC MACs, serials and Core ids of the
    soft-deleted rows are given up."""
    await upsert(sessions, example("gb200-a01"))
    async with sessions() as session, session.begin():
        assert await soft_delete_rack(session, "gb200-a01")
    renamed = example("gb200-a01")
    renamed["metadata"].update(name="gb200-renamed", uid="uid-renamed")
    assert (await upsert(sessions, renamed)).action is MirrorAction.CREATED
    async with sessions() as session:
        summary = await rack_summary(session, "gb200-renamed")
        assert summary is not None
        assert summary.total == len(renamed["spec"]["components"])
    bmcs = sum(len(c.get("bmcs") or []) for c in renamed["spec"]["components"])
    assert await count(sessions, BMC) == bmcs
