"""The `flow` client commands as a user runs them: the real CLI in a subprocess
against a real Flow API server (real apiserver and PostgreSQL behind it).

The operator does not run here; where a test needs a Task it creates the Task
object the operator would create (deterministic name), as the API tests do."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, make_ca, make_cert, running_api

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.types import OperationCode
from nicoflow.inventory import migrate
from nicoflow.kube.resources import (
    LABEL_RACK,
    LABEL_TASKSPEC,
    SCHEDULES,
    TASKS,
    TASKSPECS,
    task_name,
)
from nicoflow.service.server import FlowServer, ServeOptions

NOWHERE = "00000000-0000-4000-8000-000000000001"


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def flow(*args: str, cert_dir: Path | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("CERTDIR", "ALLOW_INSECURE_GRPC")}
    if cert_dir is not None:
        env["CERTDIR"] = str(cert_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nicoflow.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def target(api: Api) -> tuple[str, ...]:
    return ("-H", "127.0.0.1", "-P", str(api.server.port), "--insecure")


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def exported_racks(api: Api, tmp_path: Path, count: int) -> tuple[Path, list[dict[str, Any]]]:
    """The simulator's rack-json export, renamed for this test (Racks are cluster-wide)."""
    run = await flow(
        "simulator", "export", "--racks", str(count), "--seed", "7", "--format", "rack-json"
    )
    assert run.rc == 0, run.err
    racks = json.loads(run.out)
    for r in racks:
        r["info"]["name"] = f"{r['info']['name']}-{api.tag}"
        r["info"]["serial_number"] += api.tag
        for c in r["components"]:
            c["info"]["serial_number"] += api.tag
    path = tmp_path / "racks.json"
    path.write_text(json.dumps(racks))
    return path, racks


async def test_rack_create_get_list_and_component_get(api: Api, tmp_path: Path) -> None:
    path, racks = await exported_racks(api, tmp_path, 2)
    created = await flow("rack", "create", "-f", str(path), "-o", "json", *target(api))
    assert created.rc == 0, created.err
    names = [r["info"]["name"] for r in racks]
    assert [c["name"] for c in created.json()] == names
    rack_id = created.json()[0]["id"]

    got = await flow("rack", "get", rack_id, "-o", "json", *target(api))
    assert got.rc == 0, got.err
    rack = got.json()
    assert rack["info"]["name"] == names[0]
    assert rack["info"]["id"]["id"] == rack_id
    assert len(rack["components"]) == len(racks[0]["components"])
    compute = next(c for c in rack["components"] if c["type"] == "COMPONENT_TYPE_COMPUTE")
    exported = next(
        c for c in racks[0]["components"]
        if c["info"]["serial_number"] == compute["info"]["serial_number"]
    )  # fmt: skip
    assert compute["component_id"] == exported["component_id"]
    assert {b["mac_address"] for b in compute["bmcs"]} == {b["mac"] for b in exported["bmcs"]}

    table = await flow("rack", "get", rack_id, *target(api))
    assert table.rc == 0, table.err
    assert names[0] in table.out
    assert "Components" in table.out
    assert compute["info"]["serial_number"] in table.out

    listed = await flow("rack", "list", "-o", "json", *target(api))
    assert listed.rc == 0, listed.err
    assert listed.json()["total"] == 2
    assert sorted(r["info"]["name"] for r in listed.json()["racks"]) == sorted(names)
    listed_table = await flow("rack", "list", "--name", f"%{names[1][-10:]}", *target(api))
    assert listed_table.rc == 0, listed_table.err
    assert "1 of 1 racks" in listed_table.out
    assert names[1] in listed_table.out

    comp = await flow(
        "component", "get", compute["info"]["id"]["id"], "--with-rack", "-o", "json", *target(api)
    )
    assert comp.rc == 0, comp.err
    assert comp.json()["component"]["info"]["serial_number"] == compute["info"]["serial_number"]
    assert comp.json()["rack"]["info"]["name"] == names[0]

    computes = await flow(
        "component", "list", "--rack-names", names[0], "-t", "compute", "-o", "json", *target(api)
    )
    assert computes.rc == 0, computes.err
    exported_computes = [c for c in racks[0]["components"] if c["type"] == "compute"]
    assert computes.json()["total"] == len(exported_computes)
    assert {c["type"] for c in computes.json()["components"]} == {"COMPONENT_TYPE_COMPUTE"}
    diff = await flow("component", "diff", "--rack-names", names[0], *target(api))
    assert diff.rc == 0, diff.err
    assert "0 differences" in diff.out  # no inventory sync has run

    # the same file again: the server refuses the duplicate rack
    again = await flow("rack", "create", "-f", str(path), *target(api))
    assert again.rc == 1
    assert again.err.startswith("error: AlreadyExists: "), again.err

    other = created.json()[1]["id"]
    early = await flow("rack", "purge", "--id", other, *target(api))
    assert early.rc == 1
    assert early.err.startswith("error: FailedPrecondition: "), early.err
    assert (await flow("rack", "delete", "--id", other, *target(api))).rc == 0
    assert (await flow("rack", "purge", "--id", other, *target(api))).rc == 0
    left = await flow("rack", "list", "-o", "json", *target(api))
    assert [r["info"]["name"] for r in left.json()["racks"]] == [names[0]]


