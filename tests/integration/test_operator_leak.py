"""The leak response end to end: the real operator process asking the Core
simulator for leaks every second (its leak watch), its TaskSpecs run by the
operator's own Task engine. One leak gets one forced power-off, also across an operator
restart; powering the leaking tray back on gets exactly one more."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from operator_fixtures import Env

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres

NS = "leak-e2e"
SELECTOR = "flow.nico.io/leak-response=true"
# Checks of a 1 s leak watch to sit through before saying "nothing more came".
QUIET = 4.0


@pytest.fixture(scope="module")
def env(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    url = postgres.create_database("t_leak_e2e")
    control_plane.kubectl("create", "namespace", NS)
    stack = FlowStack(
        control_plane,
        url,
        tmp_path_factory.mktemp("leak"),
        racks=1,
        seed=21,
        sim_args=("--latency-power", "0s"),
        namespaces=(NS,),
        operator_args=("--inventory-interval", "1", "--leak-interval", "1", "--leak-namespace", NS),
    )
    try:
        with stack:
            yield Env(stack, NS)
    finally:
        control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        postgres.drop_database("t_leak_e2e")


def leak_specs(env: Env) -> list[dict[str, Any]]:
    found = env.flow.list("taskspecs", NS, SELECTOR)
    return sorted(found, key=lambda b: b["metadata"]["creationTimestamp"])


def wait_until(env: Env, what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    # the leak watch's own lines (inventory passes would fill the tail)
    lines = [ln for ln in env.operator_log().splitlines() if "inventory sync" not in ln]
    log = "\n".join(lines[-60:])
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s\n{log}")


def off_commands(env: Env, core_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in env.power_commands(env.racks)
        if e["component_id"] == core_id and e["action"] == "force_off"
    ]


def test_leak_power_off_once_then_once_more_when_powered_on_again(env: Env) -> None:
    tray = env.components(env.racks[0], "compute")[0]
    core_id = str(tray["id"])
    env.control._json("POST", f"/v1/components/{core_id}/leak", json={"leaking": True})

    wait_until(env, "a finished leak TaskSpec", lambda: any(finished(b) for b in leak_specs(env)))
    (first,) = leak_specs(env)
    assert phase(first) == "Complete", first.get("status")
    assert first["spec"]["targets"]["components"] == [{"coreId": core_id, "type": "compute"}]
    assert env.control.component(core_id)["power"] == "off"
    time.sleep(QUIET)
    assert len(leak_specs(env)) == 1  # the leak persists; the tray stays dark: nothing more

    env.flow.restart_operator()
    time.sleep(QUIET)
    assert len(leak_specs(env)) == 1  # a restarted operator does not power it off again
    assert len(off_commands(env, core_id)) == 1

    env.control.set_power(core_id, "on")  # someone switches the leaking tray back on
    wait_until(
        env,
        "a second finished leak TaskSpec",
        lambda: len(specs := leak_specs(env)) == 2 and finished(specs[1]),
        timeout=180,
    )
    second = leak_specs(env)[1]
    assert phase(second) == "Complete", second.get("status")
    assert second["metadata"]["annotations"]["flow.nico.io/leak-round"] == "1"
    assert env.control.component(core_id)["power"] == "off"
    time.sleep(QUIET)
    assert len(leak_specs(env)) == 2
    assert len(off_commands(env, core_id)) == 2

    rack = env.flow.get("rack", env.racks[0])
    # by uid: every simulated site names its first rack rack-a01, and earlier
    # modules' leak events on their own rack-a01 are still in "default"
    events = env.flow.list("events", "default")
    reasons = [
        e["reason"]
        for e in events
        if e["involvedObject"].get("uid") == rack["metadata"]["uid"]
        and e["reason"].startswith("Leak")
    ]
    assert sorted(reasons) == ["LeakDetected", "LeakRepowered"]
    assert rack["status"]["leak"]["state"] == "Detected"
    assert rack["status"]["leak"]["components"] == [tray["name"]]
