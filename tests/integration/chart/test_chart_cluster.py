"""The chart against the real apiserver: every value set passes a server-side
dry run (schema, admission, Pod Security "restricted"), `helm install` works,
and the ServiceAccounts it creates can do what the operator and the API need —
and are refused what they do not need."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from chart_support import ALL_VALUES, CHART, Helm

from nicoflow.devstack.controlplane import ControlPlane

VALUES_PARAMS = [pytest.param(path, id=name) for name, path in ALL_VALUES]


def _restricted(control_plane: ControlPlane, namespace: str) -> None:
    # enforce for Pods, warn for workloads: a workload that would not be
    # admitted shows up as a warning on stderr
    control_plane.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )


@pytest.mark.usefixtures("crds_installed")
@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_server_side_dry_run(
    helm: Helm, control_plane: ControlPlane, namespace: str, values: Path | None
) -> None:
    _restricted(control_plane, namespace)
    manifest = helm.template(values, namespace=namespace, release=f"dry-{namespace}")
    result = control_plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=chart-dry-run",
        "--force-conflicts",
        "-f",
        "-",
        input=manifest,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    applied = result.stdout.splitlines()
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert len(applied) == len(docs)
    assert all("(server dry run)" in line for line in applied)


@pytest.fixture
def release(
    cluster_helm: Helm, control_plane: ControlPlane, namespace: str, crds_installed: list[str]
) -> Iterator[str]:
    """The chart installed with its defaults into `namespace`. CRDs come from the
    session's crds/ (as when CRDs are managed apart from the release); hooks are
    skipped because nothing runs Pods here."""
    _restricted(control_plane, namespace)
    name = f"nf-{uuid.uuid4().hex[:6]}"
    cluster_helm.run(
        "install",
        name,
        str(CHART),
        f"--namespace={namespace}",
        "--set=crds.enabled=false",
        "--no-hooks",
        "--wait=hookOnly",
    )
    yield name
    cluster_helm.run("uninstall", name, f"--namespace={namespace}", "--wait=false", check=False)


def _token_kubeconfig(control_plane: ControlPlane, namespace: str, sa: str, tmp_path: Path) -> Path:
    token = control_plane.kubectl("create", "token", sa, "-n", namespace).stdout.strip()
    return control_plane.write_kubeconfig(tmp_path / f"{sa}.kubeconfig", token, user=sa)


def _can(control_plane: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    result = control_plane.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    return result.stdout.strip() == "yes"


def test_helm_install(
    release: str, cluster_helm: Helm, control_plane: ControlPlane, namespace: str
) -> None:
    status = json.loads(
        cluster_helm.run("status", release, f"--namespace={namespace}", "--output=json").stdout
    )
    assert status["info"]["status"] == "deployed"
    deps = json.loads(control_plane.kubectl("get", "deploy", "-n", namespace, "-o", "json").stdout)
    by_name = {d["metadata"]["name"]: d for d in deps["items"]}
    assert by_name[f"{release}-nico-flow-operator"]["spec"]["replicas"] == 1
    assert by_name[f"{release}-nico-flow-api"]["spec"]["replicas"] == 2
    pdb = control_plane.kubectl("get", "pdb", f"{release}-nico-flow-api", "-n", namespace)
    assert pdb.returncode == 0


def test_helm_upgrade_scales_the_api(
    release: str, cluster_helm: Helm, control_plane: ControlPlane, namespace: str
) -> None:
    cluster_helm.run(
        "upgrade",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--reuse-values",
        "--set=api.replicas=3",
        "--no-hooks",
    )
    api = json.loads(
        control_plane.kubectl(
            "get", "deploy", f"{release}-nico-flow-api", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert api["spec"]["replicas"] == 3
    operator = json.loads(
        control_plane.kubectl(
            "get", "deploy", f"{release}-nico-flow-operator", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    history = json.loads(
        cluster_helm.run("history", release, f"--namespace={namespace}", "-o", "json").stdout
    )
    assert [h["revision"] for h in history] == [1, 2]


def test_operator_service_account_rights(
    release: str, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    kc = _token_kubeconfig(control_plane, namespace, f"{release}-nico-flow-operator", tmp_path)
    who = control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kc).stdout
    assert f"system:serviceaccount:{namespace}:{release}-nico-flow-operator" in who

    elsewhere = f"{namespace}-other"
    needed = [
        ("list", "tasks.flow.nico.io", "--all-namespaces"),
        ("watch", "taskspecs.flow.nico.io", "--all-namespaces"),
        ("watch", "racks.flow.nico.io"),
        ("patch", "racks.flow.nico.io"),
        ("patch", "tasks.flow.nico.io", "--subresource=status", "-n", elsewhere),
        ("patch", "taskspecs.flow.nico.io", "--subresource=status", "-n", elsewhere),
        ("patch", "racks.flow.nico.io", "--subresource=status"),
        ("patch", "taskschedules.flow.nico.io", "--subresource=status", "-n", elsewhere),
        ("create", "tasks.flow.nico.io", "-n", elsewhere),
        ("create", "taskspecs.flow.nico.io", "-n", elsewhere),
        ("delete", "taskspecs.flow.nico.io", "-n", elsewhere),
        ("update", "taskspecs.flow.nico.io", "--subresource=finalizers", "-n", elsewhere),
        ("create", "events", "-n", elsewhere),
        # leader election, in the release namespace
        ("get", "leases.coordination.k8s.io", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", namespace),
        ("update", "leases.coordination.k8s.io", "-n", namespace),
        # ingest: BMC credentials named by Racks, from the release namespace only
        ("get", "secrets", "-n", namespace),
    ]
    refused = [
        ("delete", "secrets", "-n", namespace),
        ("list", "secrets", "-n", namespace),
        ("get", "secrets", "-n", elsewhere),
        # Racks are created only with operator.mirrorExpectedRacks
        ("create", "racks.flow.nico.io"),
        ("create", "deployments.apps", "-n", namespace),
        ("delete", "tasks.flow.nico.io", "-n", elsewhere),
        # the operator never writes a spec
        ("patch", "tasks.flow.nico.io", "-n", elsewhere),
        ("update", "taskspecs.flow.nico.io", "-n", elsewhere),
        ("delete", "racks.flow.nico.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        # Leases elsewhere are other programs' leaders; kopf peering is not used
        ("update", "leases.coordination.k8s.io", "-n", elsewhere),
        ("create", "leases.coordination.k8s.io", "-n", elsewhere),
        ("delete", "leases.coordination.k8s.io", "-n", namespace),
        ("patch", "clusterkopfpeerings.kopf.dev"),
    ]
    assert [c for c in needed if not _can(control_plane, kc, *c)] == []
    assert [c for c in refused if _can(control_plane, kc, *c)] == []

    # concrete calls, as the operator makes them
    control_plane.kubectl("get", "tasks.flow.nico.io", "-A", kubeconfig=kc)
    ts = _taskspec(control_plane, namespace, "op-rights")
    patched = control_plane.kubectl(
        "patch",
        "taskspec.flow.nico.io",
        ts,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Running", "observedGeneration": 1}}),
        "-o",
        "jsonpath={.status.phase}",
        kubeconfig=kc,
    )
    assert patched.stdout == "Running"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "flow-", "namespace": namespace},
        "involvedObject": {"kind": "TaskSpec", "name": ts, "namespace": namespace},
        "reason": "TasksCreated",
        "message": "rights check",
        "type": "Normal",
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(event), kubeconfig=kc)
    denied = control_plane.kubectl(
        "create", "deployment", "x", "--image=busybox", "-n", namespace, kubeconfig=kc, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr
    denied = control_plane.kubectl(
        "delete", "secret", "anything", "-n", namespace, kubeconfig=kc, check=False
    )
    assert "forbidden" in denied.stderr


def test_api_service_account_rights(
    release: str, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    kc = _token_kubeconfig(control_plane, namespace, f"{release}-nico-flow-api", tmp_path)
    elsewhere = f"{namespace}-other"
    needed = [
        ("create", "racks.flow.nico.io"),
        ("patch", "racks.flow.nico.io"),
        ("delete", "racks.flow.nico.io"),
        ("list", "operationrules.flow.nico.io"),
        ("create", "operationrules.flow.nico.io"),
        ("create", "taskspecs.flow.nico.io", "-n", namespace),
        ("get", "taskspecs.flow.nico.io", "-n", namespace),
        ("list", "tasks.flow.nico.io", "-n", namespace),
        ("patch", "tasks.flow.nico.io", "-n", namespace),
        ("create", "taskschedules.flow.nico.io", "-n", namespace),
        ("delete", "taskschedules.flow.nico.io", "-n", namespace),
    ]
    refused = [
        # only its own namespace
        ("create", "taskspecs.flow.nico.io", "-n", elsewhere),
        ("list", "tasks.flow.nico.io", "--all-namespaces"),
        # status is the operator's
        ("patch", "tasks.flow.nico.io", "--subresource=status", "-n", namespace),
        ("delete", "tasks.flow.nico.io", "-n", namespace),
        ("delete", "taskspecs.flow.nico.io", "-n", namespace),
        ("watch", "racks.flow.nico.io"),
        ("get", "secrets", "-n", namespace),
        ("create", "deployments.apps", "-n", namespace),
        ("create", "events", "-n", namespace),
    ]
    assert [c for c in needed if not _can(control_plane, kc, *c)] == []
    assert [c for c in refused if _can(control_plane, kc, *c)] == []

    listing = control_plane.kubectl("auth", "can-i", "--list", "-n", namespace, kubeconfig=kc)
    assert "taskspecs.flow.nico.io" in listing.stdout

    ts = _taskspec(control_plane, namespace, "api-rights")
    control_plane.kubectl("get", "taskspec.flow.nico.io", ts, "-n", namespace, kubeconfig=kc)
    denied = control_plane.kubectl(
        "delete", "taskspec.flow.nico.io", ts, "-n", namespace, kubeconfig=kc, check=False
    )
    assert "forbidden" in denied.stderr
    denied = control_plane.kubectl("get", "tasks.flow.nico.io", "-A", kubeconfig=kc, check=False)
    assert "forbidden" in denied.stderr


def _taskspec(control_plane: ControlPlane, namespace: str, name: str) -> str:
    body = {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "TaskSpec",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"operation": "power_on", "targets": {"racks": ["rack-x"]}},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(body))
    return name
