"""Replies lost after the command applied, on every state-changing RPC the
operator makes, during a 20-rack restart of the real processes.

Core carries out the call and the operator hears UNAVAILABLE, RESOURCE_EXHAUSTED,
ABORTED or DEADLINE_EXCEEDED instead. Judged by what reached each component
(the simulator's delivered view, whatever request id a command came under):
no component gets a command twice, every rack ends powered on, and Flow's
maintenance overrides are all gone."""

from __future__ import annotations

import pytest
from operator_fixtures import Env, module_env
from reliability.support import restart_succeeded

from nicoflow.devstack.flowstack import phase

pytestmark = pytest.mark.reliability

RACKS = 20
WRITES = (
    "ComponentPowerControl",
    "UpdatePowerOption",
    "AdminPowerControl",
    "InsertHealthReportOverride",
    "RemoveHealthReportOverride",
)
CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED")


env = module_env(
    racks=RACKS,
    seed=41,
    sim_args=("--latency-power", "1s"),
    # the simulator shows a command at once: no need to look for a lost one
    # for the production default of 30 s before deciding it never arrived
    operator_args=("--confirm-window", "5"),
)


@pytest.mark.timeout(600)
def test_lost_replies_on_every_write_repeat_no_command(env: Env) -> None:
    start = env.last_seq()
    errors = [
        {
            "method": method,
            "rate": 0.08,
            "code": CODES[i % len(CODES)],
            "when": "after",
            "message": "reply lost after the call applied",
        }
        for i, method in enumerate(WRITES)
    ]
    env.control.replace_faults({"seed": 12, "errors": errors})
    try:
        ts = env.run("lost-replies", "restart", env.racks, timeout=480)
        lost = {m: n for m, n in env.control.injected().items() if m in WRITES}
    finally:
        env.control.replace_faults({})
    assert phase(ts) == "Complete", ts["status"]
    assert restart_succeeded(env, "lost-replies", env.racks) == []

    # every kind of write lost replies, or the test proves little
    assert set(lost) == set(WRITES), lost
    assert sum(lost.values()) >= 50, lost

    # what reached each component: nothing counted twice, whatever the key
    assert env.control.repeats(since=start) == {}
    delivered = env.control.delivered(since=start)
    kinds = env.kinds()
    for cid, (rack, ctype) in kinds.items():
        commands = [d["command"] for d in delivered.get(cid, []) if d["counted"]]
        physical = [c for c in commands if not c.startswith("desired_")]
        assert physical in (["graceful_shutdown", "on"], ["on"], ["graceful_shutdown"], []), (
            rack,
            env.name_of(cid),
            commands,
        )
        if ctype != "compute":
            # shelves and switches have no power manager to finish the job:
            # each got both commands exactly once
            assert physical == ["graceful_shutdown", "on"], (rack, env.name_of(cid), commands)
    for rack in env.racks:
        assert env.power_states(rack) == {"on"}, rack
        for c in env.components(rack, "compute"):
            assert "flow-power-control" not in (c.get("overrides") or []), c["name"]
