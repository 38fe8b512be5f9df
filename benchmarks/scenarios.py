"""The scenarios. Each returns one flat-ish dict, printed as one JSON line."""

from __future__ import annotations

import time
from typing import Any

from benchmarks import figures, procs
from benchmarks.kube import poll
from benchmarks.stack import BenchStack, group_selector
from nicoflow.devstack.controlplane import ControlPlane

RESTART_STAGES = 6
# After Complete, wait this long before the closing snapshot so trailing
# writes (last Events, the TaskSpec summary) are counted too.
SETTLE_SECONDS = 3.0
DONE = ("Complete", "Failed", "Cancelled")


def _taskspec(name: str, namespace: str, group: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "TaskSpec",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "operation": "restart",
            "targets": {"rackSelector": group_selector(group)},
            **spec,
        },
    }


def run_restart(stack: BenchStack, cp: ControlPlane, racks: int, namespace: str) -> dict[str, Any]:
    """One restart of the first `racks` racks, measured from apply to Complete."""
    kube, control, op = stack.kube, stack.control, stack.operator
    assert kube is not None
    assert control is not None
    assert op is not None
    kube.namespace(namespace)
    control.clear_ledger()
    metrics0 = cp.metrics()
    writes0 = figures.apiserver_writes(metrics0)
    seconds0 = figures.apiserver_write_seconds(metrics0)
    rpcs0 = figures.core_rpc_counts(stack.operator_metrics())
    cpu0 = procs.cpu_seconds(op.pid)
    others = _other_processes(stack, cp)
    others0 = {k: procs.cpu_seconds(pid) for k, pid in others.items()}

    name = f"restart-{racks}"
    t0 = time.monotonic()
    kube.create("taskspecs", _taskspec(name, namespace, racks), namespace)
    final: dict[str, Any] = {}

    def done() -> bool:
        nonlocal final
        final = kube.get("taskspecs", name, namespace)
        return (final.get("status") or {}).get("phase") in DONE

    t1 = poll(done, timeout=600 + 2 * racks, what=f"TaskSpec {name}", alive=op.alive)
    wall = t1 - t0
    time.sleep(SETTLE_SECONDS)

    cpu = procs.cpu_seconds(op.pid) - cpu0
    others_cpu = {k: procs.cpu_seconds(pid) - others0[k] for k, pid in others.items()}
    metrics1 = cp.metrics()
    writes = figures.delta(writes0, figures.apiserver_writes(metrics1))
    write_ms = figures.mean_ms(seconds0, figures.apiserver_write_seconds(metrics1))
    rpcs = figures.counter_delta(rpcs0, figures.core_rpc_counts(stack.operator_metrics()))
    entries = control.ledger()
    tasks = kube.list("tasks", namespace)
    phases: dict[str, int] = {}
    for t in tasks:
        p = (t.get("status") or {}).get("phase", "")
        phases[p] = phases.get(p, 0) + 1
    n = len(tasks)
    status = final.get("status") or {}
    spans = figures.task_spans(tasks)
    return {
        "racks": racks,
        "tasks": n,
        "taskspec_phase": status.get("phase"),
        "task_phases": phases,
        "wall_s": round(wall, 2),
        "tasks_per_s": round(n / wall, 2),
        "apiserver_writes_per_task": figures.per_task(writes, n),
        "apiserver_ms_per_write": write_ms,
        "core_calls_per_task": {
            "state_changing_calls": figures.per_item(figures.ledger_calls(entries), n),
            "components_touched": figures.per_item(figures.ledger_touches(entries), n),
            "all_rpcs_incl_reads": figures.per_item(rpcs, n),
        },
        # seconds from the first Task's creation to the last's, and likewise for
        # starts and ends (whole-second timestamps): where a run's time goes
        "task_spans_s": spans,
        "duplicate_core_calls": len(control.duplicates()),
        "operator_cpu_s_per_task": round(cpu / n, 4),
        # the rest of the machine's work for the same run, per Task
        "cpu_s_per_task_elsewhere": {k: round(v / n, 4) for k, v in others_cpu.items()},
        "operator_cpu_s": round(cpu, 2),
        **procs.memory_mib(op.pid),
    }


