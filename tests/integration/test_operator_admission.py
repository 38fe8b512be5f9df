"""Admission end to end: conflicts (Reject, FIFO Queue, queue expiry),
cancellation, TaskSpec rollout limits (maxParallelRacks, suspend) — against
the real operator, apiserver, PostgreSQL and Core simulator.

Power transitions take 1s in the simulator, so a Task spends a few seconds in
each stage and another Task can be sent while it runs."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from operator_fixtures import (
    DOWN,
    UP,
    Env,
    RunningWatch,
    condition,
    in_phase,
    module_env,
    overlapping,
    run_window,
    ts,
)

from nicoflow.cli import kubectl_plugin
from nicoflow.devstack.flowstack import phase

RACKS = 3


env = module_env(
    racks=RACKS,
    seed=5,
    sim_args=("--latency-power", "1s"),
)


@pytest.fixture(scope="module")
def watch(env: Env) -> Iterator[RunningWatch]:
    """Every Task of the module, polled while the module runs."""
    with RunningWatch(env) as w:
        yield w


@pytest.fixture(autouse=True)
def no_faults(env: Env) -> Iterator[None]:
    yield
    env.control.replace_faults({})


def ensure_power(env: Env, racks: list[str], state: str) -> None:
    """Bring racks to a power state first, when an earlier test left them otherwise
    (in file order the tests hand over racks in the state the next one needs)."""
    todo = [r for r in racks if env.power_states(r) != {state}]
    if todo:
        name = f"prepare-{state}-{int(time.time() * 1000)}"
        assert phase(env.run(name, f"power_{state}", todo)) == "Complete"


def running(task: dict[str, object]) -> bool:
    return phase(task) == "Running"


# -- 3. conflicts ------------------------------------------------------------------


def test_reject_fails_the_second_task_at_once_naming_the_first(
    env: Env, watch: RunningWatch
) -> None:
    rack = env.racks[0]
    ensure_power(env, [rack], "on")
    env.submit("rej-first", "power_off", [rack])
    first = env.task_name("rej-first", rack)
    env.wait_task(first, running)

    env.submit("rej-second", "power_on", [rack], conflictStrategy="Reject")
    second = env.wait_task(env.task_name("rej-second", rack), in_phase("Failed"), timeout=20)
    assert first in second["status"]["message"], second["status"]
    failed = condition(second, "Failed")
    assert failed is not None
    assert failed["reason"] == "Rejected"
    assert "startTime" not in second["status"]  # it never ran
    assert running(env.task(first)), "the second Task was rejected only after the first finished"

    ts_second = env.wait("rej-second")
    assert phase(ts_second) == "Failed"
    cond = condition(ts_second, "Failed")
    assert cond is not None
    assert cond["reason"] == "TasksFailed"
    assert phase(env.wait("rej-first")) == "Complete"
    assert env.power_states(rack) == {"off"}  # the rejected power_on never ran


def test_queue_runs_waiting_tasks_in_fifo_order_one_at_a_time(
    env: Env, watch: RunningWatch
) -> None:
    rack = env.racks[1]
    ensure_power(env, [rack], "on")
    start = env.last_seq()
    env.submit("fifo-a", "power_off", [rack], conflictStrategy="Queue")
    a = env.task_name("fifo-a", rack)
    env.wait_task(a, running)
    env.submit("fifo-b", "power_on", [rack], conflictStrategy="Queue")
    b = env.task_name("fifo-b", rack)
    waiting_b = env.wait_task(b, in_phase("Waiting"), timeout=20)
    env.submit("fifo-c", "power_on", [rack], conflictStrategy="Queue")
    c = env.task_name("fifo-c", rack)
    waiting_c = env.wait_task(c, in_phase("Waiting"), timeout=20)

    assert waiting_b["status"]["queuePosition"] == 1
    assert waiting_c["status"]["queuePosition"] == 2
    assert a in waiting_b["status"]["message"], waiting_b["status"]
    queued = condition(waiting_c, "Queued")
    assert queued is not None
    assert queued["status"] == "True"
    assert running(env.task(a)), "a Task was queued only after the first one finished"
    # `kubectl flow why` names the Task ahead and the command that moves past it
    (why_b,) = env.why(f"task/{b}")
    assert why_b["cause"] == "QueuedBehindTask", why_b
    assert any(a in fact and "Running" in fact for fact in why_b["facts"]), why_b
    assert f"kubectl flow cancel task/{a} -n {env.ns}" in [x["command"] for x in why_b["actions"]]

    for name in ("fifo-a", "fifo-b", "fifo-c"):
        assert phase(env.wait(name)) == "Complete", name
    tasks = [env.task(n) for n in (a, b, c)]
    assert [t["status"]["phase"] for t in tasks] == ["Succeeded"] * 3
    queued = condition(tasks[1], "Queued")
    assert queued is not None
    assert (queued["status"], queued["reason"]) == ("False", "Started")
    (_a0, a1), (b0, b1), (c0, _c1) = (run_window(t) for t in tasks)
    assert a1 <= b0, "the second Task started before the first finished"
    assert b1 <= c0, "the third Task started before the second finished"
    assert overlapping(tasks) == []
    # the hardware saw the three operations in submission order, not interleaved
    assert env.power_sequence(rack, start) == [
        *(f"{t} off" for t in DOWN),
        *(f"{t} on" for t in UP),
        *(f"{t} on" for t in UP),
    ]
    assert env.power_states(rack) == {"on"}


def test_queue_timeout_cancels_a_waiting_task(env: Env, watch: RunningWatch) -> None:
    rack = env.racks[2]
    # the first Task is slow: every power read waits 1.5s in the simulator
    env.control.set_faults(latency={"GetPowerOptions": 1.5, "GetComponentInventory": 1.5})
    env.submit("expiry-long", "restart", [rack])
    long = env.task_name("expiry-long", rack)
    env.wait_task(long, running)
    env.submit("expiry-short", "power_off", [rack], conflictStrategy="Queue", queueTimeoutSeconds=2)
    short = env.task_name("expiry-short", rack)
    env.wait_task(short, in_phase("Waiting"), timeout=20)

    cancelled = env.wait_task(short, in_phase("Cancelled", "Failed", "Succeeded"), timeout=30)
    status = cancelled["status"]
    assert status["phase"] == "Cancelled", status
    cond = condition(cancelled, "Failed")
    assert cond is not None, status
    assert cond["reason"] == "QueueTimeout", status
    assert "queue timeout" in status["message"]
    assert "startTime" not in status
    # expiry is honoured on time, not only when the rack frees up
    assert running(env.task(long)), "the queue timeout was noticed only when the rack freed up"
    expired_after = ts(status["completionTime"]) - ts(status["queuedAt"])
    assert expired_after.total_seconds() < 8, status

    assert phase(env.wait("expiry-short")) == "Cancelled"
    env.patch("taskspec", "expiry-long", '{"spec":{"cancel":true}}')
    assert phase(env.wait("expiry-long")) == "Cancelled"


def test_never_two_conflicting_tasks_running_on_one_rack(env: Env, watch: RunningWatch) -> None:
    """Over every Task this module ran so far (polled while they ran, and by
    their recorded start and completion times). Every Task here targets whole
    racks, so any two on one rack conflict."""
    assert watch.seen, "the watch saw no Task running"
    assert watch.per_rack_max() == 1, watch.seen
    by_rack: dict[str, list[dict[str, object]]] = {}
    for t in env.flow.list("tasks", env.ns):
        if (t.get("status") or {}).get("startTime") and t["status"].get("completionTime"):
            by_rack.setdefault(t["spec"]["rack"], []).append(t)
    assert sum(len(v) for v in by_rack.values()) >= 5
    for rack, tasks in by_rack.items():
        assert overlapping(tasks) == [], rack  # type: ignore[arg-type]


# -- 4. cancellation ---------------------------------------------------------------


def test_cancel_a_waiting_task_at_once(env: Env, watch: RunningWatch) -> None:
    rack = env.racks[0]
    ensure_power(env, [rack], "off")
    env.submit("cw-first", "power_on", [rack])
    first = env.task_name("cw-first", rack)
    env.wait_task(first, running)
    env.submit("cw-queued", "power_off", [rack], conflictStrategy="Queue")
    queued = env.task_name("cw-queued", rack)
    env.wait_task(queued, in_phase("Waiting"), timeout=20)

    env.patch("task", queued, '{"spec":{"cancel":true}}')
    done = env.wait_task(queued, in_phase("Cancelled", "Failed", "Succeeded"), timeout=10)
    assert done["status"]["phase"] == "Cancelled", done["status"]
    assert "before it started" in done["status"]["message"]
    assert running(env.task(first)), "the waiting Task was cancelled only after the first finished"
    assert phase(env.wait("cw-queued")) == "Cancelled"
    assert phase(env.wait("cw-first")) == "Complete"
    assert env.power_states(rack) == {"on"}  # the cancelled power_off never ran


def test_cancel_a_running_task_mid_stage_lists_what_was_commanded(
    env: Env, watch: RunningWatch
) -> None:
    rack = env.racks[1]
    ensure_power(env, [rack], "on")
    # switch reads take 1s: the switch stage lasts long enough to be caught in it
    env.control.set_faults(latency={"GetComponentInventory": 1.0})
    start = env.last_seq()
    env.submit("cr-run", "power_off", [rack])
    name = env.task_name("cr-run", rack)
    env.wait_task(name, lambda t: (t.get("status") or {}).get("currentStage") == 2)

    env.patch("task", name, '{"spec":{"cancel":true}}')
    task = env.wait_task(name, in_phase("Cancelled", "Failed", "Succeeded"), timeout=20)
    status = task["status"]
    assert status["phase"] == "Cancelled", status
    assert phase(env.wait("cr-run")) == "Cancelled"
    time.sleep(2)  # nothing more may reach the hardware after the cancel
    commanded_by_ledger = {
        env.name_of(e["component_id"]) for e in env.power_commands([rack], start)
    }
    assert set(status["commanded"]) == commanded_by_ledger
    compute = {c["name"] for c in env.components(rack, "compute")}
    assert compute <= set(status["commanded"])  # stage 1 was done
    shelves = {c["name"] for c in env.components(rack, "powershelf")}
    assert not shelves & set(status["commanded"])  # stage 3 never started
    assert all(c["power"] == "on" for c in env.components(rack, "powershelf"))
    stages = {s["number"]: s["phase"] for s in status["stages"]}
    assert stages[1] == "Succeeded", stages
    assert stages[3] == "Cancelled", stages
    assert "already been commanded" in status["message"]


def test_cancel_through_the_taskspec_cancels_all_its_tasks(env: Env, watch: RunningWatch) -> None:
    env.submit("cts", "restart", env.racks, maxParallelRacks=1)
    names = [env.task_name("cts", r) for r in env.racks]
    env.flow.wait_for(
        "taskspec", "cts", env.ns, lambda o: (o.get("status") or {}).get("running") == 1
    )
    env.patch("taskspec", "cts", '{"spec":{"cancel":true}}')
    done = env.wait("cts", timeout=30)
    assert phase(done) == "Cancelled", done["status"]
    assert done["status"]["cancelled"] == RACKS
    phases = [env.task(n)["status"]["phase"] for n in names]
    assert phases == ["Cancelled"] * RACKS
    started = [n for n in names if env.task(n)["status"].get("startTime")]
    assert len(started) == 1, "more than one Task started under maxParallelRacks=1"


# -- 8. rollout limits ---------------------------------------------------------------


def test_max_parallel_racks_runs_one_rack_at_a_time(env: Env) -> None:
    with RunningWatch(env, "flow.nico.io/taskspec=mpr", interval=0.2) as w:
        env.submit("mpr", "power_off", env.racks, maxParallelRacks=1)
        held = env.flow.wait_for(
            "taskspec", "mpr", env.ns, lambda o: (o.get("status") or {}).get("running") == 1
        )
        pending = [t["name"] for t in held["status"]["tasks"] if t["phase"] == "Pending"]
        assert len(pending) == RACKS - 1, held["status"]
        for name in pending:
            task = env.wait_task(name, lambda t: bool((t.get("status") or {}).get("message")))
            assert "maxParallelRacks=1" in task["status"]["message"], task["status"]
            held_cond = condition(task, "Held")
            assert held_cond is not None
            assert held_cond["reason"] == "MaxParallelRacks"
        done = env.wait("mpr")
    assert phase(done) == "Complete", done["status"]
    assert w.most_at_once() == 1, w.seen
    tasks = env.tasks("mpr")
    assert len(tasks) == RACKS
    assert overlapping(tasks) == []
    for rack in env.racks:
        assert env.power_states(rack) == {"off"}


def test_suspend_holds_tasks_until_resumed(env: Env) -> None:
    racks = env.racks[:2]
    ensure_power(env, racks, "off")
    start = env.last_seq()
    env.submit("susp", "power_on", racks, suspend=True)
    env.flow.wait_for(
        "taskspec", "susp", env.ns, lambda o: (o.get("status") or {}).get("racks") == 2
    )
    time.sleep(3)
    spec = env.taskspec("susp")
    assert phase(spec) == "Suspended", spec["status"]
    for t in env.tasks("susp"):
        assert t["status"]["phase"] == "Pending", t["status"]
        assert "suspended" in t["status"]["message"], t["status"]
    assert env.power_commands(racks, start) == []

    # `kubectl flow why` says why, and its first recommendation, run as given, resumes it
    whys = env.why("taskspec/susp")
    assert [w["cause"] for w in whys] == ["Suspended", "Suspended"], whys
    resume = whys[0]["actions"][0]["command"]
    assert resume.startswith("kubectl patch taskspec/susp"), resume
    env.flow.cp.kubectl(*shlex.split(resume)[1:])
    done = env.wait("susp")
    assert phase(done) == "Complete", done["status"]
    for t in env.tasks("susp"):
        held = condition(t, "Held")
        assert held is not None
        assert (held["status"], held["reason"]) == ("False", "Started")
    for rack in racks:
        assert env.power_states(rack) == {"on"}


def test_max_failed_racks_stops_the_rollout_and_says_a_person_is_needed(env: Env) -> None:
    ensure_power(env, env.racks, "on")
    # one tray per rack refuses every power command: whichever rack goes first fails
    broken = [env.components(rack, "compute")[0]["id"] for rack in env.racks]
    env.control.set_faults(failing=broken)
    env.submit("mfr", "power_off", env.racks, maxParallelRacks=1, maxFailedRacks=0)

    def stopped(o: dict[str, object]) -> bool:
        status = o.get("status") or {}
        assert isinstance(status, dict)
        return status.get("failed") == 1 and status.get("pending") == RACKS - 1

    env.flow.wait_for("taskspec", "mfr", env.ns, stopped, timeout=180)
    held = [t for t in env.tasks("mfr") if t["status"]["phase"] == "Pending"]
    for task in held:
        task = env.wait_task(
            task["metadata"]["name"],
            lambda t: (condition(t, "Progressing") or {}).get("reason") == "Stuck",
        )
        assert "maxFailedRacks=0" in task["status"]["message"], task["status"]
        assert (condition(task, "Held") or {}).get("reason") == "MaxFailedRacks"
    stuck_events = [
        e
        for e in env.flow.list("events", env.ns)
        if e["reason"] == "Stuck" and e["involvedObject"]["name"].startswith("mfr-")
    ]
    assert len(stuck_events) == RACKS - 1, stuck_events

    whys = env.why("taskspec/mfr")
    assert [w["cause"] for w in whys] == ["MaxFailedRacks"] * (RACKS - 1), whys
    assert all(w["stuck"] for w in whys)
    commands = [a["command"] for a in whys[0]["actions"]]
    assert f"kubectl flow status taskspec/mfr -n {env.ns}" in commands
    end = f"kubectl flow cancel taskspec/mfr -n {env.ns}"
    assert end in commands
    ran = CliRunner().invoke(
        kubectl_plugin.cli,
        [*shlex.split(end)[2:], "--kubeconfig", str(env.flow.cp.kubeconfig)],
    )
    assert ran.exit_code == 0, ran.output
    done = env.wait("mfr")
    assert sorted(t["status"]["phase"] for t in env.tasks("mfr")) == [
        "Cancelled",
        "Cancelled",
        "Failed",
    ]
    assert phase(done) in ("Failed", "Cancelled"), done["status"]
