"""The gates that stand between a typo and an outage, through the real operator,
apiserver, PostgreSQL and simulator: the readiness gate of switches and power
shelves (every tray behind them), the leak response (pre-empts, works with
PostgreSQL down), and the blast-radius limits (an empty rack selector, many
racks without maxParallelRacks, racks in flight).

The module runs its own PostgreSQL, so stopping it touches no other test."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_fixtures import Env, taskspec

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres

NS = "gates-e2e"
RACKS = 3
LEAKS = "flow.nico.io/leak-response=true"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    path = Path(tempfile.mkdtemp(prefix="nf-gates-"))
    os.chmod(path, 0o755)
    try:
        with Postgres(path / "pg") as server:
            yield server
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def env(
    control_plane: ControlPlane, pg: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    url = pg.create_database("t_gates")
    control_plane.kubectl("create", "namespace", NS)
    stack = FlowStack(
        control_plane,
        url,
        tmp_path_factory.mktemp("gates"),
        racks=RACKS,
        seed=23,
        sim_args=("--latency-power", "2s"),
        namespaces=(NS,),
        operator_args=(
            "--inventory-interval",
            "1",
            "--leak-interval",
            "1",
            "--leak-namespace",
            NS,
            "--max-unthrottled-racks",
            "2",
            "--max-racks-in-flight",
            "2",
            "--confirm-window",
            "5",
        ),
    )
    try:
        with stack:
            yield Env(stack, NS)
    finally:
        control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def wait_until(env: Env, what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s\n{env.operator_log()[-3000:]}")


def stage(env: Env, task: str) -> int:
    """The stage a Task is in; 0 before it exists or starts."""
    found = env.flow.list("tasks", NS)
    for t in found:
        if t["metadata"]["name"] == task:
            return int((t.get("status") or {}).get("currentStage") or 0)
    return 0


def message(env: Env, task: str) -> str:
    """A Task's status message; empty until the operator has created it."""
    found = [t for t in env.flow.list("tasks", NS) if t["metadata"]["name"] == task]
    return str((found[0].get("status") or {}).get("message") or "") if found else ""


def events_of(env: Env, name: str) -> list[dict[str, Any]]:
    return [e for e in env.flow.list("events", NS) if e["involvedObject"].get("name") == name]


def shelf_commands(env: Env, rack: str, since: int) -> list[dict[str, Any]]:
    shelves = {c["id"] for c in env.components(rack, "powershelf")}
    return [
        e
        for e in env.control.ledger(since=str(since))
        if e["component_id"] in shelves and e["method"] == "ComponentPowerControl"
    ]


# -- readiness -----------------------------------------------------------------------


def test_shelf_power_off_waits_while_a_tray_behind_it_is_in_use(env: Env) -> None:
    rack = env.racks[0]
    tray = env.components(rack, "compute")[2]
    env.control.set_state(tray["id"], "Assigned/Ready")  # a tenant's
    time.sleep(3)  # the inventory sync records it
    start = env.last_seq()
    env.submit("shelves-off", "power_off", [rack], componentTypes=["powershelf"])
    task = env.task_name("shelves-off", rack)
    wait_until(env, "the Task held for readiness", lambda: "readiness" in message(env, task))
    assert tray["id"] in message(env, task), message(env, task)
    assert env.task(task)["status"]["phase"] == "Pending"
    time.sleep(3)
    assert shelf_commands(env, rack, start) == []  # nothing went out meanwhile

    env.control.set_state(tray["id"], "Ready")  # the tenant is gone
    ts = env.wait("shelves-off", timeout=120)
    assert phase(ts) == "Complete", ts["status"]
    assert {c["power"] for c in env.components(rack, "powershelf")} == {"off"}
    assert phase(env.run("shelves-on", "power_on", [rack], componentTypes=["powershelf"])) == (
        "Complete"
    )


def test_overriding_the_readiness_gate_is_on_record(env: Env) -> None:
    rack = env.racks[0]
    tray = env.components(rack, "compute")[3]
    env.control.set_state(tray["id"], "Assigned/Ready")
    time.sleep(3)
    try:
        ts = env.run(
            "override-off",
            "power_off",
            [rack],
            componentTypes=["powershelf"],
            options={"overrideReadinessCheck": True},
        )
    finally:
        env.control.set_state(tray["id"], "Ready")
    assert phase(ts) == "Complete", ts["status"]
    task = env.task_name("override-off", rack)
    (cond,) = [c for c in env.task(task)["status"]["conditions"] if c["type"] == "ReadinessCheck"]
    assert (cond["status"], cond["reason"]) == ("False", "Overridden")
    assert "override-off" in cond["message"]
    assert "ReadinessOverridden" in [e["reason"] for e in events_of(env, task)]
    assert phase(env.run("override-on", "power_on", [rack], componentTypes=["powershelf"])) == (
        "Complete"
    )


# -- blast radius --------------------------------------------------------------------