async def test_errors_exit_non_zero_with_code_and_message(api: Api, tmp_path: Path) -> None:
    missing = await flow("rack", "get", NOWHERE, *target(api))
    assert missing.rc == 1
    assert missing.err.startswith("error: NotFound: "), missing.err
    assert missing.out == ""

    bad_id = await flow("task", "cancel", "not-a-uuid", *target(api))
    assert bad_id.rc == 1
    assert bad_id.err.startswith("error: InvalidArgument: "), bad_id.err

    (tmp_path / "bad.json").write_text('{"info": {"name": "x"}, "components": [{"type": "gpu"}]}')
    bad_file = await flow("rack", "create", "-f", str(tmp_path / "bad.json"), *target(api))
    assert bad_file.rc == 2
    assert "components[0].type" in bad_file.err

    no_targets = await flow("power", "on", *target(api))
    assert no_targets.rc == 2
    assert "no targets" in no_targets.err

    down = await flow("version", "-H", "127.0.0.1", "-P", "1", "--insecure")
    assert down.rc == 1
    assert down.err.startswith("error: Unavailable: ")
    assert "127.0.0.1:1" in down.err


def _task_body(api: Api, ts_name: str, rack: str) -> dict[str, Any]:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": task_name(ts_name, rack),
            "namespace": api.namespace,
            "labels": {LABEL_RACK: rack, LABEL_TASKSPEC: ts_name},
        },
        "spec": {
            "taskSpecName": ts_name,
            "rack": rack,
            "operation": "power_on",
            "components": [{"type": "compute", "ids": [{"name": "compute-01", "coreId": "fm1"}]}],
            "rule": {
                "name": "builtin-power_on",
                "source": "builtin",
                "definition": builtin_rule(OperationCode.POWER_ON).to_crd(),
            },
        },
    }


def _status(phase: str, step_phase: str) -> dict[str, Any]:
    now = "2030-05-06T07:08:09Z"
    return {
        "phase": phase,
        "startTime": now,
        **({"completionTime": now} if phase == "Succeeded" else {}),
        "stages": [
            {
                "number": 1,
                "phase": step_phase,
                "startedAt": now,
                "steps": [
                    {
                        "componentType": "compute",
                        "phase": step_phase,
                        "total": 18,
                        "succeeded": 18 if step_phase == "Succeeded" else 5,
                        "startedAt": now,
                    }
                ],
            }
        ],
    }


