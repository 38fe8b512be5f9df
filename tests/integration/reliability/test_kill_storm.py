"""A kill storm: fifty racks restart while the operator is SIGKILLed five times
at seeded random moments. Every Task still succeeds, no state-changing Core
call is repeated under its request id, and every component got exactly one
off and one on.

Power changes are instant in the simulator, so the run is bounded by the
operator's own work; each kill lands a random delay after the freshly started
operator was seen driving the hardware again."""

from __future__ import annotations

import random
import time

import pytest
from operator_fixtures import Env, module_env
from reliability.support import (
    PowerRecord,
    newest_seq,
    restart_succeeded,
    stage_of,
    wait_new_core_calls,
)

from nicoflow.devstack.flowstack import phase

pytestmark = pytest.mark.reliability

RACKS = 50
KILLS = 5
SEED = 8  # the moments of the kills
MAX_DELAY_S = 2.5


env = module_env(
    racks=RACKS,
    seed=21,
    sim_args=("--latency-power", "0s"),
    # the simulator shows a command at once: no need to look for an
    # interrupted one for the production default of 30 s
    operator_args=("--confirm-window", "5"),
)


def _progress(env: Env, taskspec: str) -> str:
    tasks = env.tasks(taskspec)
    done = sum(phase(t) == "Succeeded" for t in tasks)
    stages = sorted(stage_of(t) for t in tasks if stage_of(t))
    return f"{done}/{len(tasks)} done, running in stages {stages}"


@pytest.mark.timeout(420)
def test_fifty_racks_restart_through_five_sigkills(env: Env) -> None:
    rng = random.Random(SEED)
    start = env.last_seq()
    # a restart of more than 20 racks must say how many may run at once
    env.submit("storm", "restart", env.racks, maxParallelRacks=RACKS)

    seen = start
    killed: list[str] = []
    for _ in range(KILLS):
        seen = wait_new_core_calls(env, seen)
        time.sleep(rng.uniform(0.0, MAX_DELAY_S))
        env.flow.kill_operator()
        killed.append(_progress(env, "storm"))
        # the kill must land mid-run, or the storm proves nothing
        assert f"{RACKS}/{RACKS} done" not in killed[-1], killed
        # calls the dead operator made count for it, not for its successor
        seen = newest_seq(env, seen)
        env.flow.start_operator()

    ts = env.wait("storm", timeout=300)
    assert phase(ts) == "Complete", (killed, ts["status"])
    assert restart_succeeded(env, "storm", env.racks) == [], killed

    # no call repeated under its request id; a resend after a crash goes only
    # to components the first call did not reach, under a new key
    assert env.control.duplicates() == []
    # nor under a fresh key: what reached each component, counted once
    assert env.control.repeats(since=start) == {}
    record = PowerRecord.since(env, start)
    assert record.not_once_each_way(env.racks) == {}, killed
    assert record.out_of_order(env.racks) == {}, killed
    off = {r: s for r in env.racks if (s := env.power_states(r)) != {"on"}}
    assert off == {}
