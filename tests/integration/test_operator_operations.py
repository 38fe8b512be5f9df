"""The operator end to end on every power operation, a firmware upgrade and Core
errors: the real operator process, apiserver, PostgreSQL and Core simulator.
Outcomes are read where they happen — the simulator's power states and
ledger, Task status and TaskSpec status."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from operator_fixtures import DOWN, UP, Env, condition, module_env
from reliability.support import PowerRecord

from nicoflow.devstack.flowstack import phase

RACKS = 5


env = module_env(
    racks=RACKS,
    seed=3,
    sim_args=("--latency-power", "0s", "--latency-firmware", "1s"),
)


@pytest.fixture(scope="module")
def upgrade(env: Env) -> tuple[str, dict[str, Any]]:
    """A firmware upgrade of the fifth rack with one compute tray whose every
    update fails. It waits 30s between its two attempts (the built-in rule's
    retry), so it starts with the module and runs beside the power tests
    (the fault names only that tray); its test reads the outcome."""
    rack = env.racks[4]
    broken = env.components(rack, "compute")[3]
    env.control.set_faults(failing=[broken["id"]])
    env.submit("fw-upgrade", "upgrade", [rack])
    return rack, broken


# -- 1. every power operation across racks ----------------------------------------

EXPECTED: dict[str, tuple[list[str], str, int]] = {
    # operation -> (collapsed command sequence per rack, final power, commands per component)
    "power_off": ([f"{t} off" for t in DOWN], "off", 1),
    "power_on": ([f"{t} on" for t in UP], "on", 1),
    "force_power_off": ([f"{t} off" for t in DOWN], "off", 1),
    "force_power_on": ([f"{t} on" for t in UP], "on", 1),
    "force_restart": ([f"{t} off" for t in DOWN] + [f"{t} on" for t in UP], "on", 2),
}


def _stream(env: Env, racks: list[str], ops: list[str], out: dict[str, Any]) -> None:
    """Run operations one after another on some racks; record ledger windows."""
    try:
        for op in ops:
            start = env.last_seq()
            ts = env.run(f"ops-{op.replace('_', '-')}", op, racks, timeout=180)
            states = {rack: env.power_states(rack) for rack in racks}
            out[op] = (racks, start, env.last_seq(), ts, states)
    except BaseException as exc:
        out["error"] = exc


def test_power_operations_command_each_component_once_in_rack_order(
    env: Env, upgrade: tuple[str, dict[str, Any]]
) -> None:
    """Two streams on disjoint racks run side by side (the forced rules sleep
    between stages): force_restart on two racks; force_power_off,
    force_power_on, power_off, power_on on the other two."""
    first, second = env.racks[:2], env.racks[2:4]
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=_stream, args=(env, first, ["force_restart"], results)),
        threading.Thread(
            target=_stream,
            args=(
                env,
                second,
                ["force_power_off", "force_power_on", "power_off", "power_on"],
                results,
            ),
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if "error" in results:
        raise results["error"]
    assert set(results) == set(EXPECTED)

    for op, (racks, since, until, ts, states) in results.items():
        sequence, final, per_component = EXPECTED[op]
        assert phase(ts) == "Complete", (op, ts["status"])
        assert ts["status"]["succeeded"] == len(racks)
        tasks = env.tasks(ts["metadata"]["name"])
        assert sorted(t["spec"]["rack"] for t in tasks) == sorted(racks)
        for task in tasks:
            assert task["status"]["phase"] == "Succeeded", (op, task["status"])
            assert all(s["phase"] == "Succeeded" for s in task["status"]["stages"])
            # the status keeps counts; every component's result is in the archive
            archived = env.archived_results(task)
            for stage in task["status"]["stages"]:
                for step in stage["steps"]:
                    assert step.get("archived"), (op, step)
                    assert not step.get("components"), (op, step)
                    mine = [
                        r
                        for r in archived
                        if r["stage"] == stage["number"]
                        and r["component_type"] == step["componentType"]
                    ]
                    assert len(mine) == step["total"] == step["succeeded"], (op, step, mine)
                    assert {r["phase"] for r in mine} == {"Succeeded"}
            rack = task["spec"]["rack"]
            delivered = set(env.commands_per_component([rack], since, until))
            assert {r["component_id"] for r in archived if r["commanded"]} == delivered, op
        for rack in racks:
            assert env.power_sequence(rack, since, until) == sequence, (op, rack)
            assert states[rack] == {final}, (op, rack, states)
        counts = env.commands_per_component(racks, since, until)
        assert set(counts) == env.component_ids(racks), op  # every component commanded
        assert {len(v) for v in counts.values()} == {per_component}, (op, counts)
        if per_component == 2:
            assert {tuple(v) for v in counts.values()} == {("off", "on")}

    assert env.control.duplicates() == []


# -- 2. firmware upgrade with one component that always fails ---------------------


def test_upgrade_fails_the_task_naming_the_failing_component(
    env: Env, upgrade: tuple[str, dict[str, Any]]
) -> None:
    rack, broken = upgrade
    try:
        ts = env.wait("fw-upgrade", timeout=150)
    finally:
        env.control.replace_faults({})

    assert phase(ts) == "Failed", ts["status"]
    failed = condition(ts, "Failed")
    assert failed is not None, ts["status"]
    assert failed["reason"] == "TasksFailed", ts["status"]
    assert ts["status"]["failed"] == 1

    task = env.task(env.task_name("fw-upgrade", rack))
    status = task["status"]
    assert status["phase"] == "Failed"
    assert broken["name"] in status["message"], status["message"]
    step = status["stages"][0]["steps"][0]
    assert step["componentType"] == "compute"
    assert step["phase"] == "Failed"
    # the status keeps the failure; the archive has every component's result
    (kept,) = step["components"]
    assert kept["name"] == broken["name"]
    assert kept["phase"] == "Failed"
    results = {r["name"]: r for r in env.archived_results(task) if r["stage"] == 1}
    assert results[broken["name"]]["phase"] == "Failed"
    assert "firmware" in results[broken["name"]]["error"]
    assert "after 2 attempts" in results[broken["name"]]["error"]
    assert results[broken["name"]]["attempts"] == 2
    others = [c for n, c in results.items() if n != broken["name"]]
    assert len(others) == 17
    assert {c["phase"] for c in others} == {"Succeeded"}
    # fail fast: the switch stage never started
    assert status["stages"][1]["phase"] in ("Pending", "Cancelled", "Skipped"), status["stages"]
    assert status["stages"][1]["steps"][0].get("components", []) == []


# -- 6. Core errors -----------------------------------------------------------------


def test_transient_core_errors_do_not_fail_tasks(env: Env) -> None:
    """UNAVAILABLE on a fifth of the power commands (refused before they reach
    the hardware) and on power reads after they were served."""
    racks = env.racks[:2]
    env.control.replace_faults(
        {
            "seed": 7,
            "errors": [
                {"method": "ComponentPowerControl", "rate": 0.2, "code": "UNAVAILABLE"},
                {"method": "AdminPowerControl", "rate": 0.2, "code": "UNAVAILABLE"},
                {"method": "GetPowerOptions", "rate": 0.2, "code": "UNAVAILABLE", "when": "after"},
                {
                    "method": "GetComponentInventory",
                    "rate": 0.2,
                    "code": "UNAVAILABLE",
                    "when": "after",
                },
            ],
        }
    )
    start = env.last_seq()
    log_from = len(env.operator_log())
    try:
        # a wait, not a bound: retries back off, and a loaded machine took 3 min
        ts = env.run("errors-restart", "restart", racks, timeout=600)
    finally:
        env.control.replace_faults({})
    until = env.last_seq()
    assert phase(ts) == "Complete", ts["status"]
    assert ts["status"]["succeeded"] == 2
    refused = [
        e
        for e in env.control.ledger(since=str(start))
        if e["method"] in ("ComponentPowerControl", "AdminPowerControl") and not e["applied"]
    ]
    assert refused, "the fault plan injected no error: the test proves nothing"
    log = env.operator_log()[log_from:]
    assert "GetPowerOptions: UNAVAILABLE" in log or "GetComponentInventory: UNAVAILABLE" in log
    for rack in racks:
        assert env.power_sequence(rack, start, until) == [f"{t} off" for t in DOWN] + [
            f"{t} on" for t in UP
        ]
        assert env.power_states(rack) == {"on"}
    # each component commanded off, then on, once; a compute tray counts by
    # its desired state in Core: when the direct BMC command after it is
    # refused, Core's power manager carries the desired state out, and the
    # operator, seeing it in Core's state, does not send the command again
    record = PowerRecord(env, env.control.ledger(since=str(start)))
    assert record.not_once_each_way(racks) == {}
    assert env.control.repeats(since=start) == {}
    assert env.control.duplicates() == []


def test_permanent_core_error_fails_its_task_with_a_clear_message(env: Env) -> None:
    good, bad = env.racks[2], env.racks[3]
    broken = env.components(bad, "compute")[0]
    env.control.set_faults(failing=[broken["id"]])
    try:
        ts = env.run("errors-permanent", "power_off", [good, bad], timeout=120)
    finally:
        env.control.replace_faults({})
    assert phase(ts) == "Failed", ts["status"]
    assert ts["status"]["succeeded"] == 1
    assert ts["status"]["failed"] == 1

    failed = env.task(env.task_name("errors-permanent", bad))["status"]
    assert failed["phase"] == "Failed"
    message = failed["message"]
    assert broken["name"] in message, message
    assert "rejects power action" in message, message
    assert "after 3 attempts" in message, message
    # fail fast: nothing after the compute stage was commanded on the bad rack
    assert failed["stages"][1]["phase"] != "Succeeded"
    assert env.task(env.task_name("errors-permanent", good))["status"]["phase"] == "Succeeded"
    # leave the racks on
    assert phase(env.run("errors-permanent-on", "power_on", [good, bad])) == "Complete"


# -- 4. firmware paths that must finish ----------------------------------------------


def test_dpu_firmware_upgrade_completes_and_takes_the_host_report_off(env: Env) -> None:
    rack = env.racks[3]
    trays = env.components(rack, "compute")[:2]
    start = env.last_seq()
    ts = env.run(
        "dpu-upgrade",
        "upgrade",
        [rack],
        componentTypes=["compute"],
        options={"subTargets": ["dpu"]},
        timeout=180,
    )
    assert phase(ts) == "Complete", ts["status"]
    # the Task keeps removing the hosts' update report once its DPUs are done
    env.wait_task(
        env.task_name("dpu-upgrade", rack), lambda t: not t["status"].get("releases"), timeout=30
    )
    for tray in trays:
        now = env.control.component(tray["id"])
        assert "host-update" not in now["overrides"], now
        assert "HostUpdateInProgress" not in now["alerts"], now
    # each host's DPUs were asked for once and it was rebooted once
    triggered = [
        e for e in env.control.ledger(since=str(start)) if e["method"] == "TriggerDpuReprovisioning"
    ]
    assert triggered
    assert env.control.repeats(since=start) == {}


def test_upgrading_switches_already_at_the_target_finishes_at_once(env: Env) -> None:
    rack = env.racks[3]
    # the first upgrade brings them to Core's desired bundle; the second has nothing to do
    first = env.run("switches-up", "upgrade", [rack], componentTypes=["nvswitch"], timeout=180)
    assert phase(first) == "Complete", first["status"]
    start = env.last_seq()
    again = env.run("switches-up-again", "upgrade", [rack], componentTypes=["nvswitch"], timeout=60)
    assert phase(again) == "Complete", again["status"]
    assert [
        e for e in env.control.ledger(since=str(start)) if e["method"] == "UpdateComponentFirmware"
    ] == []