async def test_power_on_then_task_list_get_watch_cancel(api: Api, tmp_path: Path) -> None:
    path, racks = await exported_racks(api, tmp_path, 1)
    assert (await flow("rack", "create", "-f", str(path), *target(api))).rc == 0
    rack = racks[0]["info"]["name"]

    power = await flow(
        "power", "on", "--rack-names", rack, "-t", "compute", "--queue", "--queue-timeout", "120",
        "--description", "cli drill", "-o", "json", *target(api),
    )  # fmt: skip
    assert power.rc == 0, power.err
    [tid] = power.json()["task_ids"]

    [ts] = await api.kube.list(TASKSPECS, api.namespace)
    spec = ts["spec"]
    assert spec["operation"] == "power_on"
    assert spec["description"] == "cli drill"
    assert spec["conflictStrategy"] == "Queue"
    assert spec["queueTimeoutSeconds"] == 120
    assert json.loads(ts["metadata"]["annotations"]["flow.nico.io/task-ids"]) == {rack: tid}

    # stand in for the operator: the Task it would create, half way through
    body = _task_body(api, ts["metadata"]["name"], rack)
    await api.create_task(body)  # as the operator does: created and indexed
    name = body["metadata"]["name"]
    await api.kube.patch_status(TASKS, name, _status("Running", "Running"), api.namespace)

    listed = await flow("task", "list", "-o", "json", *target(api))
    assert listed.rc == 0, listed.err
    assert [t["id"]["id"] for t in listed.json()["tasks"]] == [tid]

    got = await flow("task", "get", tid, "-o", "json", *target(api))
    assert got.rc == 0, got.err
    [task] = got.json()
    assert task["status"] == "TASK_STATUS_RUNNING"
    assert json.loads(task["report"])["stages"][0]["steps"][0]["completed_components"] == 5
    table = await flow("task", "get", tid, *target(api))
    assert "running" in table.out
    assert "5/18" in table.out

    # still running: the watch gives up after --for and says the task did not complete
    watched = await flow("task", "watch", tid, "--for", "1", "--interval", "0.2", *target(api))
    assert watched.rc == 3, watched.err
    assert rack in watched.out
    assert "0/1 tasks finished" in watched.out
    by_spec = await flow(
        "task", "watch", "--taskspec", ts["metadata"]["name"], "--for", "0", *target(api)
    )
    assert by_spec.rc == 3, by_spec.err
    assert tid in by_spec.out

    cancelled = await flow("task", "cancel", tid, "-o", "json", *target(api))
    assert cancelled.rc == 0, cancelled.err
    obj = await api.kube.get(TASKS, name, api.namespace)
    assert obj["spec"]["cancel"] is True

    await api.kube.patch_status(TASKS, name, _status("Succeeded", "Succeeded"), api.namespace)
    done = await flow("task", "watch", tid, "--interval", "0.2", *target(api))
    assert done.rc == 0, done.err
    assert "1/1 tasks finished" in done.out
    assert "completed" in done.out

    too_late = await flow("task", "cancel", tid, *target(api))
    assert too_late.rc == 1
    assert too_late.err.startswith("error: FailedPrecondition: "), too_late.err


RULES_OK = """
version: v1
rules:
  - name: cli-gentle-power-on
    operation_type: power_control
    operation: power_on
    steps:
      - {component_type: powershelf, stage: 1, main_operation: {name: PowerControl}}
      - {component_type: compute, stage: 2, max_parallel: 4, main_operation: {name: PowerControl}}
"""
RULES_BAD = """
version: v1
rules:
  - name: ok
    operation_type: firmware_control
    operation: upgrade
    steps: [{component_type: compute, stage: 1, main_operation: {name: FirmwareControl}}]
  - name: wrong-pair
    operation_type: power_control
    operation: upgrade
    steps: [{component_type: compute, stage: 1, main_operation: {name: PowerControl}}]
  - name: bad-step
    operation_type: power_control
    operation: power_off
    steps: [{component_type: gpu, stage: 0, main_operation: {name: PowerControl}}]
"""


