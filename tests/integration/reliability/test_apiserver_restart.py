"""kube-apiserver stopped in the middle of a run and started again on the same
port, certificates and etcd: the operator rides it out. Every Task still
succeeds and no state-changing Core call is repeated.

Power changes take 1.5s each, so the Tasks are mid-stage while the apiserver
is away and the operator has calls in flight whose results it cannot write."""

from __future__ import annotations

import time

import pytest
from operator_fixtures import Env, module_env
from reliability.support import PowerRecord, intent_recorded, restart_succeeded, wait_any

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import phase

pytestmark = pytest.mark.reliability

RACKS = 10
DOWN_S = 5.0


env = module_env(
    racks=RACKS,
    seed=41,
    sim_args=("--latency-power", "1500ms"),
)


@pytest.mark.timeout(420)
def test_run_completes_across_an_apiserver_restart(env: Env, control_plane: ControlPlane) -> None:
    start = env.last_seq()
    env.submit("apiserver-restart", "restart", env.racks)
    running = wait_any(env, "apiserver-restart", intent_recorded, timeout=120)
    assert running is not None, "the Tasks finished before the apiserver could be stopped"

    port = control_plane.apiserver_port
    calls_before = env.last_seq()
    control_plane.stop_apiserver()
    try:
        time.sleep(DOWN_S)
    finally:
        # later tests share this control plane: bring it back whatever happens
        control_plane.start_apiserver()
    assert control_plane.apiserver_port == port
    assert env.flow.operator is not None
    assert env.flow.operator.alive(), env.operator_log()[-3000:]

    ts = env.wait("apiserver-restart", timeout=300)
    assert phase(ts) == "Complete", ts["status"]
    assert restart_succeeded(env, "apiserver-restart", env.racks) == []
    # the hardware kept being driven while the apiserver was away or after it
    assert env.last_seq() > calls_before

    assert env.control.duplicates() == []
    record = PowerRecord.since(env, start)
    assert record.not_once_each_way(env.racks) == {}
    assert record.out_of_order(env.racks) == {}
    for rack in env.racks:
        assert env.power_states(rack) == {"on"}, rack
