"""The operator SIGKILLed mid-run, several times, at different moments of a
restart on three racks: every Task still succeeds, and the simulated hardware
got each power command exactly once (the intent recorded before each call and
the recovery read after a restart keep it from repeating one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from operator_fixtures import DOWN, UP, Env, module_env
from reliability.support import desired_state_changes, intent_recorded, stage_of, wait_any

from nicoflow.devstack.flowstack import phase

RACKS = 3


env = module_env(
    racks=RACKS,
    seed=9,
    # each power change takes 2s, so the operator dies with calls in flight
    sim_args=("--latency-power", "2s"),
    # the simulator shows a command at once: no need to look for an
    # interrupted one for the production default of 30 s
    operator_args=("--confirm-window", "5"),
)


def test_sigkill_mid_restart_three_times_loses_nothing_and_repeats_nothing(env: Env) -> None:
    start = env.last_seq()
    env.submit("crash-restart", "restart", env.racks)
    names = [env.task_name("crash-restart", r) for r in env.racks]
    moments: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
        # an intent is in status: a call is about to go out or is in flight
        ("intent recorded", intent_recorded),
        # a rack's switches or shelves going down
        ("powering down", lambda t: stage_of(t) in (2, 3)),
        # power coming back
        ("powering up", lambda t: stage_of(t) >= 5),
    ]
    killed: list[tuple[str, str, int]] = []
    for label, moment in moments:
        task = wait_any(env, "crash-restart", moment)
        if task is None:
            break
        env.flow.kill_operator()
        killed.append((label, task["metadata"]["name"], stage_of(task)))
        env.flow.start_operator()
    assert len(killed) >= 2, f"the Tasks finished before the operator could be killed: {killed}"

    ts = env.wait("crash-restart", timeout=180)
    assert phase(ts) == "Complete", ts["status"]
    assert ts["status"]["succeeded"] == RACKS
    for name in names:
        status = env.task(name)["status"]
        assert status["phase"] == "Succeeded", status
        assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 6

    # No state-changing call repeated under its request id: a resend after a
    # restart goes only to components the call did not reach, under a new key.
    assert env.control.duplicates() == []
    for rack in env.racks:
        assert env.power_sequence(rack, start) == [f"{t} off" for t in DOWN] + [
            f"{t} on" for t in UP
        ], rack
        assert env.power_states(rack) == {"on"}, rack
    # never a power action twice in one direction
    counts = env.commands_per_component(env.racks, start)
    repeated = {env.name_of(c): d for c, d in counts.items() if sorted(d) != sorted(set(d))}
    assert repeated == {}, f"killed at {killed}: components commanded more than once"
    # and every component exactly once each way. A compute tray under the legacy
    # manager is commanded by its desired power state in Core (its power manager
    # acts on it), then an admin action that only hastens it; a kill between
    # the two leaves the tray to Core's power manager, so trays count by the former.
    desired = desired_state_changes(env, start)
    for cid, (rack, ctype) in env.kinds().items():
        got = desired.get(cid) if ctype == "compute" else counts.get(cid)
        assert got == ["off", "on"], (f"killed at {killed}", rack, env.name_of(cid), got)


OVERRIDE_ACTIONS = ("insert_health_report", "remove_health_report")


def test_sigkill_mid_compute_stage_leaves_no_maintenance_override(env: Env) -> None:
    rack = env.racks[0]
    compute = [c["id"] for c in env.components(rack, "compute")]
    start = env.last_seq()
    # compute trays are powered one after another: 0.3s each makes the stage ~5s
    env.control.set_faults(latency={"UpdatePowerOption": 0.3})
    try:
        env.submit("crash-legacy", "power_off", [rack], componentTypes=["compute"])
        name = env.task_name("crash-legacy", rack)
        env.wait_task(name, intent_recorded)
        time.sleep(1.5)  # a few trays powered, one in flight
        env.flow.kill_operator()
        env.flow.start_operator()
        ts = env.wait("crash-legacy", timeout=120)
    finally:
        env.control.replace_faults({})
    assert phase(ts) == "Complete", ts["status"]
    desired = desired_state_changes(env, start)
    assert {cid: desired.get(cid) for cid in compute} == {key: ["off"] for key in compute}

    last: dict[str, str] = {}
    for e in env.control.ledger(since=str(start)):
        if e["action"] in OVERRIDE_ACTIONS and e["applied"]:
            last[e["component_id"]] = e["action"]
    assert last, "the legacy compute manager inserted no maintenance override"
    left = sorted(env.name_of(cid) for cid, action in last.items() if action != OVERRIDE_ACTIONS[1])
    assert left == [], f"maintenance overrides left in Core after the crash: {left}"
    assert env.control.duplicates() == []
