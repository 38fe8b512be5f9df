"""`make demo`: the main job end to end on the embedded defaults.

A local control plane and PostgreSQL, `flow simulator` with a few GB200
racks, their Rack objects, `flow operator`, then a TaskSpec that power-cycles
every rack; progress is shown per rack and stage until the run finishes.
Everything keeps running afterwards for a look around; `flow dev down` stops it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from nicoflow.devstack import stack
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished

NAMESPACE = "flow-demo"
RACKS = 4
TIMEOUT = 600.0

_STYLE = {
    "Succeeded": "green",
    "Complete": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "Running": "cyan",
    "Waiting": "magenta",
}


def run_demo(root: Path, racks: int = RACKS) -> None:
    console = Console()
    with console.status("starting etcd, kube-apiserver, kube-controller-manager, PostgreSQL"):
        state = stack.up(root)
    console.print(
        f"[bold]control plane[/] {state.apiserver}   [bold]database[/] {state.database_url}"
    )
    cp = ControlPlane(root / "k8s")
    cp.kubectl("create", "namespace", NAMESPACE, check=False)
    stack.stop_services(root, ("operator", "simulator"))
    flow = FlowStack(
        cp,
        state.database_url,
        root / "demo",
        racks=racks,
        seed=7,
        # a second per power transition, so the stages are visible
        sim_args=("--latency-power", "1s", "--latency-force-power", "0s"),
        namespaces=(NAMESPACE,),
    )
    with console.status(f"starting flow simulator ({racks} GB200 NVL72 racks) and flow operator"):
        flow.start()
    assert flow.simulator is not None
    assert flow.operator is not None
    stack.record_services(root, {"simulator": flow.simulator.pid, "operator": flow.operator.pid})
    console.print(
        f"[bold]NICo Core simulator[/] {flow.core_address}   "
        f"[bold]racks[/] {', '.join(flow.rack_names)} (35 components each)"
    )
    assert flow.control is not None
    flow.control.clear_ledger()
    name = "power-cycle-" + datetime.now(UTC).strftime("%H%M%S")
    flow.apply(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "operation": "restart",
                "description": "make demo: power-cycle every simulated rack",
                "targets": {"rackSelector": {"matchLabels": {"flow.nico.io/simulated": "true"}}},
            },
        }
    )
    console.print(f"applied TaskSpec [bold]{NAMESPACE}/{name}[/] (operation restart)\n")
    started = time.monotonic()
    spec: dict[str, Any] = {}
    with Live(console=console, refresh_per_second=4) as live:
        while time.monotonic() - started < TIMEOUT:
            spec = flow.get("taskspec", name, NAMESPACE)
            tasks = flow.list("tasks", NAMESPACE, f"flow.nico.io/taskspec={name}")
            live.update(_table(spec, tasks, time.monotonic() - started))
            if finished(spec):
                break
            time.sleep(0.5)
    console.print()
    _summary(console, flow, spec, tasks, time.monotonic() - started)
    console.print(
        "\nThe stack keeps running. Look around:\n"
        f"  export KUBECONFIG={state.kubeconfig}\n"
        "  kubectl get flow\n"
        f"  kubectl get tasks -n {NAMESPACE} -o wide\n"
        f"  kubectl describe taskspec -n {NAMESPACE} {name}\n"
        "Stop everything with `make demo-down` (flow dev down)."
    )
    if (spec.get("status") or {}).get("phase") != "Complete":
        raise SystemExit(f"the demo run did not complete: {spec.get('status')}")


def _table(spec: dict[str, Any], tasks: list[dict[str, Any]], elapsed: float) -> Table:
    st = spec.get("status") or {}
    title = (
        f"TaskSpec {spec['metadata']['name']}: {st.get('phase', 'Pending')} — "
        f"{st.get('succeeded', 0)}/{st.get('racks', '?')} racks done, {elapsed:.0f}s"
    )
    table = Table(title=title, title_justify="left")
    for column in ("Rack", "Phase", "Stage", "Progress", "Message"):
        table.add_column(column)
    for task in sorted(tasks, key=lambda t: t["spec"]["rack"]):
        ts = task.get("status") or {}
        phase = ts.get("phase", "Pending")
        stages = ts.get("stages") or []
        done = sum(1 for s in stages if s.get("phase") == "Succeeded")
        bar = "█" * done + "░" * (len(stages) - done)
        current = ts.get("currentStage")
        table.add_row(
            task["spec"]["rack"],
            f"[{_STYLE.get(phase, 'white')}]{phase}[/]",
            f"{current}/{len(stages)}" if current else "",
            bar,
            (ts.get("message") or "")[:60],
        )
    return table


def _summary(
    console: Console,
    flow: FlowStack,
    spec: dict[str, Any],
    tasks: list[dict[str, Any]],
    elapsed: float,
) -> None:
    st = spec.get("status") or {}
    phase = st.get("phase", "?")
    console.print(
        f"[bold {_STYLE.get(phase, 'white')}]{phase}[/]: {st.get('succeeded', 0)} of "
        f"{st.get('racks', 0)} racks power-cycled in {elapsed:.1f}s"
    )
    assert flow.control is not None
    counts = flow.control.counts("method")
    dups = flow.control.duplicates()
    calls = ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))
    console.print(f"state-changing calls NICo Core received: {calls or 'none'}")
    console.print(f"duplicate state-changing calls: {len(dups)}")
    for task in sorted(tasks, key=lambda t: t["spec"]["rack"]):
        ts = task.get("status") or {}
        console.print(
            f"  {task['spec']['rack']}: {ts.get('phase')} — {ts.get('message', '')} "
            f"(rule {task['spec']['rule']['name']})"
        )