def test_an_empty_rack_selector_is_refused_unless_all_racks_is_meant(env: Env) -> None:
    body = taskspec("everything", NS, "power_off", [])
    body["spec"]["targets"] = {"rackSelector": {}}
    refused = env.flow.cp.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=_yaml(body), check=False
    )
    assert refused.returncode != 0
    assert "rackSelector {} selects every rack" in refused.stderr, refused.stderr
    assert "allRacks: true" in refused.stderr
    body["spec"]["targets"]["allRacks"] = True
    meant = env.flow.cp.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=_yaml(body), check=False
    )
    assert meant.returncode == 0, meant.stderr


def test_a_disruptive_operation_on_many_racks_needs_max_parallel_racks(env: Env) -> None:
    # the operator allows 2 racks at once without maxParallelRacks
    ts = env.run("wide-restart", "restart", env.racks, timeout=60)
    assert phase(ts) == "Failed", ts["status"]
    (cond,) = [c for c in ts["status"]["conditions"] if c["type"] == "Failed"]
    assert cond["reason"] == "BlastRadius"
    assert "maxParallelRacks" in cond["message"], cond["message"]
    assert env.tasks("wide-restart") == []

    # with it set, it runs; and the operator-wide limit of 2 racks in flight
    # holds the third until a slot frees
    env.submit("wide-restart-2", "restart", env.racks, maxParallelRacks=3)
    wait_until(
        env,
        "a Task waiting for an operator-wide slot",
        lambda: any(
            "--max-racks-in-flight=2" in str((t.get("status") or {}).get("message"))
            for t in env.tasks("wide-restart-2")
        ),
    )
    ts = env.wait("wide-restart-2", timeout=300)
    assert phase(ts) == "Complete", ts["status"]


# -- the leak response -----------------------------------------------------------------


def test_a_leak_pre_empts_a_running_restart_of_its_rack(env: Env) -> None:
    rack = env.racks[1]
    tray = env.components(rack, "compute")[5]
    start = env.last_seq()
    env.submit("restart-under-leak", "restart", [rack])
    restart = env.task_name("restart-under-leak", rack)
    # strike once the restart is powering the rack back up (stage 4 on)
    wait_until(env, "the restart in its power-on half", lambda: stage(env, restart) >= 4)
    env.control._json("POST", f"/v1/components/{tray['id']}/leak", json={"leaking": True})
    try:
        wait_until(
            env,
            "a finished leak response",
            lambda: any(finished(b) for b in env.flow.list("taskspecs", NS, LEAKS)),
            timeout=90,
        )
        (leak,) = env.flow.list("taskspecs", NS, LEAKS)
        assert phase(leak) == "Complete", leak.get("status")
        # the restart was cancelled to make way, and said so
        wait_until(env, "the restart to end", lambda: finished(env.taskspec("restart-under-leak")))
        assert env.task(restart)["status"]["phase"] == "Cancelled"
        assert "Preempted" in [e["reason"] for e in events_of(env, restart)]
        # the tray went dark and nothing turned it back on
        time.sleep(4)
        assert env.control.component(tray["id"])["power"] == "off"
        seq = [
            e["action"]
            for e in env.control.ledger(since=str(start))
            if e["component_id"] == tray["id"]
            and e["method"] in ("AdminPowerControl", "ComponentPowerControl")
        ]
        assert "force_off" in seq, seq
        assert "on" not in seq[seq.index("force_off") :], seq
    finally:
        env.control._json("POST", f"/v1/components/{tray['id']}/leak", json={"leaking": False})
        for b in env.flow.list("taskspecs", NS, LEAKS):
            env.flow.cp.kubectl("delete", "taskspec", b["metadata"]["name"], "-n", NS)
    assert phase(env.run("after-leak-on", "power_on", [rack], timeout=120)) == "Complete"


def test_a_leak_is_answered_with_postgresql_down(env: Env, pg: Postgres) -> None:
    rack = env.racks[2]
    tray = env.components(rack, "compute")[7]
    pg.stop()
    try:
        env.control._json("POST", f"/v1/components/{tray['id']}/leak", json={"leaking": True})
        wait_until(
            env,
            "a finished leak response with PostgreSQL down",
            lambda: any(finished(b) for b in env.flow.list("taskspecs", NS, LEAKS)),
            timeout=90,
        )
        (leak,) = env.flow.list("taskspecs", NS, LEAKS)
        assert phase(leak) == "Complete", leak.get("status")
        assert env.control.component(tray["id"])["power"] == "off"
    finally:
        pg.start()
        env.control._json("POST", f"/v1/components/{tray['id']}/leak", json={"leaking": False})
        for b in env.flow.list("taskspecs", NS, LEAKS):
            env.flow.cp.kubectl("delete", "taskspec", b["metadata"]["name"], "-n", NS)
    assert phase(env.run("after-pg-on", "power_on", [rack], timeout=120)) == "Complete"


def _yaml(body: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(body))
