"""The main job end to end: a TaskSpec on simulated GB200 racks, the real
operator process, the real apiserver, PostgreSQL and the Core simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.processes import free_port

RACKS = 2
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def module_db(postgres: Postgres) -> Iterator[str]:
    name = f"t_power_{id(postgres) % 100000}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="module")
def flow(
    control_plane: ControlPlane, module_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowStack]:
    ns = "power-e2e"
    control_plane.kubectl("create", "namespace", ns)
    stack = FlowStack(
        control_plane,
        module_db,
        tmp_path_factory.mktemp("flow"),
        racks=RACKS,
        seed=11,
        sim_args=("--latency-power", "0s"),
        namespaces=(ns,),
        operator_args=("--metrics-port", str(METRICS_PORT), "--log-format", "json"),
    )
    with stack:
        yield stack
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def taskspec(name: str, operation: str, racks: list[str], **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "TaskSpec",
        "metadata": {"name": name, "namespace": "power-e2e"},
        "spec": {"operation": operation, "targets": {"racks": racks}, **spec},
    }


def power_ledger(flow: FlowStack, since: int = 0) -> list[dict[str, object]]:
    assert flow.control is not None
    entries = flow.control.ledger()
    return [e for e in entries if int(str(e["seq"])) > since and e["applied"]]


def test_restart_power_cycles_every_rack_in_order(flow: FlowStack) -> None:
    assert flow.control is not None
    flow.control.clear_ledger()
    flow.apply(taskspec("restart-all", "restart", flow.rack_names))
    ts = flow.wait_for("taskspec", "restart-all", "power-e2e", finished, timeout=240)
    assert phase(ts) == "Complete", ts["status"]
    assert ts["status"]["succeeded"] == RACKS
    tasks = flow.list("tasks", "power-e2e", "flow.nico.io/taskspec=restart-all")
    assert sorted(t["spec"]["rack"] for t in tasks) == sorted(flow.rack_names)
    for task in tasks:
        status = task["status"]
        assert status["phase"] == "Succeeded", status
        assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 6
        assert task["metadata"]["ownerReferences"][0]["name"] == "restart-all"
    assert flow.control.duplicates() == []
    for name in flow.rack_names:
        assert power_sequence(flow, name) == [
            ("compute", "off"),
            ("nvswitch", "off"),
            ("powershelf", "off"),
            ("powershelf", "on"),
            ("nvswitch", "on"),
            ("compute", "on"),
        ]
        rack = flow.control.rack(name)
        states = {c["power"] for c in rack["components"] if c["kind"] != "dpu"}
        assert states == {"on"}, rack
    per_component = _commands_per_component(flow)
    assert set(per_component.values()) == {2}, per_component  # one off, one on


POWER_METHODS = {"AdminPowerControl", "ComponentPowerControl"}


def _kinds(flow: FlowStack) -> dict[str, tuple[str, str]]:
    """Core id -> (rack, component type as Flow names it)."""
    assert flow.control is not None
    out: dict[str, tuple[str, str]] = {}
    for name in flow.rack_names:
        for c in flow.control.rack(name)["components"]:
            ctype = str(c["name"]).rsplit("-", 1)[0]
            out[str(c["id"])] = (name, ctype)
    return out


def power_sequence(flow: FlowStack, rack: str) -> list[tuple[str, str]]:
    """Power commands the rack received, in ledger order, runs collapsed."""
    kinds = _kinds(flow)
    seq: list[tuple[str, str]] = []
    for e in power_ledger(flow):
        if e["method"] not in POWER_METHODS:
            continue
        where = kinds.get(str(e["component_id"]))
        if where is None or where[0] != rack:
            continue
        direction = "off" if e["action"] in ("graceful_shutdown", "force_off") else "on"
        item = (where[1], direction)
        if not seq or seq[-1] != item:
            seq.append(item)
    return seq


def _commands_per_component(flow: FlowStack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in power_ledger(flow):
        if e["method"] in POWER_METHODS:
            counts[str(e["component_id"])] = counts.get(str(e["component_id"]), 0) + 1
    return counts


def scrape() -> dict[str, float]:
    """Samples of the operator's /metrics, keyed by name{labels}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_follow_the_run(flow: FlowStack) -> None:
    """Runs after the restart test in this module: its Tasks and calls are counted."""
    m = scrape()
    assert m['nicoflow_tasks{phase="Succeeded"}'] >= RACKS
    assert m['nicoflow_tasks_finished_total{operation="restart",phase="Succeeded"}'] == RACKS
    stages = m['nicoflow_stage_duration_seconds_count{operation="restart",phase="Succeeded"}']
    assert stages == 6 * RACKS
    # 18 trays per rack, one graceful off and one on each, through the legacy manager
    assert m['nicoflow_core_rpc_duration_seconds_count{code="OK",method="AdminPowerControl"}'] == (
        18 * 2 * RACKS
    )
    assert m['nicoflow_reconciles_total{kind="Task"}'] > 0
    assert m['nicoflow_reconciles_total{kind="Rack"}'] >= RACKS


def test_logs_are_json_lines_with_task_rack_and_stage(flow: FlowStack) -> None:
    import json

    assert flow.operator is not None
    records = []
    for line in flow.operator.log.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    stages = [r for r in records if r.get("stage") and r.get("taskspec") == "restart-all"]
    assert {r["rack"] for r in stages} == set(flow.rack_names)
    assert sorted({r["stage"] for r in stages}) == [1, 2, 3, 4, 5, 6]
    assert all(r["task"].startswith("restart-all-") for r in stages)
    finals = [r for r in records if r.get("phase") == "Succeeded" and "stage" not in r]
    assert len(finals) >= RACKS