async def test_rule_yaml_dry_run_reports_every_problem(tmp_path: Path) -> None:
    ok, bad = tmp_path / "ok.yaml", tmp_path / "bad.yaml"
    ok.write_text(RULES_OK)
    bad.write_text(RULES_BAD)
    # a dry run never connects: no server is listening on port 1
    offline = ("-H", "127.0.0.1", "-P", "1", "--insecure")
    run = await flow("rule", "create", "--from-yaml", str(ok), "--dry-run", *offline)
    assert run.rc == 0, run.err
    assert "1 valid, 0 invalid" in run.out
    assert "power_control/power_on" in run.out

    run = await flow("rule", "create", "--from-yaml", str(bad), "--dry-run", "-o", "json", *offline)
    assert run.rc == 2
    assert run.json()["valid"] == ["ok"]
    assert "rules[1] (wrong-pair): operation upgrade is not a power_control operation" in run.err
    assert "rules[2] (bad-step)" in run.err
    assert "gpu" in run.err

    real = await flow("rule", "create", "--from-yaml", str(bad), *offline)
    assert real.rc == 2
    assert "nothing was created" in real.err


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", server=True)
    make_cert(d, "ca", "client", server=False)
    make_cert(d, "rogue-ca", "rogue", server=False)
    return d


async def test_mtls_server_needs_the_client_certificate(
    certs: Path, tmp_path: Path, control_plane: ControlPlane, database_url: str, namespace: str
) -> None:
    migrate.upgrade(database_url)
    server = FlowServer(
        ServeOptions(
            host="127.0.0.1",
            port=0,
            ca_cert=str(certs / "ca.crt"),
            tls_cert=str(certs / "server.crt"),
            tls_key=str(certs / "server.key"),
            namespace=namespace,
            kubeconfig=str(control_plane.kubeconfig),
            database_url=database_url,
        ),
        env={"FLOW_ENV": "staging"},
    )
    await server.start()
    addr = ("-H", "127.0.0.1", "-P", str(server.port))
    empty = tmp_path / "no-certs"
    empty.mkdir()
    try:
        none = await flow("version", *addr, cert_dir=empty)
        assert none.rc == 2
        assert none.err.startswith("error: no client certificates"), none.err
        assert "--insecure" in none.err

        plain = await flow("version", *addr, "--insecure")
        assert plain.rc == 1
        assert plain.err.startswith("error: Unavailable: "), plain.err
        assert "requires TLS" in plain.err

        half = await flow("version", *addr, "--ca-cert", str(certs / "ca.crt"))
        assert half.rc == 2
        assert "all three" in half.err

        def files(name: str) -> tuple[str, ...]:
            return (
                "--ca-cert", str(certs / "ca.crt"),
                "--tls-cert", str(certs / f"{name}.crt"),
                "--tls-key", str(certs / f"{name}.key"),
            )  # fmt: skip

        rogue = await flow("version", *addr, *files("rogue"))
        assert rogue.rc == 1
        assert rogue.err.startswith("error: Unavailable: "), rogue.err

        good = await flow(
            "version", *addr, *files("client"), "--server-name", "localhost", "-o", "json"
        )
        assert good.rc == 0, good.err
        assert good.json()["server"]["version"] == good.json()["client"]

        # the cert dir works like the explicit files
        by_dir = tmp_path / "dir"
        by_dir.mkdir()
        for src, dst in (
            ("ca.crt", "ca.crt"),
            ("client.crt", "tls.crt"),
            ("client.key", "tls.key"),
        ):
            (by_dir / dst).write_bytes((certs / src).read_bytes())
        from_dir = await flow("version", *addr, cert_dir=by_dir)
        assert from_dir.rc == 0, from_dir.err
    finally:
        await server.stop()


