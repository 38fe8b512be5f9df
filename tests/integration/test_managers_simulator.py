"""Every component manager's power capabilities over real gRPC against the
in-process NICo Core simulator: per-component results, the power states Core
reports while transitions run (mapped through the managers), the ledger of
state-changing calls and their request ids, and the rack's power feed."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sim_managers import CT, POWER_LATENCY, Bench, bench, keyed

from nicoflow.core.managers.base import ManagerError, PowerControlTaskInfo, Target
from nicoflow.core.managers.nicolegacy_compute import POWER_OVERRIDE_SOURCE
from nicoflow.core.managers.results import MISSING_FROM_CORE, PowerStatus
from nicoflow.domain.types import ComponentType, OperationCode
from nicoflow.simulator.power import Power

Op = OperationCode
PS = PowerStatus

# (component type, compute implementation the bench is built with)
MANAGERS = [
    pytest.param(CT.COMPUTE, "nicolegacy", id="compute-nicolegacy"),
    pytest.param(CT.COMPUTE, "nico", id="compute-nico"),
    pytest.param(CT.NVSWITCH, "nicolegacy", id="nvswitch-nico"),
    pytest.param(CT.POWERSHELF, "nicolegacy", id="powershelf-nico"),
]

# The write that reaches the BMC, per manager.
POWER_METHOD = {"legacy": "AdminPowerControl", "dispatch": "ComponentPowerControl"}
ACTION = {
    Op.POWER_ON: "on",
    Op.FORCE_POWER_ON: "on",
    Op.POWER_OFF: "graceful_shutdown",
    Op.FORCE_POWER_OFF: "force_off",
    Op.RESTART: "graceful_restart",
    Op.WARM_RESET: "graceful_restart",
    Op.FORCE_RESTART: "force_restart",
    Op.COLD_RESET: "ac_powercycle",
}


def flavour(ctype: ComponentType, compute: str) -> str:
    return "legacy" if ctype == CT.COMPUTE and compute == "nicolegacy" else "dispatch"


async def read(b: Bench, target: Target) -> dict[str, PowerStatus]:
    status = await b.manager(target.type).get_power_status(target)
    assert list(status) == list(target.component_ids)
    for cid, reading in status.items():
        assert reading.error == "", (cid, reading.error)
    return {cid: r.state for cid, r in status.items()}


async def power(b: Bench, target: Target, op: OperationCode, key: str) -> None:
    results = await b.manager(target.type).power_control(target, PowerControlTaskInfo(op, key))
    assert list(results) == list(target.component_ids)
    assert all(r.ok for r in results.values()), results


@pytest.mark.parametrize(("ctype", "compute"), MANAGERS)
async def test_power_off_and_on_move_through_transitions(
    ctype: ComponentType, compute: str
) -> None:
    async with bench(compute=compute) as b:
        # Three shelves of eight: the rest keep the rack fed.
        target = b.target(ctype, 3)
        kind = flavour(ctype, compute)
        assert set((await read(b, target)).values()) == {PS.ON}

        await power(b, target, Op.POWER_OFF, "task-1/off")
        assert set((await read(b, target)).values()) == {PS.POWERING_OFF}
        b.advance(POWER_LATENCY)
        assert set((await read(b, target)).values()) == {PS.OFF}
        assert {b.sim.world.power(n) for n in b.nodes(ctype, 3)} == {Power.OFF}

        mark = b.last_seq()
        await power(b, target, Op.POWER_ON, "task-1/on")
        assert set((await read(b, target)).values()) == {PS.POWERING_ON}
        b.advance(POWER_LATENCY)
        assert set((await read(b, target)).values()) == {PS.ON}

        # Each component got exactly one power command per operation, and
        # every state-changing call carried a request id from the task's key.
        for key, window, action in (
            ("task-1/off", [e for e in b.writes() if e.seq <= mark], "graceful_shutdown"),
            ("task-1/on", b.writes(mark), "on"),
        ):
            calls = [e for e in window if e.method == POWER_METHOD[kind]]
            assert sorted(e.component_id for e in calls) == sorted(target.component_ids)
            assert {(e.action, e.code, e.applied) for e in calls} == {(action, "OK", True)}
            keyed(window, key)
        assert b.sim.ledger.duplicates() == []
        # The untouched components of the type kept their power.
        rest = b.nodes(ctype)[3:]
        assert {b.sim.world.power(n) for n in rest} == {Power.ON}


# Readings at t=0, t=latency and t=2*latency after the command, from ON.
DISPATCH_SEQUENCES = {
    Op.RESTART: [PS.POWERING_OFF, PS.POWERING_ON, PS.ON],
    Op.FORCE_RESTART: [PS.POWERING_ON, PS.ON, PS.ON],
    Op.FORCE_POWER_OFF: [PS.OFF, PS.OFF, PS.OFF],
    Op.WARM_RESET: [PS.POWERING_OFF, PS.POWERING_ON, PS.ON],
    Op.COLD_RESET: [PS.POWERING_ON, PS.ON, PS.ON],
}
# nicolegacy reads Core's power manager: actual On/Off against the desired
# state, so a graceful restart's shutdown half still reads "on".
LEGACY_SEQUENCES = {
    **DISPATCH_SEQUENCES,
    Op.RESTART: [PS.ON, PS.POWERING_ON, PS.ON],
    Op.WARM_RESET: [PS.ON, PS.POWERING_ON, PS.ON],
}
SUPPORTED = {
    CT.COMPUTE: list(DISPATCH_SEQUENCES),
    CT.NVSWITCH: [Op.RESTART, Op.FORCE_RESTART, Op.FORCE_POWER_OFF, Op.WARM_RESET],
    CT.POWERSHELF: [Op.RESTART, Op.FORCE_RESTART, Op.FORCE_POWER_OFF],
}


@pytest.mark.parametrize(("ctype", "compute"), MANAGERS)
async def test_restart_and_force_variants(ctype: ComponentType, compute: str) -> None:
    kind = flavour(ctype, compute)
    sequences = LEGACY_SEQUENCES if kind == "legacy" else DISPATCH_SEQUENCES
    async with bench(compute=compute) as b:
        for i, op in enumerate(SUPPORTED[ctype]):
            target = b.target(ctype, 2)
            for node in b.nodes(ctype, 2):
                b.sim.world.set_power(node, Power.ON)
            mark = b.last_seq()
            key = f"task-{op.value}/{i}"
            await power(b, target, op, key)
            seen = []
            for _ in range(3):
                seen.append(set((await read(b, target)).values()))
                b.advance(POWER_LATENCY)
            assert seen == [{s} for s in sequences[op]], op
            entries = b.writes(mark, method=POWER_METHOD[kind])
            assert {e.action for e in entries} == {ACTION[op]}
            assert len(entries) == 2
            keyed(b.writes(mark), key)
            # A force-on after a forced off boots the component again.
            if op == Op.FORCE_POWER_OFF:
                await power(b, target, Op.FORCE_POWER_ON, f"{key}/on")
                b.advance(POWER_LATENCY)
                assert set((await read(b, target)).values()) == {PS.ON}


@pytest.mark.parametrize(
    ("ctype", "op", "allowed"),
    [
        (CT.NVSWITCH, Op.COLD_RESET, "warm_reset"),
        (CT.POWERSHELF, Op.WARM_RESET, "force_restart"),
        (CT.POWERSHELF, Op.COLD_RESET, "restart"),
    ],
)
async def test_unsupported_power_operation_is_refused_before_core(
    ctype: ComponentType, op: OperationCode, allowed: str
) -> None:
    async with bench() as b:
        with pytest.raises(ManagerError, match=f"{op.value} is not supported.*{allowed}"):
            await b.manager(ctype).power_control(b.target(ctype, 1), PowerControlTaskInfo(op, "k"))
        assert len(b.sim.ledger) == 0


@pytest.mark.parametrize(("ctype", "compute"), MANAGERS)
async def test_unknown_component_is_a_per_component_failure(
    ctype: ComponentType, compute: str
) -> None:
    async with bench(compute=compute) as b:
        known = b.target(ctype, 2).component_ids
        target = Target(ctype, (known[0], "no-such-component", known[1]))
        results = await b.manager(ctype).power_control(
            target, PowerControlTaskInfo(Op.POWER_OFF, "task-u")
        )
        assert list(results) == list(target.component_ids)
        assert results[known[0]].ok
        assert results[known[1]].ok
        bad = results["no-such-component"]
        assert not bad.ok
        assert "not found" in bad.error
        # The known components were still switched off.
        b.advance(POWER_LATENCY)
        assert [b.sim.world.power(b.sim.world.node(c)) for c in known] == [Power.OFF] * 2
        keyed(b.writes(), "task-u")

        # Status maps hold every requested id, the unknown one as unknown
        # with a reason, never as a silent gap or a success.
        status = await b.manager(ctype).get_power_status(target)
        assert list(status) == list(target.component_ids)
        assert status[known[0]].state == PS.OFF
        missing = status["no-such-component"]
        assert missing.state == PS.UNKNOWN
        assert missing.error
        if flavour(ctype, compute) == "legacy":
            # GetPowerOptions leaves unknown machines out of its answer.
            assert missing.error == MISSING_FROM_CORE
        else:
            assert "not found" in missing.error


async def test_nicolegacy_overrides_health_and_spaces_machines() -> None:
    """Runs on the wall clock: the ledger's timestamps show the delay between
    machines, and the maintenance override is in place while they are worked."""
    delay = 0.05
    seen_overrides: list[list[str]] = []
    holder: list[Bench] = []

    async def watching_sleep(seconds: float) -> None:
        b = holder[0]
        seen_overrides.append(
            [cid for cid in ids if POWER_OVERRIDE_SOURCE in b.sim.world.node(cid).overrides]
        )
        await asyncio.sleep(seconds)

    async with bench(
        compute="nicolegacy", power_delay=delay, fake_clock=False, sleep=watching_sleep
    ) as b:
        holder.append(b)
        target = b.target(CT.COMPUTE, 3)
        ids = target.component_ids
        await power(b, target, Op.FORCE_POWER_OFF, "task-legacy")

        # Between machines the override of each machine already worked is in place.
        assert seen_overrides == [list(ids[:1]), list(ids[:2])]
        # Afterwards none is left behind.
        assert all(not b.sim.world.node(c).overrides for c in ids)

        entries = b.writes()
        keyed(entries, "task-legacy")
        per_machine = [
            [(e.method, e.request_id) for e in entries if e.component_id == cid] for cid in ids
        ]
        for cid, calls in zip(ids, per_machine, strict=True):
            assert calls == [
                ("InsertHealthReportOverride", f"task-legacy/{cid}/override-insert"),
                ("UpdatePowerOption", f"task-legacy/{cid}/power-option"),
                ("AdminPowerControl", f"task-legacy/{cid}/admin-power"),
                ("RemoveHealthReportOverride", f"task-legacy/{cid}/override-remove"),
            ]
        inserts = [e for e in entries if e.method == "InsertHealthReportOverride"]
        assert {tuple(e.details["alerts"]) for e in inserts} == {("Maintenance",)}
        # Machines are worked one after another, compute_power_delay apart.
        admin = [e for e in entries if e.method == "AdminPowerControl"]
        assert [e.component_id for e in admin] == list(ids)
        gaps = [later.time - a.time for a, later in itertools.pairwise(admin)]
        assert all(gap >= delay * 0.9 for gap in gaps), gaps
        assert all(gap < delay + 2.0 for gap in gaps), gaps
        # The overrides come off after the last machine.
        removes = [e for e in entries if e.method == "RemoveHealthReportOverride"]
        assert min(e.seq for e in removes) > max(e.seq for e in admin)
        assert set((await read(b, target)).values()) == {PS.OFF}


async def test_nicolegacy_tolerates_desired_state_already_set() -> None:
    async with bench(compute="nicolegacy") as b:
        target = b.target(CT.COMPUTE, 2)
        await power(b, target, Op.POWER_OFF, "first")
        b.advance(POWER_LATENCY)
        mark = b.last_seq()
        # The power manager already wants "off": Core says so, the manager goes on.
        await power(b, target, Op.FORCE_POWER_OFF, "second")
        options = b.writes(mark, method="UpdatePowerOption")
        assert {(e.code, e.applied) for e in options} == {("INVALID_ARGUMENT", False)}
        assert len(b.writes(mark, method="AdminPowerControl", code="OK")) == 2


@pytest.mark.parametrize("compute", ["nicolegacy", "nico"])
async def test_power_shelves_off_cut_the_rack(compute: str) -> None:
    async with bench(compute=compute, racks=2) as b:
        shelves = b.target(CT.POWERSHELF)
        switches = b.target(CT.NVSWITCH)
        trays = b.target(CT.COMPUTE)
        await power(b, shelves, Op.FORCE_POWER_OFF, "rack-off/shelves")
        assert set((await read(b, shelves)).values()) == {PS.OFF}
        # Without input power every switch and tray of the rack is off.
        assert set((await read(b, switches)).values()) == {PS.OFF}
        assert {b.sim.world.power(n) for n in b.nodes(CT.COMPUTE)} == {Power.OFF}
        compute_view = set((await read(b, trays)).values())
        if compute == "nico":
            assert compute_view == {PS.OFF}
        else:
            # Core's power manager still *wants* the trays on (nobody asked
            # for off), and nicolegacy reads desired != actual as a transition.
            assert compute_view == {PS.POWERING_ON}
        # The other rack is unaffected.
        other = b.target(CT.NVSWITCH, rack=1)
        assert set((await read(b, other)).values()) == {PS.ON}

        # Powering compute on without shelves fails per component, once each.
        mark = b.last_seq()
        target = b.target(CT.COMPUTE, 3)
        results = await b.manager(CT.COMPUTE).power_control(
            target, PowerControlTaskInfo(Op.POWER_ON, "rack-on/compute")
        )
        assert list(results) == list(target.component_ids)
        for r in results.values():
            assert not r.ok
            assert "no input power" in r.error
        method = POWER_METHOD[flavour(CT.COMPUTE, compute)]
        attempts = b.writes(mark, method=method)
        assert sorted(e.component_id for e in attempts) == sorted(target.component_ids)
        assert {(e.result, e.applied) for e in attempts} == {("UNAVAILABLE", False)}
        assert {b.sim.world.power(n) for n in b.nodes(CT.COMPUTE)} == {Power.OFF}

        # Shelves back on: switches stay off until told, compute can boot.
        await power(b, shelves, Op.POWER_ON, "rack-on/shelves")
        b.advance(POWER_LATENCY)
        assert set((await read(b, switches)).values()) == {PS.OFF}
        await power(b, target, Op.POWER_ON, "rack-on/compute-2")
        b.advance(POWER_LATENCY)
        assert set((await read(b, target)).values()) == {PS.ON}
