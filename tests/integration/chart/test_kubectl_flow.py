"""`kubectl flow` through kubectl's plugin mechanism (kubectl-flow on PATH),
against TaskSpecs and Tasks in the real apiserver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nicoflow.devstack.controlplane import ControlPlane, kubectl_binary
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.types import OperationCode
from nicoflow.kube.resources import LABEL_RACK, LABEL_TASKSPEC, task_name

BIN = Path(sys.executable).parent
NOW = "2030-05-06T07:08:09Z"

pytestmark = pytest.mark.usefixtures("crds_installed")


def kubectl_flow(
    control_plane: ControlPlane, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(control_plane.kubeconfig)
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [kubectl_binary(), "flow", *args], capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _create(control_plane: ControlPlane, body: dict[str, Any]) -> None:
    control_plane.kubectl("create", "-f", "-", input=json.dumps(body))


def _status(control_plane: ControlPlane, kind: str, name: str, ns: str, status: Any) -> None:
    control_plane.kubectl(
        "patch", kind, name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def _task(ns: str, taskspec: str, rack: str) -> dict[str, Any]:
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": task_name(taskspec, rack),
            "namespace": ns,
            "labels": {LABEL_RACK: rack, LABEL_TASKSPEC: taskspec},
        },
        "spec": {
            "taskSpecName": taskspec,
            "rack": rack,
            "operation": "power_on",
            "components": [
                {"type": "compute", "ids": [{"name": "compute-01", "coreId": f"{rack}-c1"}]}
            ],
            "rule": {
                "name": "builtin-power_on",
                "source": "builtin",
                "definition": builtin_rule(OperationCode("power_on")).to_crd(),
            },
        },
    }


def _stage(number: int, phase: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"number": number, "phase": phase, "steps": steps}


@pytest.fixture
def taskspec(control_plane: ControlPlane, namespace: str) -> str:
    name = "power-on-row-a"
    _create(
        control_plane,
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"operation": "power_on", "targets": {"racks": ["a01", "a02"]}},
        },
    )
    _status(
        control_plane, "taskspec", name, namespace,
        {"phase": "Running", "racks": 2, "running": 1, "succeeded": 1, "observedGeneration": 1},
    )  # fmt: skip
    for rack in ("a01", "a02"):
        _create(control_plane, _task(namespace, name, rack))
    done = {"componentType": "powershelf", "phase": "Succeeded", "total": 8, "succeeded": 8}
    _status(
        control_plane, "task", task_name(name, "a01"), namespace,
        {"phase": "Succeeded", "message": "3 stages succeeded", "startTime": NOW,
         "stages": [_stage(n, "Succeeded", [done]) for n in (1, 2, 3)]},
    )  # fmt: skip
    running = {
        "componentType": "compute", "phase": "Running", "total": 18, "succeeded": 6,
        "actionName": "PowerControl", "batch": 1, "batches": 3,
    }  # fmt: skip
    _status(
        control_plane, "task", task_name(name, "a02"), namespace,
        {"phase": "Running", "message": "stage 2 of 3: compute", "startTime": NOW,
         "currentStage": 2, "stageCount": 3,
         "stages": [_stage(1, "Succeeded", [done]), _stage(2, "Running", [running]),
                    _stage(3, "Pending", [])]},
    )  # fmt: skip
    return name


def test_status_of_a_taskspec(control_plane: ControlPlane, namespace: str, taskspec: str) -> None:
    out = kubectl_flow(control_plane, "status", f"taskspec/{taskspec}", "-n", namespace).stdout
    assert f"TaskSpec {namespace}/{taskspec}: power_on — Running" in out
    lines = out.splitlines()
    a01 = next(line for line in lines if " a01 " in line)
    a02 = next(line for line in lines if " a02 " in line)
    assert "Succeeded" in a01
    assert "✔✔✔" in a01
    assert "3 stages succeeded" in a01
    assert "Running" in a02
    assert "✔▶·" in a02
    assert "2: compute PowerControl batch 2/3" in a02
    assert "stage 2 of 3: compute" in a02


def test_status_of_a_task(control_plane: ControlPlane, namespace: str, taskspec: str) -> None:
    name = task_name(taskspec, "a02")
    out = kubectl_flow(control_plane, "status", f"task/{name}", "-n", namespace).stdout
    assert "power_on on rack a02 — Running" in out
    assert "6/18" in out
    assert "8/8" in out


def test_cancel_sets_spec_cancel(
    control_plane: ControlPlane, namespace: str, taskspec: str
) -> None:
    name = task_name(taskspec, "a02")
    out = kubectl_flow(control_plane, "cancel", f"task/{name}", "-n", namespace).stdout
    assert "cancellation requested" in out
    got = control_plane.kubectl(
        "get", "task", name, "-n", namespace, "-o", "jsonpath={.spec.cancel}"
    ).stdout
    assert got == "true"
    kubectl_flow(control_plane, "cancel", f"taskspec/{taskspec}", "-n", namespace)
    got = control_plane.kubectl(
        "get", "taskspec", taskspec, "-n", namespace, "-o", "jsonpath={.spec.cancel}"
    ).stdout
    assert got == "true"
    # the other Task is untouched
    other = control_plane.kubectl(
        "get", "task", task_name(taskspec, "a01"), "-n", namespace,
        "-o", "jsonpath={.spec.cancel}",
    ).stdout  # fmt: skip
    assert other in ("", "false")


def test_missing_object_is_a_clear_error(control_plane: ControlPlane, namespace: str) -> None:
    result = kubectl_flow(control_plane, "status", "taskspec/nope", "-n", namespace, check=False)
    assert result.returncode == 1
    assert "not found" in result.stderr