async def test_rules_from_yaml_then_default_association_and_delete(
    api: Api, tmp_path: Path
) -> None:
    path, _ = await exported_racks(api, tmp_path, 1)
    created = await flow("rack", "create", "-f", str(path), "-o", "json", *target(api))
    assert created.rc == 0, created.err
    rack_id = created.json()[0]["id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_OK)

    first = await flow("rule", "create", "--from-yaml", str(rules), "-o", "json", *target(api))
    assert first.rc == 0, first.err
    [row] = first.json()
    assert row["result"] == "created"
    rule_id = row["id"]
    again = await flow("rule", "create", "--from-yaml", str(rules), "-o", "json", *target(api))
    assert again.json()[0]["result"].startswith("exists")
    over = await flow(
        "rule", "create", "--from-yaml", str(rules), "--overwrite", "-o", "json", *target(api)
    )
    assert over.rc == 0, over.err
    assert over.json()[0] == {"name": "cli-gentle-power-on", "id": rule_id, "result": "updated"}

    got = await flow("rule", "get", rule_id, "-o", "json", *target(api))
    assert got.rc == 0, got.err
    assert got.json()["operation_code"] == "power_on"
    steps = json.loads(got.json()["rule_definition_json"])["steps"]
    assert [s["component_type"] for s in steps] == ["powershelf", "compute"]

    listed = await flow("rule", "list", "--operation-type", "power_control", *target(api))
    assert listed.rc == 0, listed.err
    assert "cli-gentle-power-on" in listed.out

    assert (await flow("rule", "set-default", "--id", rule_id, *target(api))).rc == 0
    defaults = await flow("rule", "list", "--default-only", "-o", "json", *target(api))
    assert rule_id in [r["id"]["id"] for r in defaults.json()["rules"]]

    assoc = await flow(
        "rule", "associate", "--rack-id", rack_id, "--rule-id", rule_id, *target(api)
    )
    assert assoc.rc == 0, assoc.err
    dis = await flow(
        "rule", "disassociate", "--rack-id", rack_id, "--operation-type", "power_control",
        "--operation", "power_on", *target(api),
    )  # fmt: skip
    assert dis.rc == 0, dis.err

    assert (await flow("rule", "delete", rule_id, *target(api))).rc == 0
    gone = await flow("rule", "get", rule_id, *target(api))
    assert gone.rc == 1
    assert gone.err.startswith("error: NotFound: "), gone.err


async def test_schedule_lifecycle_and_nvl_domains(api: Api, tmp_path: Path) -> None:
    path, racks = await exported_racks(api, tmp_path, 1)
    assert (await flow("rack", "create", "-f", str(path), *target(api))).rc == 0
    rack = racks[0]["info"]["name"]

    made = await flow(
        "schedule", "create", "--name", f"nightly-{api.tag}", "--cron", "0 2 * * *",
        "--timezone", "Europe/Berlin", "--operation", "power-reset", "--forced",
        "--rack-names", rack, "-o", "json", *target(api),
    )  # fmt: skip
    assert made.rc == 0, made.err
    sched = made.json()
    sid = sched["id"]["id"]
    assert sched["spec"] == {
        "type": "SCHEDULE_SPEC_TYPE_CRON",
        "spec": "0 2 * * *",
        "timezone": "Europe/Berlin",
    }
    assert sched["enabled"] is True

    listed = await flow("schedule", "list", "-o", "json", *target(api))
    assert [s["id"]["id"] for s in listed.json()["task_schedules"]] == [sid]
    got = await flow("schedule", "get", sid, "-o", "json", *target(api))
    assert got.rc == 0, got.err
    assert len(got.json()["scopes"]) == 1

    paused = await flow("schedule", "pause", sid, "-o", "json", *target(api))
    assert paused.json()["enabled"] is False
    resumed = await flow("schedule", "resume", sid, "-o", "json", *target(api))
    assert resumed.json()["enabled"] is True

    fired = await flow("schedule", "trigger", sid, "-o", "json", *target(api))
    assert fired.rc == 0, fired.err
    assert len(fired.json()["task_ids"]) == 1
    # the operator's schedule controller fires it; the API only asks for a firing
    [obj] = await api.kube.list(SCHEDULES, api.namespace)
    assert obj["metadata"]["annotations"]["flow.nico.io/trigger-now"]
    assert obj["spec"]["taskSpecTemplate"]["spec"]["operation"] == "force_restart"

    assert (await flow("schedule", "delete", sid, *target(api))).rc == 0
    gone = await flow("schedule", "get", sid, *target(api))
    assert gone.rc == 1
    assert gone.err.startswith("error: NotFound: "), gone.err

    domain = f"nvl-cli-{api.tag}"
    made_domain = await flow("nvl", "create", domain, "-o", "json", *target(api))
    assert made_domain.rc == 0, made_domain.err
    assert (await flow("nvl", "attach", domain, rack, *target(api))).rc == 0
    members = await flow("nvl", "racks", domain, "-o", "json", *target(api))
    assert [r["info"]["name"] for r in members.json()] == [rack]
    domains = await flow("nvl", "list", f"%{api.tag}", *target(api))
    assert domain in domains.out
    assert (await flow("nvl", "detach", rack, *target(api))).rc == 0
    members = await flow("nvl", "racks", domain, "-o", "json", *target(api))
    assert members.json() == []


async def test_rule_batch_overwrite_is_all_or_nothing(api: Api, tmp_path: Path) -> None:
    """When the server refuses one rule of a batch, the rules the batch had
    already overwritten are put back and the ones it created are removed."""
    tag = api.tag
    one_step = "[{component_type: compute, stage: 1, main_operation: {name: PowerControl}}]"
    two_steps = (
        "[{component_type: nvswitch, stage: 1, main_operation: {name: PowerControl}},"
        " {component_type: compute, stage: 2, main_operation: {name: PowerControl}}]"
    )
    first = tmp_path / "first.yaml"
    first.write_text(
        f"version: v1\nrules:\n  - name: batch-a-{tag}\n    operation_type: power_control\n"
        f"    operation: warm_reset\n    steps: {one_step}\n"
    )
    made = await flow("rule", "create", "--from-yaml", str(first), "-o", "json", *target(api))
    assert made.rc == 0, made.err
    a_id = made.json()[0]["id"]
    before = (await flow("rule", "get", a_id, "-o", "json", *target(api))).json()
    blocker_file = tmp_path / "blocker.json"
    blocker_file.write_text(builtin_rule(OperationCode.COLD_RESET).to_json())
    blocker = await flow(
        "rule", "create", "--name", f"blocker-{tag}", "--operation-type", "power_control",
        "--operation", "cold_reset", "--rule-file", str(blocker_file), "--is-default",
        "-o", "json", *target(api),
    )  # fmt: skip
    assert blocker.rc == 0, blocker.err
    try:
        batch = tmp_path / "batch.yaml"
        batch.write_text(
            f"version: v1\nrules:\n"
            f"  - name: batch-a-{tag}\n    operation_type: power_control\n"
            f"    operation: warm_reset\n    steps: {two_steps}\n"
            f"  - name: batch-c-{tag}\n    operation_type: power_control\n"
            f"    operation: warm_reset\n    steps: {one_step}\n"
            f"  - name: batch-b-{tag}\n    operation_type: power_control\n"
            f"    operation: cold_reset\n    is_default: true\n    steps: {one_step}\n"
        )
        over = await flow(
            "rule", "create", "--from-yaml", str(batch), "--overwrite", "-o", "json", *target(api)
        )
        assert over.rc != 0
        rows = {r["name"]: r["result"] for r in over.json()}
        assert rows[f"batch-a-{tag}"] == "updated, rolled back"
        assert rows[f"batch-c-{tag}"] == "created, rolled back"
        assert rows[f"batch-b-{tag}"].startswith("error: AlreadyExists")
        after = (await flow("rule", "get", a_id, "-o", "json", *target(api))).json()
        assert after["rule_definition_json"] == before["rule_definition_json"]
        names = [
            r["name"]
            for r in (await flow("rule", "list", "-o", "json", *target(api))).json()["rules"]
        ]
        assert f"batch-c-{tag}" not in names
    finally:
        await flow("rule", "delete", blocker.json()["id"], *target(api))
        await flow("rule", "delete", a_id, *target(api))
