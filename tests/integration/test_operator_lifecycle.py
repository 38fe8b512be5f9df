"""Lifecycle around the runs: Rack mirroring and its errors, Rack deletion,
TaskSpecs that resolve to nothing, the task history archive and
ttlSecondsAfterFinished — through the real operator process."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres

NS = "lifecycle-e2e"


@pytest.fixture(scope="module")
def flow(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowStack]:
    db = f"t_life_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(db)
    control_plane.kubectl("create", "namespace", NS)
    stack = FlowStack(
        control_plane,
        url,
        tmp_path_factory.mktemp("life"),
        racks=2,
        seed=23,
        sim_args=("--latency-power", "0s"),
        namespaces=(NS,),
        operator_args=("--resolve-grace", "2", "--ttl-sweep", "1"),
    )
    with stack:
        yield stack
    control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    postgres.drop_database(db)


def sql(flow: FlowStack, query: str, **params: Any) -> list[Any]:
    engine = create_engine(flow.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params).all())
    finally:
        engine.dispose()


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def test_racks_are_mirrored_with_counts(flow: FlowStack) -> None:
    for name in flow.rack_names:
        rack = flow.get("rack", name)
        counts = rack["status"]["componentCounts"]
        assert counts == {"total": 35, "compute": 18, "nvswitch": 9, "powershelf": 8}
        assert rack["metadata"]["finalizers"] == ["flow.nico.io/inventory"]
        # no kopf bookkeeping: the spec is not copied into an annotation
        assert not any("last-handled" in a for a in rack["metadata"].get("annotations") or {})
    # other tests leave cluster-wide Racks behind; this operator mirrors them too
    rows = sql(
        flow,
        "SELECT r.name, count(c.id) FROM rack r JOIN component c ON c.rack_id = r.id "
        "WHERE r.name = ANY(:names) GROUP BY r.name ORDER BY r.name",
        names=flow.rack_names,
    )
    assert [(r[0], r[1]) for r in rows] == [(n, 35) for n in sorted(flow.rack_names)]


def test_a_rack_claiming_another_racks_serial_is_refused_visibly(flow: FlowStack) -> None:
    clone = copy.deepcopy(flow.rack_bodies[0])
    clone["metadata"] = {"name": "rack-clone", "labels": {}}
    clone["spec"]["identity"]["serialNumber"] = "CLONE-0001"
    clone["spec"].pop("coreId", None)
    clone["spec"].pop("nvlDomain", None)
    for comp in clone["spec"]["components"]:
        comp.pop("coreId", None)
        for bmc in comp.get("bmcs") or []:
            bmc["macAddress"] = "02:ee:" + bmc["macAddress"][6:]
    flow.apply(clone)
    try:
        rack = flow.wait_for(
            "rack",
            "rack-clone",
            None,
            lambda o: condition(o, "InventorySynced") is not None,
            timeout=60,
        )
        synced = condition(rack, "InventorySynced")
        assert synced is not None
        assert synced["status"] == "False"
        # names the rack that holds those serials already
        assert "serial" in synced["message"]
        assert flow.rack_names[0] in synced["message"]
        assert sql(flow, "SELECT count(*) FROM rack WHERE name = 'rack-clone'")[0][0] == 0
    finally:
        flow.cp.kubectl("delete", "rack", "rack-clone", "--wait=false")


def test_deleting_a_rack_soft_deletes_it_in_the_inventory(flow: FlowStack) -> None:
    """As the original's DeleteRack: the rows stay, marked deleted, until PurgeRack."""
    extra = copy.deepcopy(flow.rack_bodies[1])
    extra["metadata"] = {"name": "rack-spare", "labels": {"role": "spare"}}
    extra["spec"]["identity"]["serialNumber"] = "SPARE-0001"
    extra["spec"].pop("coreId", None)
    extra["spec"].pop("nvlDomain", None)
    extra["spec"]["components"] = [
        {
            **extra["spec"]["components"][0],
            "serialNumber": "SPARE-PS-1",
            "bmcs": [],
            "name": "powershelf-01",
        }
    ]
    extra["spec"]["components"][0].pop("coreId", None)
    flow.apply(extra)
    flow.wait_for("rack", "rack-spare", None, lambda o: condition(o, "InventorySynced") is not None)
    assert sql(flow, "SELECT count(*) FROM rack WHERE name = 'rack-spare'")[0][0] == 1
    flow.cp.kubectl("delete", "rack", "rack-spare", "--timeout=60s")
    rack = sql(flow, "SELECT deleted_at IS NOT NULL FROM rack WHERE name = 'rack-spare'")
    assert rack == [(True,)]
    part = "SELECT deleted_at IS NOT NULL FROM component WHERE serial_number = 'SPARE-PS-1'"
    assert sql(flow, part) == [(True,)]


