"""NICo Core flaky on every RPC: a fifth of all calls, reads and writes alike,
answer UNAVAILABLE (refused before they touch the hardware). A multi-rack
restart under the built-in rule still succeeds with no state-changing call
repeated; a component that always fails fails its own rack's Task, by name,
and no other.

A write refused with UNAVAILABLE is not retried by the Core client (it cannot
know the call was not applied); the engine sends it again after a pause
without spending one of the rule's attempts, which are meant for hardware
that fails. A restart makes over a hundred such calls per rack."""

from __future__ import annotations

from typing import Any

import pytest
from operator_fixtures import Env, module_env
from reliability.support import PowerRecord, restart_succeeded

from nicoflow.devstack.flowstack import phase

pytestmark = pytest.mark.reliability

RACKS = 4
FLAKY = {"method": "*", "rate": 0.2, "code": "UNAVAILABLE", "message": "Core is flaky"}
# methods the operator only reads through; the fault plan must reach them too
READS = frozenset({"GetPowerOptions", "GetComponentInventory", "FindMachinesByIds"})


env = module_env(
    racks=RACKS,
    seed=31,
    sim_args=("--latency-power", "0s"),
    # the simulator shows a command at once: no need to look for a lost one
    # for the production default of 30 s before sending it again
    operator_args=("--confirm-window", "2"),
)


def flaky(env: Env, seed: int, **more: Any) -> None:
    env.control.replace_faults({"seed": seed, "errors": [FLAKY], **more})


@pytest.mark.timeout(600)
def test_restart_succeeds_with_every_core_rpc_failing_a_fifth_of_the_time(env: Env) -> None:
    racks = env.racks[:3]
    start = env.last_seq()
    flaky(env, seed=5)
    try:
        ts = env.run("flaky-restart", "restart", racks, timeout=540)
        hits = env.control.injected()
    finally:
        env.control.replace_faults({})
    assert phase(ts) == "Complete", ts["status"]
    assert restart_succeeded(env, "flaky-restart", racks) == []

    # the faults hit reads and writes alike, or the test proves nothing
    assert READS & set(hits), hits
    assert hits.keys() - READS, hits
    record = PowerRecord.since(env, start)
    refused = [e for e in record.entries if not e["applied"] and e["code"] == "UNAVAILABLE"]
    assert refused, "no state-changing call was refused"

    assert env.control.duplicates() == []
    assert record.not_once_each_way(racks) == {}
    assert record.out_of_order(racks) == {}
    for rack in racks:
        assert env.power_states(rack) == {"on"}, rack


# Each retry of the built-in rule gets the step's whole budget (the "gates
# that hold" issue): with a fifth of all calls refused, the broken tray's rack
# can take several verification rounds before it fails.
@pytest.mark.timeout(1800)
def test_a_component_that_always_fails_fails_only_its_rack(env: Env) -> None:
    good, bad = env.racks[:3], env.racks[3]
    broken = env.components(bad, "compute")[4]
    start = env.last_seq()
    flaky(env, seed=6, failing=[broken["id"]])
    try:
        ts = env.run("flaky-broken", "restart", [*good, bad], timeout=1700)
    finally:
        env.control.replace_faults({})
    tasks = {
        t["spec"]["rack"]: (phase(t), (t.get("status") or {}).get("message"))
        for t in env.tasks("flaky-broken")
    }
    assert phase(ts) == "Failed", (ts["status"], tasks)
    assert ts["status"]["succeeded"] == len(good), tasks
    assert ts["status"]["failed"] == 1, tasks

    failed = env.task(env.task_name("flaky-broken", bad))["status"]
    assert failed["phase"] == "Failed"
    assert broken["name"] in failed["message"], failed["message"]
    for rack in good:
        assert env.task(env.task_name("flaky-broken", rack))["status"]["phase"] == "Succeeded"

    assert env.control.duplicates() == []
    record = PowerRecord.since(env, start)
    assert record.not_once_each_way(good) == {}
    assert record.out_of_order(good) == {}
