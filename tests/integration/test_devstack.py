"""The local stack the other tests rely on behaves like the real thing."""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True
    )


def test_each_test_gets_its_own_empty_database(postgres: Postgres, database_url: str) -> None:
    with _connect(database_url) as conn:
        conn.execute("CREATE TABLE marker (id int)")
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
        ).fetchone()
    assert tables == (1,)
    other = postgres.create_database("t_other_devstack")
    try:
        with _connect(other) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name='marker'"
            ).fetchone()
        assert row == (0,)
    finally:
        postgres.drop_database("t_other_devstack")


def test_apiserver_enforces_rbac(control_plane: ControlPlane, namespace: str) -> None:
    kubectl = control_plane.kubectl
    kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    token = kubectl("-n", namespace, "create", "token", "nobody").stdout.strip()
    cfg = control_plane.write_kubeconfig(
        control_plane.workdir / f"nobody-{namespace}.kubeconfig", token, user="nobody"
    )
    denied = kubectl("-n", namespace, "get", "configmaps", kubeconfig=cfg, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    kubectl("-n", namespace, "create", "role", "cm-reader", "--verb=list", "--resource=configmaps")
    kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:nobody",
    )
    deadline = time.monotonic() + 10
    while True:
        allowed = kubectl("-n", namespace, "get", "configmaps", kubeconfig=cfg, check=False)
        if allowed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert allowed.returncode == 0, allowed.stderr


def test_controller_manager_collects_garbage(control_plane: ControlPlane, namespace: str) -> None:
    kubectl = control_plane.kubectl
    kubectl("-n", namespace, "create", "configmap", "owner")
    uid = kubectl(
        "-n", namespace, "get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(child))
    kubectl("-n", namespace, "delete", "configmap", "owner")
    deadline = time.monotonic() + 60
    while kubectl("-n", namespace, "get", "configmap", "child", check=False).returncode == 0:
        if time.monotonic() > deadline:
            pytest.fail("garbage collector did not delete the dependent ConfigMap")
        time.sleep(0.5)


def test_kubectl_reports_the_built_version(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert server["major"] == "1"
    assert server["gitVersion"].startswith("v1.")
    with pytest.raises(subprocess.CalledProcessError):
        control_plane.kubectl("get", "nosuchkind")