def test_a_taskspec_that_resolves_to_nothing_fails_with_the_reason(flow: FlowStack) -> None:
    flow.apply(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": "nothing", "namespace": NS},
            "spec": {
                "operation": "power_on",
                "targets": {"rackSelector": {"matchLabels": {"row": "does-not-exist"}}},
            },
        }
    )
    ts = flow.wait_for("taskspec", "nothing", NS, finished, timeout=60)
    assert phase(ts) == "Failed"
    failed = condition(ts, "Failed")
    assert failed is not None
    assert failed["reason"] == "ResolutionFailed"
    assert "row=does-not-exist" in ts["status"]["message"]
    assert flow.list("tasks", NS, "flow.nico.io/taskspec=nothing") == []


def test_finished_tasks_are_archived_and_ttl_removes_the_objects(flow: FlowStack) -> None:
    flow.apply(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": "short-lived", "namespace": NS},
            "spec": {
                "operation": "power_on",
                "targets": {"racks": flow.rack_names},
                "ttlSecondsAfterFinished": 2,
            },
        }
    )
    ts = flow.wait_for("taskspec", "short-lived", NS, finished, timeout=120)
    assert phase(ts) == "Complete", ts["status"]
    uids = {
        t["metadata"]["uid"] for t in flow.list("tasks", NS, "flow.nico.io/taskspec=short-lived")
    }
    assert len(uids) == 2
    deadline = time.monotonic() + 60
    while flow.cp.kubectl("get", "taskspec", "short-lived", "-n", NS, check=False).returncode == 0:
        assert time.monotonic() < deadline, "TaskSpec was not removed after its TTL"
        time.sleep(0.5)
    rows = sql(
        flow,
        "SELECT id::text, phase, task_spec_name, rack_name FROM task_history "
        "WHERE task_spec_name = 'short-lived'",
    )
    assert {r[0] for r in rows} == uids
    assert {r[1] for r in rows} == {"Succeeded"}
    assert sorted(r[3] for r in rows) == sorted(flow.rack_names)


def test_a_schedule_triggered_now_runs_through_the_operator(flow: FlowStack) -> None:
    flow.apply(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSchedule",
            "metadata": {"name": "hourly-on", "namespace": NS},
            "spec": {
                "schedule": {"interval": "1h"},
                "taskSpecTemplate": {
                    "spec": {"operation": "power_on", "targets": {"racks": flow.rack_names}}
                },
            },
        }
    )
    flow.cp.kubectl(
        "annotate", "taskschedule", "hourly-on", "-n", NS, "flow.nico.io/trigger-now=first"
    )
    deadline = time.monotonic() + 60
    fired: list[dict[str, Any]] = []
    while not fired:
        assert time.monotonic() < deadline, "the trigger-now annotation created no TaskSpec"
        fired = flow.list("taskspecs", NS, "flow.nico.io/schedule=hourly-on")
        time.sleep(0.5)
    assert len(fired) == 1
    name = fired[0]["metadata"]["name"]
    ts = flow.wait_for("taskspec", name, NS, finished, timeout=120)
    assert phase(ts) == "Complete", ts["status"]
    schedule = flow.get("taskschedule", "hourly-on", NS)
    assert schedule["status"]["nextScheduleTime"]
    # the same token again fires nothing more
    flow.cp.kubectl(
        "annotate",
        "taskschedule",
        "hourly-on",
        "-n",
        NS,
        "flow.nico.io/trigger-now=first",
        "--overwrite",
    )
    time.sleep(3)
    assert len(flow.list("taskspecs", NS, "flow.nico.io/schedule=hourly-on")) == 1