def _other_processes(stack: BenchStack, cp: ControlPlane) -> dict[str, int]:
    pids = {name: p.pid for name, p in cp._procs.items() if name in ("kube-apiserver", "etcd")}
    if stack.simulator is not None and stack.simulator.proc is not None:
        pids["simulator"] = stack.simulator.proc.pid
    return pids


def throughput(stack: BenchStack, cp: ControlPlane, racks: int) -> dict[str, Any]:
    return {"scenario": "S1-throughput", **run_restart(stack, cp, racks, f"bench-s1-{racks}")}


def overhead(
    stack: BenchStack, cp: ControlPlane, racks: int, stage_latency: float
) -> dict[str, Any]:
    res = run_restart(stack, cp, racks, f"bench-s2-{racks}")
    critical = RESTART_STAGES * stage_latency
    return {
        "scenario": "S2-overhead",
        "racks": racks,
        "tasks": res["tasks"],
        "taskspec_phase": res["taskspec_phase"],
        "power_latency_s": stage_latency,
        "critical_path_s": critical,
        "wall_s": res["wall_s"],
        "overhead_ratio": figures.overhead_ratio(res["wall_s"], RESTART_STAGES, stage_latency),
        "apiserver_writes_per_task": res["apiserver_writes_per_task"]["total"],
        "operator_cpu_s_per_task": res["operator_cpu_s_per_task"],
    }


def import_racks(stack: BenchStack) -> dict[str, Any]:
    """S4 without the gRPC API: Rack objects applied, mirrored by the operator."""
    n = len(stack.rack_bodies)
    return {
        "scenario": "S4-inventory-import",
        "method": "server-side apply of Rack objects (8 concurrent); wait until the operator "
        "mirrored every one into PostgreSQL (InventorySynced=True)",
        "racks": n,
        "seconds": round(stack.import_seconds, 2),
        "racks_per_s": round(n / stack.import_seconds, 2),
    }


def memory(stack: BenchStack, group: int, counts: tuple[int, ...]) -> dict[str, Any]:
    """Operator RSS with `counts` Tasks held Pending by suspended TaskSpecs.

    Each TaskSpec targets the first `group` racks, so counts are multiples of it."""
    kube = stack.kube
    assert kube is not None

    # Earlier scenarios' Tasks would sit in the operator's caches too: delete
    # them (while the operator runs, to release its finalizers) and start afresh.
    def earlier() -> set[str]:
        spaces = {str(t["metadata"]["namespace"]) for t in kube.list("tasks")}
        return {ns for ns in spaces if ns.startswith("bench-")}

    for ns in earlier():
        kube.delete("namespaces", ns)
    poll(
        lambda: not earlier(),
        timeout=900,
        what="earlier Tasks deleted",
        interval=2.0,
    )
    op = stack.restart_operator()
    poll(stack._operator_up, timeout=120, what="operator metrics", alive=op.alive)
    stack.wait_racks_synced(timeout=120)
    time.sleep(2)
    ns = "bench-s5"
    kube.namespace(ns)
    out: dict[str, Any] = {
        "scenario": "S5-memory",
        "how": "suspended TaskSpecs (spec.suspend: true) over the first "
        f"{group} racks; their Tasks stay Pending. Earlier Tasks deleted, then a fresh "
        "operator process.",
        "racks": group,
        "baseline": procs.memory_mib(op.pid),
    }
    made = 0
    for want in counts:
        while made * group < want:
            made += 1
            body = _taskspec(f"held-{made}", ns, group, suspend=True)
            kube.create("taskspecs", body, ns)

        def listed(want: int = want) -> bool:
            specs = kube.list("taskspecs", ns)
            pending = sum(int((s.get("status") or {}).get("pending", 0)) for s in specs)
            return pending >= want

        t0 = time.monotonic()
        poll(listed, timeout=600, what=f"{want} Tasks Pending", interval=1.0, alive=op.alive)
        time.sleep(5)  # let the operator's caches settle after the last write
        out[f"tasks_{want}"] = {
            **procs.memory_mib(op.pid),
            "tasks": len(kube.list("tasks", ns)),
            "seconds_to_list": round(time.monotonic() - t0 - 5, 1),
        }
    return out
